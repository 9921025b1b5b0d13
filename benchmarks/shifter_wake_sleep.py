"""Wake-sleep against reweighted wake-sleep on the shifter data: the exact KL(p_data ‖ p_model).

The Helmholtz machine 32-16-4 (``aekit train helmholtz --data shifter --hidden-dims 16,4``): 20 hidden
units, so log p(x) is computed exactly by enumeration and KL(p_data ‖ p_model) is exact over the 508
distinct shifter images (entropy 4.579 nats). Beside it, the top layer's best unit: I(h_j; direction)
(nats) and its accuracy at telling the shift direction (ceiling 0.915), and I(top layer; direction)
for the layer's whole state (ceiling I(image; direction) = 0.576 nats).

Hinton et al. (1995) and Dayan et al. (1995) report that wake-sleep learns the shifter's structure
(top-layer units that code the direction); Bornschein & Bengio (2015) that reweighting (K samples)
learns better generative models than wake-sleep. Claim checked here: reweighted wake-sleep reaches a
lower exact KL than wake-sleep at the same number of steps, over seeds.

Each algorithm trains for ``--steps`` in chunks of ``--chunk`` (resume is exact), the report measured
after each chunk. Writes JSON and ``shifter.png`` (KL against steps, one line per run).

    PYTHONPATH=src python benchmarks/shifter_wake_sleep.py --steps 50000 --seeds 0 1 2 --out bench-shifter.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import aekit  # noqa: E402
from aekit.data.shifter import shifter_report  # noqa: E402
from aekit.models.helmholtz import HelmholtzMachine  # noqa: E402

ALGORITHMS = {"wake-sleep": {"algorithm": "wake-sleep"},
              "reweighted-wake-sleep": {"algorithm": "reweighted-wake-sleep", "iw_samples": 5},
              "nvil": {"algorithm": "elbo", "estimator": "score-function", "baseline": "learned",
                       "variance_normalization": True}}


def run(name: str, seed: int, args, workdir: Path) -> dict:
    out = workdir / f"{name}-{seed}"
    shutil.rmtree(out, ignore_errors=True)
    common = dict(hidden_dims=tuple(args.hidden_dims), lr=args.lr, batch_size=args.batch_size, seed=seed,
                  figures="none", progress=False)
    start = time.perf_counter()
    steps = min(args.chunk, args.steps)
    model = aekit.train("helmholtz", "shifter", out=out, steps=steps, **common, **ALGORITHMS[name])
    curve = []
    while True:
        r = shifter_report(model, num_samples=args.k)
        curve.append({"step": steps, "kl": r["kl"], "shift_information": r["shift_information"],
                      "shift_accuracy": r["shift_accuracy"], "top_layer_information": r.get("top_layer_information"),
                      "seconds": time.perf_counter() - start})
        print(f"{name} seed {seed}: step {steps}  KL {r['kl']:.3f}  I(best top unit; shift) "
              f"{r['shift_information']:.3f}  accuracy {r['shift_accuracy']:.3f}  I(top layer; shift) "
              f"{r.get('top_layer_information', float('nan')):.3f}", flush=True)
        if steps >= args.steps:
            break
        steps = min(steps + args.chunk, args.steps)
        model = aekit.resume(out, steps=steps)
    if args.keep:
        shutil.copytree(out, Path(args.keep) / out.name, dirs_exist_ok=True)
    return {"seed": seed, "final": curve[-1], "curve": curve, "log_px_method": r["log_px_method"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algorithms", nargs="+", default=["wake-sleep", "reweighted-wake-sleep"], choices=ALGORITHMS)
    p.add_argument("--hidden-dims", type=int, nargs="+", default=[16, 4])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--chunk", type=int, default=2000)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--k", type=int, default=10000, help="importance samples when log p(x) cannot be enumerated")
    p.add_argument("--keep", default=None, help="copy the run folders here (figures: aekit evaluate / plots)")
    p.add_argument("--out", default="bench-shifter.json")
    args = p.parse_args()
    torch.manual_seed(0)
    untrained = shifter_report(HelmholtzMachine(32, tuple(args.hidden_dims)), args.k)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.algorithms:
            results[name] = [run(name, seed, args, Path(tmp)) for seed in args.seeds]
    summary = {name: {"kl_mean": statistics.mean(r["final"]["kl"] for r in rs),
                      "kl_per_seed": [r["final"]["kl"] for r in rs],
                      "shift_accuracy_mean": statistics.mean(r["final"]["shift_accuracy"] for r in rs),
                      "shift_information_mean": statistics.mean(r["final"]["shift_information"] for r in rs),
                      "top_layer_information_mean": statistics.mean(r["final"]["top_layer_information"] or 0.0
                                                                    for r in rs)}
               for name, rs in results.items()}
    holds = None
    if {"wake-sleep", "reweighted-wake-sleep"} <= set(summary):
        holds = summary["reweighted-wake-sleep"]["kl_mean"] < summary["wake-sleep"]["kl_mean"]
    report = {"untrained_kl": untrained["kl"], "data_entropy": untrained["data_entropy"], "settings": vars(args),
              "summary": summary, "rws_below_ws": holds, "runs": results}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, rs in results.items():
        for r in rs:
            ax.plot([c["step"] for c in r["curve"]], [c["kl"] for c in r["curve"]], marker=".",
                    label=f"{name} (seed {r['seed']})")
    ax.set_xlabel("step")
    ax.set_ylabel("KL(p_data || p_model), nats")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figure = Path(args.out).with_name("shifter.png")
    fig.savefig(figure, dpi=100)
    print(f"untrained KL {untrained['kl']:.3f}")
    for name, s in summary.items():
        print(f"{name:<24} KL {s['kl_mean']:.3f} {['%.3f' % v for v in s['kl_per_seed']]}  "
              f"accuracy {s['shift_accuracy_mean']:.3f}  I(unit) {s['shift_information_mean']:.3f}  "
              f"I(layer) {s['top_layer_information_mean']:.3f}")
    print(f"reweighted below wake-sleep: {holds}; wrote {args.out} and {figure}")


if __name__ == "__main__":
    main()
