"""The IWAE paper's one-layer MNIST set-up, trained under a stated budget, scored with k = 5000.

Burda, Grosse & Salakhutdinov (2016), Table 1, one stochastic layer: 784-200-200-50 with tanh
hidden units (the decoder mirrors it), Bernoulli likelihood, dynamically binarized MNIST, Adam with
ε = 1e-4. Their figures, after 3280 epochs (3^i passes at learning rate 0.001·10^(−i/7), i = 0..7), test log p(x) with
k = 5000: VAE (k = 1) −86.76, IWAE (k = 50) −84.78 nats.

Here each model trains for a wall-clock budget (default 10 minutes each on this machine) through
aekit's own trainer, then `aekit evaluate`'s estimator gives the test log-likelihood with k = 5000
importance samples on the (fixed-seed binarized) test set. ``--schedule constant`` trains at a fixed
learning rate, epoch after epoch, until the budget is spent; ``--schedule cosine`` first times 200
steps of a throwaway run to turn the budget into a number of steps, then trains that many steps with
the learning rate annealed to 0 over them (the budget is then met to within the timing's accuracy).

    python benchmarks/iwae_mnist.py --data-dir ../shared/data/mnist --minutes 10 --out bench-iwae.json
    python benchmarks/iwae_mnist.py --data-dir ../shared/data/mnist --minutes 10 30 60 --schedule cosine --lr 3e-3
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

import aekit
from aekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from aekit.evaluate import evaluate_model
from aekit.trainer import fit, prepare_data

PAPER = {"vae": 86.76, "iwae": 84.78}


def _config(kind, iw_samples, data_dir, batch_size, lr, **train):
    return RunConfig(
        model=ModelConfig(kind=kind, hidden_dims=(200, 200), latent_dim=50, activation="tanh",
                          likelihood="bernoulli", iw_samples=iw_samples),
        data=DataConfig(name="mnist", data_dir=data_dir, binarize="dynamic"),
        train=TrainConfig(batch_size=batch_size, lr=lr, eps=1e-4, figures="none", progress=False, **train),
    )


def steps_per_second(kind, iw_samples, data_dir, workdir: Path, batch_size: int, lr: float, steps: int = 200) -> float:
    """Training steps per second of this set-up, from the epoch time of a throwaway run of ``steps`` steps."""
    out = workdir / f"{kind}-timing"
    shutil.rmtree(out, ignore_errors=True)
    fit(_config(kind, iw_samples, data_dir, batch_size, lr, steps=steps), out)
    seconds = aekit.runs.read_metrics(out)[-1]["epoch_seconds"]
    shutil.rmtree(out, ignore_errors=True)
    return steps / seconds


def train_for(kind: str, iw_samples: int, data_dir: str, minutes: float, workdir: Path, batch_size: int, lr: float,
              schedule: str = "constant"):
    out = workdir / f"{kind}-{minutes:g}min"
    shutil.rmtree(out, ignore_errors=True)
    if schedule == "cosine":
        steps = int(minutes * 60 * steps_per_second(kind, iw_samples, data_dir, workdir, batch_size, lr))
        start = time.perf_counter()
        fit(_config(kind, iw_samples, data_dir, batch_size, lr, steps=steps, lr_schedule="cosine"), out)
        seconds = time.perf_counter() - start
        return out, aekit.runs.read_metrics(out)[-1]["epoch"], seconds
    start = time.perf_counter()
    fit(_config(kind, iw_samples, data_dir, batch_size, lr, epochs=1), out)
    epochs = 1
    while (time.perf_counter() - start) < minutes * 60:
        epochs += 1
        aekit.resume(out, epochs=epochs)
    seconds = time.perf_counter() - start
    return out, epochs, seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--minutes", type=float, nargs="+", default=[10.0], help="training budget(s) per model")
    p.add_argument("--schedule", default="constant", choices=("constant", "cosine"),
                   help="learning rate: constant, or annealed to 0 over the budget (cosine)")
    p.add_argument("--iw-k", type=int, default=50, help="k of the IWAE's training bound")
    p.add_argument("--k-eval", type=int, default=5000)
    p.add_argument("--test-subset", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--models", default="vae,iwae")
    p.add_argument("--out", default=None)
    a = p.parse_args()

    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                           "threads": torch.get_num_threads()},
               "settings": vars(a), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, minutes in ((k, m) for k in a.models.split(",") for m in a.minutes):
            k_train = a.iw_k if kind == "iwae" else 1
            run, epochs, seconds = train_for(kind, k_train, a.data_dir, minutes, Path(tmp), a.batch_size, a.lr,
                                             a.schedule)
            model = aekit.load(run, which="last")
            splits = prepare_data(model.config)
            test = splits.test
            if a.test_subset:
                from dataclasses import replace
                test = replace(test, x=test.x[:a.test_subset], y=None if test.y is None else test.y[:a.test_subset])
            t0 = time.perf_counter()
            r = evaluate_model(model, test, iw_samples=a.k_eval, progress=True)
            r["eval_seconds"] = time.perf_counter() - t0
            r.update(epochs=epochs, train_seconds=seconds, k_train=k_train, budget_minutes=minutes,
                     schedule=a.schedule, kind=kind)
            results["models"][f"{kind}-{minutes:g}min"] = r
            print(f"{kind}: {epochs} epochs in {seconds / 60:.1f} min; test log p(x) (k={a.k_eval}) = {r['log_px']:.2f}; "
                  f"-ELBO = {r['neg_elbo']:.2f}; active units {r['active_units']}/50", flush=True)
    print()
    print(f"| model | training | test −log p(x), k = {a.k_eval} (nats) | paper (3280 epochs) | test −ELBO | active units |")
    print("|---|---|---|---|---|---|")
    for name, r in results["models"].items():
        label = "VAE (k = 1)" if r["kind"] == "vae" else f"IWAE (k = {r['k_train']})"
        print(f"| {label} | {r['epochs']} epochs, {r['train_seconds'] / 60:.1f} min ({r['schedule']}) | {-r['log_px']:.2f} | "
              f"{PAPER[r['kind']]:.2f} | {r['neg_elbo']:.2f} | {r['active_units']} |")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
