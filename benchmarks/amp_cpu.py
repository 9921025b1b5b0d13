"""bfloat16 autocast on the CPU (``--amp``) against float32: speed and the final test loss, paired runs.

The 784-400-20 VAE of pytorch/examples on grey MNIST (Bernoulli likelihood, ``--binarize none``), trained
with the time-to-quality recipe (``--lr 1e-2 --lr-schedule warmup-cosine``) for ``--epochs``; float32
and ``--amp`` runs alternate, ``--pairs`` times, each pair with its own seed. Figures: training
examples per second (median over epochs after the first) and the test −ELBO of the last weights.
Needs a CPU with native bf16 (AVX512-BF16 or AMX); elsewhere ``--amp`` trains in float32 and says so.

    python benchmarks/amp_cpu.py --data-dir ../shared/data/mnist --pairs 2 --out bench-amp.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import aekit
from aekit.data import load_data
from aekit.evaluate import evaluate_model
from aekit.trainer import cpu_has_bf16


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--epochs", type=int, default=7)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    test = load_data("mnist", data_dir=a.data_dir).test
    rows = {"float32": [], "amp": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(a.pairs):
            for name in rows:
                out = Path(tmp) / f"{name}-{seed}"
                model = aekit.train("vae", "mnist", out=out, data_dir=a.data_dir, binarize="none", hidden_dims=(400,),
                                    latent_dim=20, lr=1e-2, lr_schedule="warmup-cosine", epochs=a.epochs, seed=seed,
                                    amp=name == "amp", figures="none", progress=False)
                history = aekit.runs.read_metrics(out)
                rate = statistics.median(h["examples_per_second"] for h in history[1:])
                loss = evaluate_model(model, test, iw_samples=0, progress=False)["neg_elbo"]
                rows[name].append({"seed": seed, "examples_per_second": rate, "test_neg_elbo": loss,
                                   "train_seconds": sum(h["epoch_seconds"] for h in history)})
                print(f"{name} seed {seed}: {rate:,.0f} examples/s, test -ELBO {loss:.2f}", flush=True)
    summary = {name: {"examples_per_second": statistics.median(r["examples_per_second"] for r in v),
                      "test_neg_elbo": statistics.median(r["test_neg_elbo"] for r in v)} for name, v in rows.items()}
    print(f"\nCPU with native bf16: {cpu_has_bf16()}")
    print("| | float32 | --amp (bf16 autocast) |\n|---|---:|---:|")
    print(f"| training examples/s (median) | {summary['float32']['examples_per_second']:,.0f} | "
          f"{summary['amp']['examples_per_second']:,.0f} "
          f"({summary['amp']['examples_per_second'] / summary['float32']['examples_per_second']:.2f}×) |")
    print(f"| test −ELBO after {a.epochs} epochs (median of {a.pairs}) | {summary['float32']['test_neg_elbo']:.2f} | "
          f"{summary['amp']['test_neg_elbo']:.2f} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"native_bf16": cpu_has_bf16(), "runs": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
