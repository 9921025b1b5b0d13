"""VQ-VAE + PixelCNN prior on binarized MNIST: the likelihood bound beside aekit's VAE and IWAE, and
prior samples scored by the classifier of the AE-vs-VAE benchmark beside uniformly random codes.

* vq-vae: aekit defaults (conv 32-64 to 7x7 maps, K = 512, D = 64, EMA + k-means + restarts),
  Bernoulli likelihood, dynamic binarization, ``--steps`` steps;
* prior: gated PixelCNN over its 7x7 code maps (``aekit train prior --codes-from``), ``--prior-steps``;
* bound on test images: −log p(x) ≤ −log p(x|z_q) − log p(z_q), nats (the same with a uniform prior
  over codes beside it: 49·log 512 = 305.7 nats of prior term), and bits/dim;
* vae and iwae (k = 5), MLP 784-400-200-16, Bernoulli, dynamic binarization, ``--steps`` steps each:
  importance-sampled −log p(x) with k = ``--iw-samples`` on the same test rows;
* samples: n decoded prior samples, n decoded uniform-code samples, n VAE samples and n real test
  images, each scored by the MLP classifier of ``benchmarks/ae_not_a_generator.py`` (trained here on
  grey MNIST): mean max class probability, mean class entropy, distance to the nearest training image;
* prior sampling speed: code maps per second (cached ancestral sampling, one batch of n).

    python benchmarks/vqvae_prior_mnist.py --data-dir /work/shared/data/mnist --steps 5000 \\
        --prior-steps 5000 --iw-samples 1000 --out bench-vq-prior.json --figure vq-prior-samples.png
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import aekit
from aekit.api import build_config
from aekit.models.vqvae import prior_bound, sample_with_prior, train_prior
from aekit.trainer import prepare_data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ae_not_a_generator import scores, train_classifier  # noqa: E402  (reused, not copied)

SAMPLE_SEED = 7


@torch.no_grad()
def neg_log_px(model, x, k: int, batch: int = 100) -> float:
    torch.manual_seed(SAMPLE_SEED)
    return -sum(float(model.log_likelihood(x[s:s + batch], num_samples=k).double().sum())
                for s in range(0, len(x), batch)) / len(x)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--steps", type=int, default=5000, help="optimizer steps of the vq-vae, the vae and the iwae")
    p.add_argument("--prior-steps", type=int, default=5000)
    p.add_argument("--pixelcnn-layers", type=int, default=12)
    p.add_argument("--pixelcnn-channels", type=int, default=64)
    p.add_argument("--iw-samples", type=int, default=1000)
    p.add_argument("--eval-rows", type=int, default=10000, help="test images for the bounds")
    p.add_argument("-n", "--num-samples", type=int, default=1000)
    p.add_argument("--classifier-epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", default=None, help="keep the run folders here (default: a temporary folder)")
    p.add_argument("--out", default=None)
    p.add_argument("--figure", default=None)
    a = p.parse_args()

    common = dict(data_dir=a.data_dir, seed=a.seed, progress=False, figures="none")
    holder = tempfile.TemporaryDirectory() if a.keep is None else None
    root = Path(a.keep or holder.name)
    seconds = {}
    start = time.perf_counter()
    vq = aekit.train("vq-vae", "mnist", out=root / "vq", steps=a.steps, binarize="dynamic", **common)
    seconds["vq-vae"] = time.perf_counter() - start
    start = time.perf_counter()
    prior = train_prior(root / "vq", out=root / "prior", steps=a.prior_steps, pixelcnn_layers=a.pixelcnn_layers,
                        pixelcnn_channels=a.pixelcnn_channels, seed=a.seed, progress=False, figures="none")
    seconds["prior"] = time.perf_counter() - start
    vaes = {}
    for kind in ("vae", "iwae"):
        start = time.perf_counter()
        vaes[kind] = aekit.train(kind, "mnist", out=root / kind, steps=a.steps, binarize="dynamic",
                                 hidden_dims=(400, 200), latent_dim=16, **common)
        seconds[kind] = time.perf_counter() - start

    splits = prepare_data(vq.config)  # binarized test images, the same for every model (same data seed)
    test = splits.test
    rows = slice(0, min(a.eval_rows, len(test)))
    from aekit.data import ArrayDataset

    sub = ArrayDataset(x=test.x[rows], y=None if test.y is None else test.y[rows], image_shape=test.image_shape,
                       num_classes=test.num_classes, name="test")
    bound = prior_bound(vq, prior, sub)
    likelihood = {kind: neg_log_px(m, sub.x, a.iw_samples) for kind, m in vaes.items()}
    table = {"vq-vae + PixelCNN prior (bound)": bound["bound_nats"],
             "vq-vae + uniform prior (bound)": bound["uniform_bound_nats"],
             **{f"{kind} (-log p(x), k={a.iw_samples})": v for kind, v in likelihood.items()}}

    grey = prepare_data(build_config("ae", "mnist", data_dir=a.data_dir, figures="none"))  # grey images
    classifier = train_classifier(grey.train.x, grey.train.y, a.classifier_epochs, a.seed)
    with torch.random.fork_rng():
        torch.manual_seed(SAMPLE_SEED)
        drawn = sample_with_prior(vq, prior, a.num_samples)
        uniform = torch.randint(vq.num_codes, drawn["codes"].shape)
        with torch.no_grad():
            images = {"real test images": grey.test.x[:a.num_samples], "vq-vae + PixelCNN prior": drawn["x"],
                      "vq-vae + uniform codes": vq.decode_codes(uniform).mean,
                      "vae + N(0, I)": vaes["vae"].sample(a.num_samples)}
    sample_rows = {label: scores(x, classifier, grey.train.x) for label, x in images.items()}

    print(f"\nBinarized MNIST test ({sub.x.shape[0]} images), nats per image; {a.steps} steps per autoencoder, "
          f"{a.prior_steps} prior steps\n")
    print("| model | -log p(x) or its bound (nats) | bits/dim |")
    print("|---|---:|---:|")
    for label, v in table.items():
        print(f"| {label} | {v:.2f} | {v / (784 * 0.6931471805599453):.4f} |")
    print(f"\nbound parts: -log p(x|z_q) = {bound['reconstruction']:.2f}, -log p(z_q) = {bound['prior_nll']:.2f} "
          f"(uniform: {bound['uniform_prior_nll']:.2f}); prior {bound['prior_bits_per_code']:.3f} bits per code")
    print(f"\nSamples ({a.num_samples} per row), scored by the MLP classifier of ae_not_a_generator.py\n")
    print("| source | mean max class prob | mean class entropy (nats) | distance to nearest train image |")
    print("|---|---:|---:|---:|")
    for label, r in sample_rows.items():
        print(f"| {label} | {r['max_prob']:.3f} | {r['entropy']:.3f} | {r['nn_distance']:.2f} |")
    print(f"\nprior sampling: {drawn['maps_per_second']:.1f} code maps (7x7) per second, batch of {a.num_samples}")
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                           "threads": torch.get_num_threads()}, "settings": vars(a), "train_seconds": seconds,
               "bound": bound, "neg_log_px": likelihood, "table": table, "samples": sample_rows,
               "prior_maps_per_second": drawn["maps_per_second"]}
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))
        print(f"wrote {a.out}")
    if a.figure:
        from ae_not_a_generator import draw

        draw(images, sample_rows, (1, 28, 28), Path(a.figure))
        print(f"wrote {a.figure}")
    if holder is not None:
        holder.cleanup()


if __name__ == "__main__":
    main()
