"""Kill a training run at every file-system commit point, resume it, and compare with an uninterrupted run.

    python tests/helpers/fault_injection.py WORKDIR [--every K] [--kind vae] [--epochs 2]

A parent process imports aekit once and forks one child per kill point, so each trial costs a fork
rather than an interpreter start. In the child, the file operations a run's commits consist of
(``os.replace``, ``os.rename``, ``os.link``, ``os.fsync``, ``os.unlink``, ``os.mkdir``, ``os.rmdir``)
are counted, and at the N-th the child dies with ``os._exit(137)`` — no cleanup, no finally blocks,
as after ``kill -9``. Then a fresh child does what a user would: ``aekit train --resume`` if the
folder is a run, else the same ``aekit train`` again. Its final weights and metrics (timings aside)
must equal the uninterrupted run's bit for bit. Prints one JSON object with the outcome of every
kill point.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import torch  # noqa: E402

torch.set_num_threads(1)  # one thread: forking a process whose OpenMP pool never started is safe

import aekit  # noqa: E402
from aekit import runs  # noqa: E402
from aekit.cli import main  # noqa: E402

# What every child would import anyway, imported once here: scikit-learn (digits), TensorBoard, and
# torch._dynamo (the first torch.optim optimizer imports it, 2 s).
import sklearn.datasets  # noqa: E402,F401
import torch.utils.tensorboard  # noqa: E402,F401

torch.optim.Adam([torch.zeros(1, requires_grad=True)])

OPS = ("replace", "rename", "link", "fsync", "unlink", "mkdir", "rmdir")
TIMING = ("epoch_seconds", "examples_per_second", "fit_seconds")


def _argv(kind: str, out: Path, epochs: int) -> list[str]:
    # checkpoint-seconds tiny: a checkpoint after every step, so kills land mid-epoch as well
    return ["train", kind, "--data", "digits", "--epochs", str(epochs), "--hidden-dims", "16", "--latent-dim", "2",
            "--batch-size", "256", "--binarize", "dynamic", "--figures", "none", "--no-progress",
            "--checkpoint-seconds", "1e-9", "--out", str(out)]


def _in_child(fn) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            sys.stdout = open(os.devnull, "w")
            sys.stderr = open(os.devnull, "w")
            code = fn() or 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _count_ops(kill_at: int | None) -> None:
    """Wrap the file operations; die at the ``kill_at``-th one (count them all when None)."""
    counter = {"n": 0}

    def wrap(name):
        real = getattr(os, name)

        def op(*a, **k):
            counter["n"] += 1
            if kill_at is not None and counter["n"] == kill_at:
                os._exit(137)
            return real(*a, **k)
        return op

    for name in OPS:
        setattr(os, name, wrap(name))
    return counter


def _final(run: Path) -> tuple[dict, list]:
    weights = {k: v.clone() for k, v in aekit.load(run, which="last").state_dict().items()}
    history = [{k: v for k, v in h.items() if k not in TIMING} for h in runs.read_metrics(run)]
    return weights, history


def main_(args) -> dict:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    ref = work / "reference"
    assert _in_child(lambda: main(_argv(args.kind, ref, args.epochs))) == 0
    ref_weights, ref_history = _final(ref)

    count_file = work / "count.json"

    def count_run():
        counter = _count_ops(None)
        code = main(_argv(args.kind, work / "counted", args.epochs))
        count_file.write_text(json.dumps(counter["n"]))
        return code

    assert _in_child(count_run) == 0
    total = json.loads(count_file.read_text())
    outcomes = []
    points = sorted(set(range(1, min(args.first, total) + 1)) | set(range(1, total + 1, args.every)) | {total})
    for kill_at in points:
        run = work / f"kill-{kill_at:05d}"
        code = _in_child(lambda: (_count_ops(kill_at), main(_argv(args.kind, run, args.epochs)))[1])
        state = ("config.json absent" if not runs.is_run(run) else
                 "no checkpoint" if runs.newest_generation(run) is None else
                 f"checkpoint at step {runs.newest_generation(run).step}")
        again = ["train", "--resume", str(run), "--no-progress"] if runs.is_run(run) else _argv(args.kind, run, args.epochs)
        resumed = _in_child(lambda: main(again))
        if resumed != 0:
            outcomes.append({"kill_at": kill_at, "killed": code == 137, "state": state, "resumed": False})
            continue
        weights, history = _final(run)
        same = (weights.keys() == ref_weights.keys() and all(torch.equal(weights[k], ref_weights[k]) for k in weights)
                and history == ref_history)
        leftovers = [p.name for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-")]
        outcomes.append({"kill_at": kill_at, "killed": code == 137, "state": state, "resumed": True, "exact": same,
                         "leftovers": leftovers})
    return {"kind": args.kind, "commit_points": total, "trials": outcomes}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--every", type=int, default=1, help="try every K-th kill point")
    parser.add_argument("--first", type=int, default=0, help="and each of the first N kill points")
    parser.add_argument("--kind", default="vae")
    parser.add_argument("--epochs", type=int, default=2)
    print(json.dumps(main_(parser.parse_args())))
