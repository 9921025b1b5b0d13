"""Training speed of discrete-latent VAEs beside the Gaussian VAE of the same size (samples per second).

All at batch 100 on MNIST through ``aekit train``: encoder 784-200 (MLP, relu) → 200 latent units →
decoder 200-784. ``gaussian``: the reparameterized VAE. ``sbn-sf``: 200 Bernoulli units, score
function without baseline; ``sbn-sf-learned``: with NVIL's learned baseline (one more forward of its
784-100-1 net, and its backward); ``sbn-gumbel``: Gumbel-softmax (one more decoder pass for the honest
value); ``sbn-st``: straight-through. The figure is the trainer's ``examples_per_second`` (training
steps only), the median over epochs after the first.

Claim (issue 9): the score-function estimator costs no more than one extra forward of the baseline net.

    PYTHONPATH=src python benchmarks/discrete_speed.py --data-dir ../shared/data/mnist --epochs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

import aekit
from aekit import runs

COMMON = dict(hidden_dims=(200,), latent_dim=200, batch_size=100, figures="none", progress=False)
RUNS = {
    "gaussian": {},
    "sbn-sf": {"latent": "bernoulli", "estimator": "score-function"},
    "sbn-sf-learned": {"latent": "bernoulli", "estimator": "score-function", "baseline": "learned"},
    "sbn-gumbel": {"latent": "bernoulli", "estimator": "gumbel-softmax"},
    "sbn-st": {"latent": "bernoulli", "estimator": "straight-through"},
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--out", default="bench-discrete-speed.json")
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.runs:
            aekit.train("vae", args.data, out=Path(tmp) / name, data_dir=args.data_dir, epochs=args.epochs,
                        binarize="dynamic", **COMMON, **RUNS[name])
            rates = [h["examples_per_second"] for h in runs.read_metrics(Path(tmp) / name)]
            results[name] = {"examples_per_second": statistics.median(rates[1:] or rates), "per_epoch": rates}
    base = results.get("gaussian", {}).get("examples_per_second")
    for name, r in results.items():
        r["relative_to_gaussian"] = r["examples_per_second"] / base if base else None
        print(f"{name:<16}{r['examples_per_second']:>10.0f} examples/s"
              + (f"  ({r['relative_to_gaussian']:.2f}x gaussian)" if base else ""))
    report = {"threads": torch.get_num_threads(), "torch": torch.__version__, "settings": COMMON, "runs": results}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
