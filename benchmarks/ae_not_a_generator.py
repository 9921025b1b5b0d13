"""An autoencoder is not a generative model; a VAE is. Shown with numbers on MNIST.

A plain ``ae`` and a ``vae`` of the same size (784-400-16 by default, the decoder mirroring the
encoder, Bernoulli likelihood on grey MNIST) are trained the same way by aekit's trainer. Each decodes
codes drawn two ways:

* z ~ N(0, I), the VAE's prior, which nothing in the AE's training relates to its codes;
* z ~ N(μ̂, Σ̂), a full-covariance Gaussian fitted to the codes of the training images (the AE's
  codes f(x); the VAE's posterior means).

Samples (decoder means) are scored against real test images by

* a classifier trained here on the MNIST training images (an MLP 784-256-10): the mean over samples
  of its largest class probability, and of the entropy of its class probabilities (nats); a sample
  that looks like a digit gets a confident prediction;
* the mean Euclidean distance from each sample to its nearest training image (lower: nearer the
  data; real test images give the reference). Faint images are near the faintest training digits
  whatever their shape, so the mean pixel value is reported beside it.

    python benchmarks/ae_not_a_generator.py --data-dir /work/shared/data/mnist --epochs 5 \\
        --out bench-ae-generator.json --figure ae-not-a-generator.png
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch.distributions import MultivariateNormal  # noqa: E402

from aekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from aekit.generation import embed_all, fitted_gaussian, sample_scores, train_classifier  # noqa: E402
from aekit.plots import tile  # noqa: E402
from aekit.trainer import fit, prepare_data  # noqa: E402

SAMPLE_SEED = 7


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--epochs", type=int, default=5, help="training epochs of the ae and of the vae")
    p.add_argument("--hidden-dims", default="400", help="encoder widths, comma-separated (the decoder mirrors them)")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--classifier-epochs", type=int, default=3)
    p.add_argument("-n", "--num-samples", type=int, default=1000, help="samples scored per row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--figure", default=None, help="write the side-by-side sample grids here (.png)")
    a = p.parse_args()

    hidden = tuple(int(h) for h in a.hidden_dims.split(","))
    data = DataConfig(name="mnist", data_dir=a.data_dir)
    train_cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, seed=a.seed, figures="none", progress=False,
                            device="cpu")
    splits = prepare_data(RunConfig(data=data))
    train_x, test_x = splits.train.x, splits.test.x

    start = time.perf_counter()
    classifier = train_classifier(train_x, splits.train.y, a.classifier_epochs, a.seed)
    with torch.no_grad():
        accuracy = float((classifier(test_x).argmax(-1) == splits.test.y).float().mean())
    print(f"classifier: test accuracy {accuracy:.4f} ({time.perf_counter() - start:.0f}s)", flush=True)

    models, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("ae", "vae"):
            cfg = RunConfig(model=ModelConfig(kind=kind, hidden_dims=hidden, latent_dim=a.latent_dim), data=data,
                            train=train_cfg)
            start = time.perf_counter()
            models[kind] = fit(cfg, Path(tmp) / kind, splits=splits).eval()
            seconds[kind] = time.perf_counter() - start

    rows: dict[str, dict] = {}
    images: dict[str, torch.Tensor] = {"real test images": test_x[:a.num_samples]}
    code_std = {}
    with torch.random.fork_rng():
        torch.manual_seed(SAMPLE_SEED)
        for kind, model in models.items():
            codes = embed_all(model, train_x)  # (N, J): AE codes f(x), VAE posterior means
            code_std[kind] = codes.std(0).tolist()
            prior = MultivariateNormal(torch.zeros(a.latent_dim), torch.eye(a.latent_dim))
            for how, pz in (("N(0, I)", prior), ("fitted Gaussian", fitted_gaussian(codes))):
                z = pz.sample((a.num_samples,)).float()  # (n, J)
                with torch.no_grad():
                    images[f"{kind.upper()} + {how}"] = model.decode(z).mean
    for label, x in images.items():
        rows[label] = sample_scores(x, classifier, train_x)

    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                           "threads": torch.get_num_threads()},
               "settings": {**vars(a), "network": f"784-{'-'.join(map(str, hidden))}-{a.latent_dim}"},
               "classifier_test_accuracy": accuracy, "train_seconds": seconds,
               "code_std_per_dim": code_std, "rows": rows}
    print(f"\nSamples decoded from two code distributions ({results['settings']['network']}, {a.epochs} epochs "
          f"each, {a.num_samples} samples per row; classifier test accuracy {accuracy:.3f})\n")
    print("| source | mean max class prob ↑ | mean class entropy (nats) ↓ | mean distance to nearest train image "
          "| mean pixel value |")
    print("|---|---:|---:|---:|---:|")
    for label, r in rows.items():
        print(f"| {label} | {r['max_prob']:.3f} | {r['entropy']:.3f} | {r['nn_distance']:.2f} | {r['mean_pixel']:.3f} |")
    for kind, std in code_std.items():
        s = torch.tensor(std)
        print(f"\n{kind} code std per dimension over the training images: min {s.min():.2f}, "
              f"median {s.median():.2f}, max {s.max():.2f}", end="")
    print()
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))
        print(f"wrote {a.out}")
    if a.figure:
        draw(images, rows, splits.image_shape, Path(a.figure))
        print(f"wrote {a.figure}")


def draw(images: dict[str, torch.Tensor], rows: dict[str, dict], image_shape, path: Path, k: int = 36) -> None:
    """One panel per source: its first k images in a 6×6 grid, titled with its scores."""
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.9))
    for ax, (label, x) in zip(axes, images.items()):
        grid = tile(x[:k].clamp(0, 1).reshape(-1, *image_shape).numpy(), nrow=6)
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
        r = rows[label]
        ax.set_title(f"{label}\nmax p {r['max_prob']:.2f}, H {r['entropy']:.2f}, NN {r['nn_distance']:.1f}",
                     fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
