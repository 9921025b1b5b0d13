"""``aekit evaluate --iw-samples k`` on the MNIST test set against its arithmetic floor, in one run.

Trains (or reuses, ``--run``) the 784-400-20 VAE of pytorch/examples for a few epochs, then times the
whole ``aekit evaluate RUN --iw-samples k`` command as its own process under ``/usr/bin/time -v`` (wall
time, peak resident memory). The floor is the decoder's matrix products, 2·k·N·(20·400 + 400·784)
FLOPs for N test images, at the fp32 matrix-multiply peak (2048×2048 ``torch.mm``, the best of 10,
with the thread count the command used) measured just before and just after the command; the
figure is the command's wall time over the floor at the higher of the two peaks.

    python benchmarks/evaluate_floor.py --data-dir ../shared/data/mnist --k 5000 --out bench-evaluate.json
    python benchmarks/evaluate_floor.py --data-dir ../shared/data/mnist --k 5000 --compile --run RUN

``--compile`` / ``--no-compile`` time ``aekit evaluate`` with that flag (compiling the likelihood kernel
is counted); without either, evaluate decides (it compiles after the first batch of a long log p(x)).
``--run`` evaluates a run already trained, so several calls time the same model.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from throughput import matmul_peak  # GFLOP/s, best of 10 (2048² torch.mm); this folder is on sys.path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=3, help="training epochs of the model evaluated")
    p.add_argument("--run", default=None, help="evaluate this run instead of training one")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="time `aekit evaluate --compile` / `--no-compile` (default: neither, evaluate's own choice)")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        run = a.run
        if run is None:
            run = str(Path(tmp) / "vae")
            subprocess.run([sys.executable, "-m", "aekit", "train", "vae", "--data", "mnist", "--data-dir", a.data_dir,
                            "--hidden-dims", "400", "--latent-dim", "20", "--epochs", str(a.epochs), "--figures", "none",
                            "--no-progress", "--out", run], check=True, capture_output=True)
        peak_before = matmul_peak(threads)
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "aekit", "evaluate", run,
                               "--iw-samples", str(a.k), "--json",
                               *({True: ["--compile"], False: ["--no-compile"], None: []}[a.compile])],
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        peak_after = matmul_peak(threads)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    n = 10000
    flops = 2 * a.k * n * (20 * 400 + 400 * 784)
    peak = max(peak_before, peak_after) * 1e9
    out = {"machine": platform.processor() or platform.machine(), "threads": threads, "k": a.k, "images": n,
           "compile": a.compile,
           "wall_seconds": wall, "peak_rss_mb": rss_kb / 1024, "floor_flops": flops,
           "matmul_peak_gflops": [peak_before, peak_after], "floor_seconds": flops / peak,
           "times_floor": wall / (flops / peak), "log_px": result.get("log_px"), "neg_elbo": result.get("neg_elbo")}
    print(json.dumps(out, indent=1))
    print(f"\naekit evaluate --iw-samples {a.k} on {n} test images: {wall:.0f} s; floor {flops / peak:.0f} s at "
          f"{peak / 1e9:.0f} GFLOP/s ({out['times_floor']:.2f}× the floor); peak RSS {rss_kb / 1024:.0f} MB; "
          f"log p(x) {out['log_px']}")
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
