"""Gradient estimators for discrete latents on binarized MNIST: −ELBO, log p(x) and gradient variance.

Set-ups (all trained through aekit's one trainer, batch 100, Adam, dynamically binarized MNIST):

* ``sbn200-*``  the linear sigmoid belief net 784-200 of NVIL (Mnih & Gregor 2014) and MuProp (Gu et
  al. 2016): ``aekit train helmholtz --hidden-dims 200 --algorithm elbo --estimator ...``, and
  ``sbn200-wake-sleep`` (``--algorithm wake-sleep``), the NVIL paper's wake-sleep comparison.
* ``sbn200x200-nvil``  two stochastic layers 784-200-200, NVIL (learned baseline + variance normalization).
* ``jang-bernoulli-*``  a Bernoulli VAE with 200 binary units, deterministic MLP 512-256 on each side,
  ``vae --latent bernoulli --latent-dim 200 --hidden-dims 512,256`` (Jang et al. 2017 §4.3 style).
* ``jang-categorical-*``  20 categorical variables of 10 classes,
  ``vae --latent categorical --groups 20 --latent-dim 10 --hidden-dims 512,256``.

Anchors as quoted in aekit issue 9 (NOT checked against the papers' tables here — the papers'
text could not be retrieved with this machine's tools; check before publishing):
MuProp Table 3 −ELBO: SBN 200 NVIL 113.5, straight-through 129.4; SBN 200-200 NVIL 99.7; categorical
200×10 NVIL 107.7, ST 114.5. NVIL Table 1: wake-sleep SBN 200 ≈ 116 vs NVIL ≈ 113. Jang et al.
2017: Gumbel-softmax −ELBO 105.0 (Bernoulli) / 101.5 (categorical) vs score function 112.2 / 110.6.

Each run trains for a wall-clock budget (``--seconds``) in chunks of ``--chunk`` steps (resume is exact,
so chunking changes nothing); after every chunk the encoder's gradient variance is measured on one
fixed minibatch of 100 validation images (``aekit.estimators.gradient_variance``: per-coordinate
variance over ``--draws`` draws, averaged over coordinates) and the validation −ELBO is read from the
run's metrics. At the end the test −ELBO and the importance-sampled log p(x) (k = ``--k-eval``) are
measured. Writes JSON and ``estimators-<setup>.png`` (log-variance and −ELBO against steps).

Note: variance normalization (NVIL) rescales the gradient, so its variance is not on the same scale.

    PYTHONPATH=src python benchmarks/discrete_estimators_mnist.py --data-dir ../shared/data/mnist \\
        --runs sbn200-sf sbn200-sf-ma sbn200-sf-learned sbn200-nvil sbn200-st sbn200-gumbel sbn200-wake-sleep \\
        --seconds 1800 --out bench-discrete.json
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
from aekit import runs
from aekit.estimators import gradient_variance
from aekit.evaluate import evaluate_model
from aekit.trainer import prepare_data

SBN = dict(kind="helmholtz", hidden_dims=(200,), algorithm="elbo")
JANG_B = dict(kind="vae", latent="bernoulli", latent_dim=200, hidden_dims=(512, 256))
JANG_C = dict(kind="vae", latent="categorical", latent_dim=10, groups=20, hidden_dims=(512, 256))
SF = dict(estimator="score-function")
RUNS = {
    "sbn200-sf": {**SBN, **SF},
    "sbn200-sf-constant": {**SBN, **SF, "baseline": "constant"},
    "sbn200-sf-ma": {**SBN, **SF, "baseline": "moving-average"},
    "sbn200-sf-learned": {**SBN, **SF, "baseline": "learned"},
    "sbn200-nvil": {**SBN, **SF, "baseline": "learned", "variance_normalization": True},
    "sbn200-st": {**SBN, "estimator": "straight-through"},
    "sbn200-gumbel": {**SBN, "estimator": "gumbel-softmax"},
    "sbn200-gumbel-st": {**SBN, "estimator": "gumbel-st"},
    "sbn200-wake-sleep": {"kind": "helmholtz", "hidden_dims": (200,), "algorithm": "wake-sleep"},
    "sbn200-rws": {"kind": "helmholtz", "hidden_dims": (200,), "algorithm": "reweighted-wake-sleep", "iw_samples": 5},
    "sbn200x200-nvil": {**SBN, "hidden_dims": (200, 200), **SF, "baseline": "learned", "variance_normalization": True},
    "jang-bernoulli-gumbel": {**JANG_B, "estimator": "gumbel-softmax"},
    "jang-bernoulli-sf": {**JANG_B, **SF, "baseline": "moving-average"},
    "jang-bernoulli-st": {**JANG_B, "estimator": "straight-through"},
    "jang-categorical-gumbel": {**JANG_C, "estimator": "gumbel-softmax"},
    "jang-categorical-sf": {**JANG_C, **SF, "baseline": "moving-average"},
    "jang-categorical-st": {**JANG_C, "estimator": "straight-through"},
}
ANCHORS = {  # −ELBO as quoted in issue 9 (unchecked)
    "sbn200-nvil": ("MuProp Table 3, NVIL, SBN 200", 113.5),
    "sbn200-st": ("MuProp Table 3, straight-through, SBN 200", 129.4),
    "sbn200x200-nvil": ("MuProp Table 3, NVIL, SBN 200-200", 99.7),
    "sbn200-wake-sleep": ("NVIL Table 1, wake-sleep, SBN 200 (approx.)", 116.0),
    "jang-bernoulli-gumbel": ("Jang et al. 2017, Gumbel-softmax, Bernoulli", 105.0),
    "jang-bernoulli-sf": ("Jang et al. 2017, score function, Bernoulli", 112.2),
    "jang-categorical-gumbel": ("Jang et al. 2017, Gumbel-softmax, categorical", 101.5),
    "jang-categorical-sf": ("Jang et al. 2017, score function, categorical", 110.6),
}


def run_one(name: str, args, workdir: Path, probe: torch.Tensor) -> dict:
    settings = dict(RUNS[name])
    kind = settings.pop("kind")
    out = workdir / name
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    steps = args.chunk
    model = aekit.train(kind, args.data, out=out, data_dir=args.data_dir, steps=steps, batch_size=100, lr=args.lr,
                        binarize="dynamic", figures="none", progress=False, track_grad_variance=True,
                        seed=args.seed, **settings)
    curve = {"steps": [], "log_variance": [], "neg_elbo": [], "seconds": []}
    while True:
        measured = gradient_variance(model, probe, draws=args.draws, step=steps, seed=0)
        record = runs.read_metrics(out)[-1]
        elapsed = time.perf_counter() - start
        for key, value in (("steps", steps), ("log_variance", measured["log_variance"]),
                           ("neg_elbo", record["val/neg_elbo"]), ("seconds", elapsed)):
            curve[key].append(value)
        print(f"{name}: step {steps}  val -ELBO {record['val/neg_elbo']:.2f}  "
              f"log-variance {measured['log_variance']:.2f}  ({elapsed:.0f}s)", flush=True)
        if elapsed >= args.seconds or (args.max_steps and steps >= args.max_steps):
            break
        steps += args.chunk
        model = aekit.resume(out, steps=steps)
    train_seconds = time.perf_counter() - start
    best = aekit.load(out)
    splits = prepare_data(best.config)
    test = splits.test
    if args.test_subset:
        from dataclasses import replace
        test = replace(test, x=test.x[:args.test_subset], y=None if test.y is None else test.y[:args.test_subset])
    figures = evaluate_model(best, test, iw_samples=args.k_eval, progress=False)
    history = runs.read_metrics(out)
    result = {"setup": {"kind": kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}},
              "steps": steps, "train_seconds": train_seconds,
              "examples_per_second": sum(h["examples_per_second"] for h in history) / len(history),
              "test_neg_elbo": figures["neg_elbo"], "test_log_px": figures.get("log_px"),
              "log_px_method": figures.get("log_px_method"), "curve": curve,
              "running_log_variance": [(h["step"], h.get("train/grad_log_variance")) for h in history]}
    if name in ANCHORS:
        result["anchor"] = {"source": ANCHORS[name][0], "neg_elbo": ANCHORS[name][1], "checked": False}
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--runs", nargs="+", default=["sbn200-sf", "sbn200-sf-ma", "sbn200-sf-learned", "sbn200-st",
                                                   "sbn200-gumbel"], choices=sorted(RUNS))
    p.add_argument("--seconds", type=float, default=600, help="training budget per run (wall clock)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--chunk", type=int, default=500, help="steps between gradient-variance measurements")
    p.add_argument("--draws", type=int, default=100, help="gradient draws per variance measurement")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--k-eval", type=int, default=1000, help="importance samples for the test log p(x)")
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench-discrete.json")
    p.add_argument("--figure", default=None, help="default: beside --out, estimators.png")
    args = p.parse_args()
    torch.manual_seed(0)
    first = dict(RUNS[args.runs[0]])
    probe_cfg = aekit.api.build_config(first.pop("kind"), args.data, data_dir=args.data_dir, binarize="dynamic",
                                       **first)
    probe = prepare_data(probe_cfg).val.x[:100]  # the fixed minibatch every variance is measured on
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.runs:
            results[name] = run_one(name, args, Path(tmp), probe)
    report = {"budget_seconds_per_run": args.seconds, "chunk": args.chunk, "draws": args.draws, "lr": args.lr,
              "k_eval": args.k_eval, "machine": f"{platform.processor() or platform.machine()}, "
                                                f"{torch.get_num_threads()} threads, torch {torch.__version__}",
              "runs": results}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    from aekit.plots import save_estimator_comparison

    figure = Path(args.figure) if args.figure else Path(args.out).with_name("estimators.png")
    save_estimator_comparison({n: r["curve"] for n, r in results.items()}, figure,
                              title=f"{args.data}, {args.seconds:.0f}s per run")
    print(f"{'run':<26}{'steps':>8}{'test -ELBO':>12}{'log p(x)':>10}{'anchor':>9}{'ex/s':>8}")
    for name, r in results.items():
        anchor = r.get("anchor", {}).get("neg_elbo")
        print(f"{name:<26}{r['steps']:>8}{r['test_neg_elbo']:>12.2f}{(r['test_log_px'] or float('nan')):>10.2f}"
              f"{(anchor or float('nan')):>9.1f}{r['examples_per_second']:>8.0f}")
    print(f"wrote {args.out} and {figure}")


if __name__ == "__main__":
    main()
