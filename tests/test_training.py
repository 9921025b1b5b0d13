"""The trainer: checkpoints, exact resume (also after a crash mid-epoch), divergence handling, DDP."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

import aekit
from aekit import runs
from aekit.errors import AekitError
from conftest import REPO, TINY


def _weights(run_dir, which=runs.LAST):
    from safetensors.torch import load_file

    return load_file(str(run_dir / which))


def _assert_same_weights(a, b, **tol):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], **tol)


@pytest.mark.parametrize("kind", ["vae", "iwae"])
def test_resume_equals_uninterrupted_run(tmp_path, kind):
    aekit.train(kind, "digits", out=tmp_path / "whole", epochs=4, binarize="dynamic", **TINY)
    aekit.train(kind, "digits", out=tmp_path / "split", epochs=2, binarize="dynamic", **TINY)
    aekit.resume(tmp_path / "split", epochs=4)
    _assert_same_weights(tmp_path / "whole", tmp_path / "split", atol=0, rtol=0)
    h1, h2 = runs.read_metrics(tmp_path / "whole"), runs.read_metrics(tmp_path / "split")
    assert [h["val/loss"] for h in h1] == [h["val/loss"] for h in h2]


def test_run_killed_mid_epoch_resumes_to_the_same_parameters(tmp_path, monkeypatch):
    aekit.train("vae", "digits", out=tmp_path / "whole", epochs=3, **TINY)

    real_step = torch.optim.Adam.step
    calls = {"n": 0}

    def crashing_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 30:  # in the middle of epoch 2 (21 batches per epoch)
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        aekit.train("vae", "digits", out=tmp_path / "crashed", epochs=3, **TINY)
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    assert runs.newest_generation(tmp_path / "crashed").step == 21
    aekit.resume(tmp_path / "crashed")
    _assert_same_weights(tmp_path / "whole", tmp_path / "crashed", atol=0, rtol=0)


def test_checkpoint_round_trip(tmp_path):
    model = aekit.train("vae", "digits", out=tmp_path / "r", epochs=1, **TINY)
    loaded = aekit.load(tmp_path / "r", which="last")
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=k)
    x = torch.rand(5, 64)
    torch.testing.assert_close(model.reconstruct(x), loaded.reconstruct(x))
    assert loaded.config.model.kind == "vae" and loaded.config.shape.data_dim == 64
    assert set(os.listdir(tmp_path / "r")) >= {"config.json", "model.safetensors", "model-last.safetensors",
                                               "checkpoint", "metrics.jsonl", "tb"}
    assert not [f for f in os.listdir(tmp_path / "r") if f.endswith(".tmp")]


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    aekit.train("ae", "digits", out=tmp_path / "r", epochs=1, **TINY)
    before = runs.folder_digest(tmp_path / "r" / runs.CHECKPOINTS)
    weights_before = (tmp_path / "r" / runs.LAST).read_bytes()
    from aekit.models.vae import Autoencoder

    real_loss = Autoencoder.loss

    def exploding(self, x, y=None, step=0):
        out = real_loss(self, x, y, step)
        if step >= 25:
            out.total = out.total * float("nan")
        return out

    monkeypatch.setattr(Autoencoder, "loss", exploding)
    with pytest.raises(AekitError, match=r"at step 26 .*last good checkpoint \(step 21\)"):
        aekit.resume(tmp_path / "r", epochs=3)
    assert runs.folder_digest(tmp_path / "r" / runs.CHECKPOINTS) == before
    assert (tmp_path / "r" / runs.LAST).read_bytes() == weights_before


def test_non_finite_loss_in_the_first_epoch_names_the_step_zero_checkpoint(tmp_path, monkeypatch):
    from aekit.models.vae import Autoencoder

    real_loss = Autoencoder.loss

    def exploding(self, x, y=None, step=0):
        out = real_loss(self, x, y, step)
        if step >= 3:
            out.total = out.total * float("nan")
        return out

    monkeypatch.setattr(Autoencoder, "loss", exploding)
    with pytest.raises(AekitError, match=r"at step 4 .*last good checkpoint \(step 0\)"):
        aekit.train("ae", "digits", out=tmp_path / "r", epochs=1, **TINY)
    assert runs.newest_generation(tmp_path / "r").step == 0  # the message's checkpoint exists
    monkeypatch.setattr(Autoencoder, "loss", real_loss)
    aekit.resume(tmp_path / "r")  # and the run resumes from it
    assert runs.newest_generation(tmp_path / "r").step == 21


def test_early_stopping_and_lr_schedule(tmp_path):
    # A learning rate this small leaves the float32 weights unchanged: no epoch improves on the first.
    aekit.train("ae", "digits", out=tmp_path / "r", epochs=30, lr=1e-12, patience=2, lr_schedule="cosine", **TINY)
    history = runs.read_metrics(tmp_path / "r")
    assert len(history) == 3
    assert history[-1]["lr"] < 1e-12
    assert runs.newest_generation(tmp_path / "r").training_state()["stopped_early"]


def test_warmup_cosine_rises_linearly_then_decays_to_zero_over_the_run(tmp_path):
    """warmup-cosine over T = 100 steps: (s+1)/10 for s < 10, then ½(1 + cos(π(s−10)/90)); a run logs the
    factor its epochs end at."""
    from aekit.trainer import _lr_lambda

    f = _lr_lambda("warmup-cosine", 100)
    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0, abs=1e-12)
    assert all(f(s) >= f(s + 1) for s in range(10, 100))
    aekit.train("ae", "digits", out=tmp_path / "r", epochs=10, lr=1e-3, lr_schedule="warmup-cosine", **TINY)
    lrs = [h["lr"] for h in runs.read_metrics(tmp_path / "r")]  # 21 steps per epoch, T = 210, W = 21
    assert lrs[0] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(0)), rel=1e-6)
    assert lrs[4] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * (105 - 21) / 189)), rel=1e-6)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_ddp_two_processes_match_one(tmp_path):
    """torchrun with 2 CPU processes (gloo), same global batch: the same parameters up to float tolerance."""
    common = ["vae", "--data", "digits", "--epochs", "2", "--batch-size", "64", "--hidden-dims", "32",
              "--latent-dim", "4", "--binarize", "dynamic", "--figures", "none", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"train": {"drop_last": True}}))
    single = subprocess.run([sys.executable, "-m", "aekit", "train", *common, "--config", str(cfg_file),
                             "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29517", "-m", "aekit", "train", *common, "--config", str(cfg_file),
                             "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr[-3000:]
    _assert_same_weights(tmp_path / "one", tmp_path / "two", atol=1e-5, rtol=1e-4)
