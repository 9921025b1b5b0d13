"""CPU threads: robust to a busy machine, and sized for the work.

PyTorch's CPU kernels run on an OpenMP pool of one thread per core, and every parallel region waits
for its slowest thread. When another CPU-bound process shares the cores, one of the threads is
descheduled in every region and the whole pool waits for it: on a 2-core machine a 784-400-20 VAE
step went from ~14 ms with one thread to 80 ms with two while other work ran (BENCHMARKS.md,
"threads"). Three things keep aekit fast anyway:

* A short spin before sleeping (``GOMP_SPINCOUNT`` 1000, about 0.1 ms here; set by :func:`set_wait_policy`
  before torch loads, unless the user chose a wait policy): waiting threads do not spin against the
  other process.
* The pool is sized for the work (:func:`choose_threads`): below :data:`SINGLE_THREAD_FLOPS` per step a
  second thread costs more in synchronization than it saves.
* The pool is sized for the machine (:class:`CoreMonitor`): the trainer asks how many cores other
  processes keep busy (from ``/proc/stat``, less this process's own CPU time) at the start and every
  :data:`RECHECK_SECONDS` of training, and uses only the free ones.

``--threads N`` pins the pool and turns all of this off; so does ``OMP_NUM_THREADS=N`` in the environment
(the convention every OpenMP program follows: a user who set it meant it). For the MLP models the thread
count changes a result in its last bits at most: the matrix products split their output across threads,
and on AVX2 CPUs runs were bitwise equal; on AVX-512 ones MKL may also split the sum of a product with few
rows (measured: 12 steps with 1 and 2 threads ended 3e-8 apart; a different seed, 0.7). Convolutions may
split their sums too.
"""

from __future__ import annotations

import os
import sys
import time

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
THREADS_ENV = "OMP_NUM_THREADS"
# Spin 1000 times (about 0.1 ms here) before sleeping. Longer spins are faster on a quiet machine
# (30000, ~2 ms: the MLP step 12.2 vs 14.9 ms) but a pool pinned at 2 threads beside a busy process
# then waits behind a descheduled spinner: 91.7 vs 22.8 ms per step (BENCHMARKS.md §1). Intel's
# runtime counts in milliseconds.
SPIN_ENV = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "1"}
# Below this many floating-point operations per training step one thread is fastest (measured:
# BENCHMARKS.md, "threads").
SINGLE_THREAD_FLOPS = 2e8
RECHECK_SECONDS = 20.0   # how often a training run re-counts the free cores
_FIRST_SAMPLE_SECONDS = 0.2


def set_wait_policy() -> bool:
    """Let OpenMP's idle threads spin briefly, then sleep (unless the user chose, or torch is loaded).

    Sets ``GOMP_SPINCOUNT`` (GNU OpenMP, torch's runtime on Linux) and ``KMP_BLOCKTIME`` (Intel's) for
    this process. Spinning long (libgomp's default, 300000 iterations: ~10 ms of CPU measured here)
    stalls every parallel region behind a descheduled thread when another process shares the cores;
    sleeping at once (``OMP_WAIT_POLICY=PASSIVE``) pays a wake-up per region and cost a third of a quiet
    machine's speed; 1000 iterations (~0.1 ms) keep most of both (BENCHMARKS.md §1–2). Returns whether anything was set (nothing takes effect once OpenMP has started).
    """
    chosen = (WAIT_POLICY_ENV, *SPIN_ENV)
    if any(name in os.environ for name in chosen) or "torch" in sys.modules:
        return False
    os.environ.update(SPIN_ENV)
    return True


