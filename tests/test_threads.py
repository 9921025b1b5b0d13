"""aekit.threads: the pool size follows the work, the free cores, --threads and OMP_NUM_THREADS; the
thread count never changes a result."""

from __future__ import annotations

import multiprocessing
import os
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


def test_the_thread_count_does_not_change_the_trained_parameters(tmp_path, restore_threads):
    # 784-wide rows and a batch of 256 put every reduction of the loss above torch's parallel grain size,
    # so two threads do split work here.
    x = (np.random.default_rng(0).random((1200, 784)) < 0.3).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    trained = {}
    for n in (1, 2):
        model = aekit.train("vae", str(tmp_path / "x.npy"), out=tmp_path / f"t{n}", steps=12, batch_size=256, hidden_dims=(200,),
                            latent_dim=8, threads=n, seed=0, figures="none", progress=False)
        trained[n] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.equal(trained[1], trained[2])


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
