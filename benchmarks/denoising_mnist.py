"""Denoising autoencoders against a plain autoencoder on MNIST: test error on corrupted and clean inputs.

One plain ``ae`` and one ``dae`` per corruption (Gaussian σ, salt-and-pepper ν, masking ν; Vincent
et al. 2010), all the same network (784-500-100 by default: one hidden layer of 500 units, a code
of 100, the decoder mirroring it, Bernoulli likelihood on grey MNIST) trained the same way by
aekit's trainer for a fixed number of epochs. Every model is then scored on the test set with each
corruption, drawn with one fixed seed, and on the clean test images:

    Σ_d (x_d − x̂(x̃)_d)²   per image, x̂(x̃) the decoder mean from the corrupted image, x the clean one.

    python benchmarks/denoising_mnist.py --data-dir /work/shared/data/mnist --epochs 5 --out bench-denoising.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from aekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from aekit.regularizers import build_corruption, corrupted_squared_error
from aekit.trainer import fit, prepare_data

EVAL_SEED = 12345  # the same corrupted test images for every model


@torch.no_grad()
def clean_squared_error(model, x: torch.Tensor, batch_size: int = 1000) -> float:
    """Σ_d (x_d − x̂(x)_d)² per image, averaged."""
    total = sum(float(((x[s:s + batch_size] - model.reconstruct(x[s:s + batch_size])) ** 2).sum())
                for s in range(0, len(x), batch_size))
    return total / len(x)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--epochs", type=int, default=5, help="training epochs per model")
    p.add_argument("--hidden-dims", default="500", help="encoder widths, comma-separated (the decoder mirrors them)")
    p.add_argument("--latent-dim", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--gaussian", type=float, default=0.5, help="σ of the Gaussian corruption")
    p.add_argument("--salt-pepper", type=float, default=0.25, help="fraction ν of salt-and-pepper entries")
    p.add_argument("--masking", type=float, default=0.25, help="fraction ν of masked entries")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    a = p.parse_args()

    corruptions = {"gaussian": a.gaussian, "salt-pepper": a.salt_pepper, "masking": a.masking}
    hidden = tuple(int(h) for h in a.hidden_dims.split(","))
    base = RunConfig(
        model=ModelConfig(kind="ae", hidden_dims=hidden, latent_dim=a.latent_dim, likelihood="bernoulli"),
        data=DataConfig(name="mnist", data_dir=a.data_dir),
        train=TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed, figures="none",
                          progress=False, device="cpu"),
    )
    splits = prepare_data(base)
    test = splits.test
    variants = {"ae": base.model, **{f"dae ({name} {level:g})": replace(base.model, kind="dae", corruption=name,
                                                                          corruption_level=level)
                                     for name, level in corruptions.items()}}
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                           "threads": torch.get_num_threads()},
               "settings": {**vars(a), "network": f"784-{'-'.join(map(str, hidden))}-{a.latent_dim}"},
               "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, model_cfg) in enumerate(variants.items()):
            start = time.perf_counter()
            model = fit(base.replace(model=model_cfg), Path(tmp) / f"run{i}", splits=splits).eval()
            seconds = time.perf_counter() - start
            row = {"train_seconds": seconds, "clean": clean_squared_error(model, test.x)}
            for name, level in corruptions.items():
                row[name] = corrupted_squared_error(model, test, build_corruption(name, level), seed=EVAL_SEED)
            results["models"][label] = row
            print(f"{label}: trained {a.epochs} epochs in {seconds:.0f}s; "
                  + ", ".join(f"{k} {v:.2f}" for k, v in row.items() if k != "train_seconds"), flush=True)

    columns = ["clean", *(f"{name} {level:g}" for name, level in corruptions.items())]
    print(f"\nMNIST test squared error per image, Σ_d (x_d − x̂(x̃)_d)² "
          f"({results['settings']['network']}, {a.epochs} epochs each; lower is better)\n")
    print("| model | " + " | ".join(columns) + " | train s |")
    print("|---|" + "---:|" * (len(columns) + 1))
    for label, row in results["models"].items():
        cells = [row["clean"], *(row[name] for name in corruptions)]
        print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in cells) + f" | {row['train_seconds']:.0f} |")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))
        print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
