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


def configure(threads: int | None) -> None:
    """Use ``threads`` CPU threads for torch's intra-op pool (None: leave torch's choice)."""
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
