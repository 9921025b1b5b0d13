"""How long OpenMP's idle threads should spin before sleeping: the training step at several GOMP_SPINCOUNTs.

Each spin count runs in its own process (libgomp reads ``GOMP_SPINCOUNT`` once, at start-up), rounds
interleaved: forward + backward + fused Adam of the 784-400-20 VAE at batch 256 on 2 threads, 7 timings
of 50 steps per process (their median), and the 2048² matrix-multiply peak in the same process.
The figure per spin count is the median over rounds. The busy-machine side of the choice is
``busy_machine.py --compare-spin N``.

    python benchmarks/spin_count.py --spins 1000 5000 30000 --rounds 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, statistics, time, torch
import aekit
from aekit.config import DataShape, ModelConfig
from aekit.models import build_model
torch.set_num_threads(2)
torch.manual_seed(0)
model = build_model(ModelConfig(kind="vae", latent_dim=20, hidden_dims=(400,)), DataShape(784, (1, 28, 28), 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
xb = (torch.rand(256, 784) < 0.2).float()
def step():
    loss = model(xb, None, 0).total.float().mean()
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
for _ in range(20): step()
ts = []
for _ in range(7):
    t = time.perf_counter()
    for _ in range(50): step()
    ts.append((time.perf_counter() - t) / 50 * 1e3)
from throughput import matmul_peak  # this folder is on the child's sys.path
print(json.dumps({"step_ms": statistics.median(ts), "peak_gflops": matmul_peak(2)}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spins", type=int, nargs="+", default=[1000, 5000, 30000])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    runs: dict[int, list] = {s: [] for s in a.spins}
    for r in range(a.rounds):
        for spin in a.spins:
            here = os.path.dirname(os.path.abspath(__file__))
            env = dict(os.environ, GOMP_SPINCOUNT=str(spin),
                       PYTHONPATH=os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
            env.pop("OMP_NUM_THREADS", None)
            out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
            runs[spin].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}: spin {spin}: {runs[spin][-1]['step_ms']:.2f} ms", flush=True)
    print("\n| GOMP_SPINCOUNT | median step (ms), over rounds | min–max | median peak (GFLOP/s) |\n|---:|---:|---:|---:|")
    for spin, v in runs.items():
        steps = [x["step_ms"] for x in v]
        print(f"| {spin} | {statistics.median(steps):.2f} | {min(steps):.2f}–{max(steps):.2f} | "
              f"{statistics.median(x['peak_gflops'] for x in v):.0f} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
