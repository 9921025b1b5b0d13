"""Training throughput on a quiet machine and beside one busy process, before and after the thread fixes.

Three workloads, each run as its own `aekit train` process:

* the README's demo: `aekit train vae --data digits --latent-dim 2 --epochs 100 --batch-size 64` (wall time);
* one MNIST VAE epoch: 784-400-20, batch 256 (examples per second, from the run's metrics);
* one RBM epoch: 500 hidden units on binarized MNIST, batch 100 (wall time of the fit).

Each under four conditions: quiet / beside one busy process (a second Python process spinning on one
core), and "before" / "after". *Before* is what aekit did until issue 6: PyTorch's default pool of one
thread per core, pinned (``--threads`` = the core count), with the OpenMP default wait policy
(``OMP_WAIT_POLICY`` set empty, so aekit does not choose one). *After* is aekit's default: a short
spin before sleeping (GOMP_SPINCOUNT) and a pool sized for the work and for the cores left free. Conditions are interleaved round by
round; the figure per cell is the best of ``--repeats`` rounds. ``--compare-spin N`` adds aekit's default
with another spin count (``GOMP_SPINCOUNT=N``), quiet and busy.

    python benchmarks/busy_machine.py --data-dir ../shared/data/mnist --repeats 2 --out busy.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def workloads(data_dir: str) -> dict[str, list[str]]:
    common = ["--figures", "none", "--no-progress"]
    return {
        "digits demo (s)": ["vae", "--data", "digits", "--latent-dim", "2", "--epochs", "100", "--batch-size", "64"],
        "MNIST VAE epoch (examples/s)": ["vae", "--data", "mnist", "--data-dir", data_dir, "--hidden-dims", "400",
                                         "--latent-dim", "20", "--epochs", "1", *common],
        "RBM epoch (s)": ["rbm", "--data", "mnist", "--data-dir", data_dir, "--binarize", "static", "--epochs", "1",
                          *common],
    }


def run_once(name: str, argv: list[str], condition: str, tmp: Path) -> float:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    extra = []
    if condition.startswith("before"):
        env["OMP_WAIT_POLICY"] = ""  # set, so aekit leaves it; empty: the OpenMP runtime's own default
        extra = ["--threads", str(CORES)]
    else:
        env.pop("OMP_WAIT_POLICY", None)
    if condition.startswith("spin "):  # aekit's default, but with this spin count (aekit leaves a set one)
        env["GOMP_SPINCOUNT"] = condition.split(",")[0].split()[1]
    out = tmp / f"run-{time.time_ns()}"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "aekit", "train", *argv, *extra, "--out", str(out)], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if "examples/s" in name:
        return metrics[-1]["examples_per_second"]
    if "RBM" in name:
        return metrics[-1]["fit_seconds"]
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--compare-spin", type=int, default=None, metavar="N",
                   help="also run aekit's default with GOMP_SPINCOUNT=N (quiet and busy), to compare spin counts")
    p.add_argument("--only", nargs="*", default=None, help="workloads whose name starts with one of these words")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    conditions = ["before, quiet", "after, quiet", "before, busy", "after, busy"]
    if a.compare_spin is not None:
        conditions += [f"spin {a.compare_spin}, quiet", f"spin {a.compare_spin}, busy"]
    chosen = {name: argv for name, argv in workloads(a.data_dir).items()
              if a.only is None or any(name.startswith(w) for w in a.only)}
    results: dict = {name: {c: [] for c in conditions} for name in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.repeats):
            for name, argv in chosen.items():
                for condition in conditions:
                    spinner = None
                    if condition.endswith("busy"):
                        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                        time.sleep(1.0)
                    try:
                        results[name][condition].append(run_once(name, argv, condition, Path(tmp)))
                    finally:
                        if spinner is not None:
                            spinner.kill()
                            spinner.wait()
                    print(name, condition, results[name][condition][-1], flush=True)
    best = {name: {c: (max(v) if "examples/s" in name else min(v)) for c, v in cells.items()}
            for name, cells in results.items()}
    print(f"\n| workload | {' | '.join(conditions)} | busy / quiet, after |")
    print("|---|" + "---:|" * (len(conditions) + 1))
    for name, cells in best.items():
        ratio = (cells["after, busy"] / cells["after, quiet"] if "examples/s" in name
                 else cells["after, quiet"] / cells["after, busy"])
        print(f"| {name} | " + " | ".join(f"{cells[c]:.1f}" for c in conditions) + f" | {ratio:.2f} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"machine": platform.processor() or platform.machine(), "cores": CORES,
                                           "runs": results, "best": best}, indent=1))


if __name__ == "__main__":
    main()
