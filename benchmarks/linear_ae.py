"""Does the linear autoencoder find the PCA subspace? Convergence of linear-ae through ``aekit.train``.

For each (data, latent dimension d, settings, seed) it trains ``linear-ae`` with ``aekit.train`` (the
real trainer, figures off) and reports, against the training split's PCA
(:func:`aekit.linalg.subspace_convergence`): the max principal angle to the top-d eigenvectors, the
mean squared error's excess over Σ_{j>d} λ_j (relative), the eigengap λ_d − λ_{d+1} relative to
λ_d, the conditioning λ_1 / (λ_d − λ_{d+1}) that sets how many steps gradient descent needs, the
sampling scale of the angle √(λ_d λ_{d+1} / N) / (λ_d − λ_{d+1}), and the wall time.

Settings: ``defaults`` (the linear-ae ModelSpec's train_defaults), ``former`` (the settings before
issue 6: Adam lr 3e-3, batch 256, no schedule; epochs as given), or explicit overrides.

Usage (small budget, about a minute on a quiet 2-core machine):
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/linear_ae.py --data digits --dims 2 8 16 32 --seeds 0
Full budget (a few minutes; MNIST needs --data-dir):
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/linear_ae.py --data digits --dims 2 4 8 16 32 --seeds 0 1 2 3 \\
        --also-former --out runs/linear_ae_digits.json
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/linear_ae.py --data mnist --data-dir /work/shared/data/mnist \\
        --dims 8 32 --seeds 0 --epochs 1 --settings '{}' '{"batch_size": 128, "lr": 1e-2, "epochs": 5}'
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

import aekit
from aekit.linalg import subspace_convergence
from aekit.models import get_spec
from aekit.trainer import prepare_data

FORMER = {"lr": 3e-3, "batch_size": 256, "lr_schedule": "none"}


def train_and_measure(data: str, d: int, seed: int, settings: dict, data_dir: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model = aekit.train("linear-ae", data, out=Path(tmp) / "run", latent_dim=d, seed=seed, data_dir=data_dir,
                            figures="none", progress=False, **settings)
        seconds = time.perf_counter() - start
    x = prepare_data(model.config).train.x
    with torch.no_grad():
        error = float(sum((x[s:s + 4096] - model.reconstruct(x[s:s + 4096])).double().square().sum()
                          for s in range(0, len(x), 4096)) / len(x))
    figures = subspace_convergence(model.decoder_basis(), x, squared_error=error)
    train = model.config.train
    return dict(data=data, d=d, seed=seed, lr=train.lr, batch_size=train.batch_size, lr_schedule=train.lr_schedule,
                epochs=train.epochs, seconds=seconds, **figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dims", type=int, nargs="+", default=[8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs of every setting")
    parser.add_argument("--settings", nargs="+", default=["{}"],
                        help="JSON objects of train overrides on top of the defaults ('{}' = the defaults)")
    parser.add_argument("--also-former", action="store_true", help="also run the former settings (lr 3e-3, batch 256)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the rows")
    args = parser.parse_args()

    variants = [("defaults" if s == "{}" else s, json.loads(s)) for s in args.settings]
    if args.also_former:
        variants.append(("former", dict(FORMER)))
    print(f"linear-ae defaults: {dict(get_spec('linear-ae').train_defaults)}; load average {os.getloadavg()}")
    print("| data | d | settings | seed | angle (rad) | error excess | eigengap / λ_d | λ_1 / gap "
          "| angle sampling scale | s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for d in args.dims:
        for name, overrides in variants:
            settings = dict(overrides) | ({"epochs": args.epochs} if args.epochs is not None else {})
            for seed in args.seeds:
                row = train_and_measure(args.data, d, seed, settings, args.data_dir)
                row["settings"] = name
                rows.append(row)
                print(f"| {args.data} | {d} | {name} (epochs {row['epochs']}) | {seed} "
                      f"| {row['max_principal_angle']:.3f} "
                      f"| {row['error_gap_relative']:.1e} | {row['eigengap_relative']:.3f} | {row['conditioning']:.0f} "
                      f"| {row['angle_sampling_error']:.3f} | {row['seconds']:.1f} |", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(rows=rows, load_average_end=os.getloadavg()), indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