def flush_denormals() -> bool:
    """Make this process's CPU arithmetic treat float32 values below 2⁻¹²⁶ ≈ 1.2e-38 (denormals) as 0.

    Sets the x86 flush-to-zero and denormals-are-zero bits (``torch.set_flush_denormal``). Denormals
    appear in training without anyone asking for them: Adam's first moment of a weight whose gradient
    is zero for a while (an MNIST border pixel, a dead ReLU unit) shrinks by β₁ = 0.9 a step and spends
    about 150 steps in the denormal range, where each operation costs the CPU ~100 cycles instead of
    one; the fused Adam kernel went from 0.22 to 0.95 ms per step (BENCHMARKS.md §1). Flushed, such a
    value becomes 0 a little earlier: the results differ only below 1e-38.

    OpenMP's worker threads copy the bits when they are created, so this must run before torch's
    first parallel region: the command line calls it first thing; a Python program may call it (or
    ``torch.set_flush_denormal(True)``) before its first torch computation. Returns whether the CPU
    supports it (False on CPUs without SSE3, where nothing changes).
    """
    import torch

    return bool(torch.set_flush_denormal(True))


def step_flops(model, batch_size: int) -> float:
    """≈ FLOPs of one training step: 6 per parameter per example (forward 2, backward 4)."""
    return 6.0 * batch_size * sum(p.numel() for p in model.parameters())


def available_cores() -> int:
    """The cores this process may run on (its affinity), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_from_environment() -> int | None:
    """``OMP_NUM_THREADS`` when it holds one positive whole number (OpenMP also allows a list: not ours)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def choose_threads(flops_per_step: float | None) -> int | None:
    """1 thread for small work; None (as many as are free) otherwise, or when unknown."""
    if flops_per_step is not None and flops_per_step < SINGLE_THREAD_FLOPS:
        return 1
    return None


class CoreMonitor:
    """How many cores other processes keep busy, from /proc/stat and this process's CPU time.

    others_busy = (Δ busy jiffies of the machine / USER_HZ − Δ CPU seconds of this process) / Δ wall time.
    Where /proc/stat does not exist (not Linux), every core counts as free.
    """

    def __init__(self):
        self.cores = available_cores()
        self._last = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        own = os.times()
        return time.monotonic(), sum(fields) - idle, own.user + own.system

    def free_cores(self) -> int:
        """Cores not kept busy by other processes since the last call (at least 1)."""
        now = self._sample()
        if now is None or self._last is None:
            return self.cores
        (t0, busy0, own0), (t1, busy1, own1) = self._last, now
        self._last = now
        wall = t1 - t0
        if wall <= 0:
            return self.cores
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        others = max(0.0, (busy1 - busy0) / hz - (own1 - own0)) / wall
        return max(1, min(self.cores, round(self.cores - others)))


class ThreadGovernor:
    """Keeps torch's pool at the threads the work and the machine allow (or at ``threads`` if pinned)."""

    def __init__(self, threads: int | None = None, flops_per_step: float | None = None):
        self.pinned = threads if threads is not None else threads_from_environment()
        self.cap = choose_threads(flops_per_step)
        self.monitor = CoreMonitor() if self.pinned is None and self.cap is None else None
        self._last_check = -float("inf")
        if self.monitor is not None:
            time.sleep(_FIRST_SAMPLE_SECONDS)  # a first window to count the other processes' load in
        self.update(force=True)

    def wanted(self) -> int:
        if self.pinned is not None:
            return self.pinned
        if self.cap is not None:
            return self.cap
        return self.monitor.free_cores()

    def update(self, force: bool = False) -> int:
        """Re-count (every RECHECK_SECONDS, or now when ``force``) and resize the pool; returns its size."""
        import torch

        now = time.monotonic()
        if force or (self.monitor is not None and now - self._last_check >= RECHECK_SECONDS):
            self._last_check = now
            wanted = self.wanted()
            if torch.get_num_threads() != wanted:
                torch.set_num_threads(wanted)
        return torch.get_num_threads()


def configure(threads: int | None, flops_per_step: float | None = None) -> int:
    """Set torch's pool once for a command that is not a training loop; returns the count in use."""
    return ThreadGovernor(threads, flops_per_step).update()
