"""Hinton & Salakhutdinov (2006), MNIST: the 784-1000-500-250-30 deep autoencoder with and without
layer-wise RBM pretraining, beside PCA with 30 components, all measured in one run.

Their figures (Science 313, p. 506, test squared error per image summed over the 784 pixels):
deep autoencoder 3.00, logistic PCA 8.01, PCA 13.87. They pretrained each RBM for 50 epochs and
fine-tuned for 200 epochs with conjugate gradients; here the budget is stated on the command line
(pretraining epochs per layer, fine-tuning epochs with Adam) and is far smaller. Logistic PCA is
not re-run; its figure is the paper's.

    python benchmarks/deep_autoencoder_mnist.py --data-dir ../shared/data/mnist \
        --pretrain-epochs 10 --epochs 20 --out bench-deep-ae.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

import aekit
from aekit.evaluate import evaluate_model
from aekit.trainer import prepare_data

PAPER = {"deep autoencoder": 3.00, "logistic PCA": 8.01, "PCA": 13.87}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs (both deep autoencoders)")
    p.add_argument("--out", default=None)
    a = p.parse_args()

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(data_dir=a.data_dir, figures="none", progress=False)
        t0 = time.perf_counter()
        pca = aekit.train("pca", "mnist", out=Path(tmp) / "pca", latent_dim=30, **common)
        splits = prepare_data(pca.config)
        rows["PCA (30 components)"] = (evaluate_model(pca, splits.test, iw_samples=0, progress=False)["squared_error"],
                                       time.perf_counter() - t0, PAPER["PCA"])
        for pretrain in ("rbm", "none"):
            t0 = time.perf_counter()
            model = aekit.train("deep-ae", "mnist", out=Path(tmp) / f"deep-{pretrain}", pretrain=pretrain,
                                pretrain_epochs=a.pretrain_epochs, epochs=a.epochs, **common)
            seconds = time.perf_counter() - t0
            model = aekit.load(Path(tmp) / f"deep-{pretrain}")  # best validation weights
            err = evaluate_model(model, splits.test, iw_samples=0, progress=False)["squared_error"]
            label = (f"deep autoencoder, RBM-pretrained ({a.pretrain_epochs} CD epochs/layer) + {a.epochs} epochs"
                     if pretrain == "rbm" else f"deep autoencoder, random init, {a.epochs} epochs")
            rows[label] = (err, seconds, PAPER["deep autoencoder"])
            print(f"{label}: {err:.2f} ({seconds:.0f}s)", flush=True)
    print()
    print("| model | test squared error per image (ours) | paper | wall time (s) |")
    print("|---|---|---|---|")
    for label, (err, seconds, paper) in rows.items():
        print(f"| {label} | {err:.2f} | {paper:.2f} | {seconds:.0f} |")
    print(f"| logistic PCA | not run | {PAPER['logistic PCA']:.2f} | |")
    if a.out:
        Path(a.out).write_text(json.dumps({"machine": platform.platform(), "torch": torch.__version__,
                                           "threads": torch.get_num_threads(), "settings": vars(a),
                                           "rows": {k: {"squared_error": v[0], "seconds": v[1], "paper": v[2]}
                                                    for k, v in rows.items()}}, indent=2))


if __name__ == "__main__":
    main()
