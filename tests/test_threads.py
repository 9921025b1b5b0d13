"""aekit.threads: the pool size follows the work, the free cores, --threads and OMP_NUM_THREADS; the
thread count never changes a result."""

from __future__ import annotations

import multiprocessing
import os
import platform
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import aekit
from aekit import threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_small_work_gets_one_thread_and_large_work_is_left_to_the_machine():
    assert threads.choose_threads(threads.SINGLE_THREAD_FLOPS / 2) == 1
    assert threads.choose_threads(threads.SINGLE_THREAD_FLOPS * 2) is None
    assert threads.choose_threads(None) is None


@pytest.mark.parametrize("value, expected", [("3", 3), (" 2 ", 2), ("", None), ("0", None), ("2,1", None),
                                             ("many", None)])
def test_omp_num_threads_is_read_when_it_is_one_positive_number(monkeypatch, value, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert threads.threads_from_environment() == expected


def test_omp_num_threads_pins_the_pool_like_threads(monkeypatch, restore_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    governor = threads.ThreadGovernor(None, flops_per_step=threads.SINGLE_THREAD_FLOPS / 10)
    assert governor.monitor is None and governor.update(force=True) == 2  # not the 1 the small work would get
    assert threads.ThreadGovernor(1).update(force=True) == 1               # --threads wins over the environment
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.ThreadGovernor(None, flops_per_step=threads.SINGLE_THREAD_FLOPS / 10).update(force=True) == 1


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.mark.skipif(threads.available_cores() < 2, reason="needs two cores")
def test_a_core_kept_busy_by_another_process_is_not_counted_free():
    monitor = threads.CoreMonitor()
    busy = multiprocessing.get_context("spawn").Process(target=_spin, args=(3.0,))
    busy.start()
    try:
        time.sleep(1.0)          # the child starts (imports) and spins
        monitor.free_cores()     # a new window from here, with the child spinning throughout
        time.sleep(1.0)
        free = monitor.free_cores()
    finally:
        busy.join()
    # Other load on the machine can only lower the count further.
    assert free <= monitor.cores - 1


def test_the_thread_count_changes_the_trained_parameters_only_in_their_last_bits(tmp_path, restore_threads):
    # 784-wide rows and a batch of 256 put every reduction of the loss above torch's parallel grain size,
    # so two threads do split work here; the fifth batch has 176 rows, a product MKL splits along its sum
    # on AVX-512 CPUs (bitwise equal on AVX2 ones). Another seed is the scale a real difference has.
    x = (np.random.default_rng(0).random((1200, 784)) < 0.3).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    trained = {}
    for n, seed in ((1, 0), (2, 0), (1, 1)):
        model = aekit.train("vae", str(tmp_path / "x.npy"), out=tmp_path / f"t{n}-{seed}", steps=12, batch_size=256,
                            hidden_dims=(200,), latent_dim=8, threads=n, seed=seed, figures="none", progress=False)
        trained[n, seed] = torch.cat([p.detach().flatten() for p in model.parameters()])
    threads_apart = (trained[1, 0] - trained[2, 0]).abs().max()
    assert threads_apart <= 1e-6  # float32 rounding of a few differently ordered sums, over 12 steps
    assert (trained[1, 0] - trained[1, 1]).abs().max() > 1e-2  # a real difference


def test_train_refuses_an_array_in_one_line(tmp_path):
    with pytest.raises(aekit.AekitError, match="numpy.save"):
        aekit.train("vae", np.zeros((10, 4), np.float32), out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("user_env, expected", [({}, "1000"), ({"OMP_WAIT_POLICY": "PASSIVE"}, "unset"),
                                                ({"GOMP_SPINCOUNT": "7"}, "7")])
def test_import_sets_a_short_spin_unless_the_user_chose(user_env, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update(user_env)
    out = subprocess.run([sys.executable, "-c", "import os, aekit; print(os.environ.get('GOMP_SPINCOUNT', 'unset'))"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == expected


# Every element of x·1 is the denormal 1e-39 unless the thread that computed it flushes denormals to 0;
# 2^22 elements on two threads: each thread computes part of the product.
_DENORMAL_PRODUCT = ("import sys, torch; torch.set_num_threads(2); {before}"
                     "y = torch.full((1 << 22,), 1e-39).mul(1.0); print(int((y != 0).sum()))")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="flush-to-zero is checked on x86 CPUs")
def test_the_command_line_flushes_denormals_on_every_thread_and_a_library_import_does_not():
    """Denormals cost ~100 cycles an operation (Adam's moments of weights without gradient pass through
    them); the CLI process flushes them on the main thread and on OpenMP's workers, a mere import
    changes nothing in the user's process."""
    def nonzero(before: str) -> int:
        code = _DENORMAL_PRODUCT.format(before=before)
        return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                   .stdout.split()[-1])  # the last line; `aekit list` prints before it

    assert nonzero("import aekit; ") == 1 << 22  # the control: denormals survive an import
    # the command line, as the console script calls it (no argv: the process's own)
    assert nonzero("import aekit.cli; sys.argv = ['aekit', 'list']; aekit.cli.main(); ") == 0
    assert nonzero("import aekit.cli; aekit.cli.main(['list']); ") == 1 << 22  # main(argv) from Python: not ours
