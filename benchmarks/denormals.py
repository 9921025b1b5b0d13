"""Training with denormals flushed to zero (what ``aekit`` on the command line does) against without.

Each run is its own process (flush-to-zero has to be set before torch's first parallel region, so
it cannot be switched inside one process): ``aekit.train`` of the 784-400-20 VAE on grey MNIST at
``--batch-size`` (Adam at 1e-3 for 128, the defaults otherwise), ``--epochs`` epochs, the two kinds
alternating ``--pairs`` times with the same seed. Figures: training examples per second (median over
the epochs after the first) and the last validation −ELBO, which flushing must leave unchanged.

    python benchmarks/denormals.py --data-dir ../shared/data/mnist --pairs 2 --out bench-denormals.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def child(kind: str, data_dir: str, batch_size: int, epochs: int, out: str) -> None:
    import aekit  # before torch: aekit's OpenMP wait policy, as on the command line
    import torch

    if kind == "flush":
        aekit.threads.flush_denormals()  # before any torch computation starts the thread pool

    extra = {"lr": 1e-3} if batch_size == 128 else {}
    aekit.train("vae", "mnist", out=out, data_dir=data_dir, binarize="none", hidden_dims=(400,), latent_dim=20,
                batch_size=batch_size, epochs=epochs, seed=0, figures="none", progress=False, **extra)
    history = aekit.runs.read_metrics(out)
    print(json.dumps({"examples_per_second": [h["examples_per_second"] for h in history],
                      "val_neg_elbo": history[-1]["val/neg_elbo"], "threads": torch.get_num_threads()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--child", choices=("flush", "keep"), help=argparse.SUPPRESS)
    p.add_argument("--run", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(a.child, a.data_dir, a.batch_size, a.epochs, a.run)
        return
    runs = {"keep": [], "flush": []}
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(a.pairs):
            for kind in runs:
                cmd = [sys.executable, __file__, "--child", kind, "--data-dir", a.data_dir, "--batch-size",
                       str(a.batch_size), "--epochs", str(a.epochs), "--run", str(Path(tmp) / f"{kind}-{pair}")]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                result["median_after_first"] = statistics.median(result["examples_per_second"][1:])
                runs[kind].append(result)
                print(f"pair {pair + 1}, {kind}: {result['median_after_first']:,.0f} examples/s, "
                      f"val -ELBO {result['val_neg_elbo']:.4f}", flush=True)
    keep = statistics.median(r["median_after_first"] for r in runs["keep"])
    flush = statistics.median(r["median_after_first"] for r in runs["flush"])

    def cells(kind: str, key: str, fmt: str) -> str:
        return " / ".join(format(r[key], fmt) for r in runs[kind])

    print(f"\n| batch {a.batch_size}, {a.epochs} epochs | denormals kept | flushed (the CLI) |\n|---|---:|---:|")
    print(f"| examples/s, per pair | {cells('keep', 'median_after_first', ',.0f')} | "
          f"{cells('flush', 'median_after_first', ',.0f')} ({flush / keep:.2f}×) |")
    print(f"| last validation −ELBO | {cells('keep', 'val_neg_elbo', '.4f')} | {cells('flush', 'val_neg_elbo', '.4f')} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"runs": runs, "ratio": flush / keep}, indent=1))


if __name__ == "__main__":
    main()
