"""CPU threads: robust to a busy machine, and sized for the work.

PyTorch's CPU kernels run on an OpenMP pool of one thread per core. By default OpenMP threads
*spin* while they wait for work; when another CPU-bound process shares the cores, the spinning
threads fight it for the same cores and a matrix product that takes 1 ms quiet can take 20–30 ms
(measured on a 2-core machine: a 100×784 by 784×500 product fell from ~95 to 3–5 GFLOP/s).
With ``OMP_WAIT_POLICY=PASSIVE`` waiting threads sleep instead, and the same product keeps about
half its quiet throughput beside a busy process. That policy must be set before the OpenMP runtime
starts, i.e. before torch is imported: :func:`set_wait_policy` does it (unless the user chose one)
and ``import aekit`` calls it first thing. ``--threads N`` sets the pool size for one run.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"


def set_wait_policy(policy: str = "PASSIVE") -> bool:
    """Set OMP_WAIT_POLICY for this process unless the user set it or torch is already loaded.

    Returns whether it was set (it has no effect once torch's OpenMP runtime has started).
    """
    if WAIT_POLICY_ENV in os.environ or "torch" in sys.modules:
        return False
    os.environ[WAIT_POLICY_ENV] = policy
    return True


# Below this many floating-point operations per training step a second thread costs more in
# synchronization than it saves, and on a busy machine a lot more (see BENCHMARKS.md, "threads").
SINGLE_THREAD_FLOPS = 2e8


def step_flops(model, batch_size: int) -> float:
    """≈ FLOPs of one training step: 6 per parameter per example (forward 2, backward 4)."""
    return 6.0 * batch_size * sum(p.numel() for p in model.parameters())


def choose_threads(flops_per_step: float | None) -> int | None:
    """1 thread for small work, torch's default (one per core) otherwise; None when unknown."""
    if flops_per_step is None:
        return None
    return 1 if flops_per_step < SINGLE_THREAD_FLOPS else None


def configure(threads: int | None, flops_per_step: float | None = None) -> int:
    """Set torch's intra-op pool: ``threads`` if given, else sized for the work; returns the count in use."""
    import torch

    wanted = threads if threads is not None else choose_threads(flops_per_step)
    if wanted is not None and torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return torch.get_num_threads()
