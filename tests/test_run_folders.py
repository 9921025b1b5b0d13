"""Run folders that survive anything: kills at every commit point, damaged bytes, races, failed resumes.

Every test here attacks a run folder the way a tester would and checks that nothing is lost and
nothing is silently wrong: the kill-anywhere test resumes bit-exactly, damaged files are named and
refused, a second writer is turned away, and a command that fails changes no byte.
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import aekit
from aekit import runs
from aekit.cli import main
from aekit.errors import AekitError
from conftest import REPO, TINY

TINY_FLAGS = ["--hidden-dims", "16", "--latent-dim", "2", "--batch-size", "128", "--figures", "none", "--no-progress"]


def _one_line(capsys, *argv, match: str) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("aekit: error:"), err
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "vae"
    aekit.train("vae", "digits", out=run, epochs=2, checkpoint_seconds=1e-9, **TINY)
    return run


def _copy(run, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(run, dst)
    return dst


# ----------------------------------------------------------------------------- kills
def test_kill_at_commit_points_resumes_exactly(tmp_path):
    """Kill -9 (os._exit) at the first file operations and then at every 23rd one, through a whole run
    with a checkpoint after every step; each resumed (or restarted) run ends bit-identical to the
    uninterrupted one, with no temporary file left. RELIABILITY.md has the run over every point."""
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "helpers" / "fault_injection.py"), str(tmp_path),
                           "--every", "23", "--first", "6", "--epochs", "1"],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    trials = report["trials"]
    assert report["commit_points"] > 50 and len(trials) >= 8
    assert all(t["killed"] for t in trials[:-1])  # the last point is the run's last operation
    assert {t["state"].split(" at ")[0] for t in trials} >= {"config.json absent", "checkpoint"}
    bad = [t for t in trials if not (t["resumed"] and t["exact"] and not t["leftovers"])]
    assert not bad, bad


def test_real_sigkill_mid_training_resumes_exactly(tmp_path):
    argv = [sys.executable, "-m", "aekit", "train", "vae", "--data", "digits", "--epochs", "12", *TINY_FLAGS,
            "--checkpoint-seconds", "0.05", "--binarize", "dynamic"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    assert subprocess.run([*argv, "--out", str(tmp_path / "whole")], env=env, capture_output=True).returncode == 0
    proc = subprocess.Popen([*argv, "--out", str(tmp_path / "killed")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for _ in range(600):  # kill once training has checkpointed past step 0, mid-run
        time.sleep(0.05)
        g = runs.newest_generation(tmp_path / "killed") if runs.is_run(tmp_path / "killed") else None
        if g is not None and g.step > 5 or proc.poll() is not None:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert main(["train", "--resume", str(tmp_path / "killed"), "--no-progress"]) == 0
    a = aekit.load(tmp_path / "whole", which="last").state_dict()
    b = aekit.load(tmp_path / "killed", which="last").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- damaged bytes
def _flip(path, count=16):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, min(len(data), middle + count)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _run_files(run):
    """Every file aekit reads back: config, the checkpoints, the views (not figures or TensorBoard events,
    which aekit only writes and which carry checksums of their own: PNG chunk CRCs, TFRecord CRCs)."""
    return sorted(p.relative_to(run) for p in run.rglob("*")
                  if p.is_file() and p.suffix != ".png" and "tb" not in p.relative_to(run).parts)


def test_flipped_or_truncated_bytes_in_every_file_are_detected(tiny_run, tmp_path, capsys):
    files = _run_files(tiny_run)
    assert any(f.name == runs.MANIFEST for f in files) and runs.Path("config.json") in files
    newest = runs.newest_generation(tiny_run).path.name
    for damage in ("flip", "truncate"):
        for rel in files:
            run = _copy(tiny_run, tmp_path, f"{damage}-{str(rel).replace('/', '_')}")
            path = run / rel
            if damage == "flip":
                _flip(path)
            else:
                path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
            assert main(["verify", str(run)]) == 2, (damage, rel)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and (rel.name in err or "config.json" in err), (damage, rel, err)
            if len(rel.parts) == 1 or rel.parts[1] == newest:  # what loading reads: refused, never used
                with pytest.raises(AekitError):
                    aekit.load(run)
            shutil.rmtree(run)


def test_a_weights_file_copied_out_of_a_run_verifies_on_its_own(tiny_run, tmp_path):
    path = tmp_path / "w.safetensors"
    shutil.copyfile(tiny_run / runs.BEST, path)
    runs.read_tensors(path)  # intact
    _flip(path, 4)
    with pytest.raises(AekitError, match="checksum|corrupt"):
        runs.read_tensors(path)


# ----------------------------------------------------------------------------- races and folders
def test_two_trainings_into_one_folder_one_runs_the_other_refuses(tmp_path):
    argv = [sys.executable, "-m", "aekit", "train", "vae", "--data", "digits", "--epochs", "40", *TINY_FLAGS,
            "--out", str(tmp_path / "r")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(e for code, e in results if code == 2).strip().splitlines()
    assert len(err) == 1 and ("being written by another aekit process" in err[0] or "already holds a run" in err[0])
    cfg = runs.load_config(tmp_path / "r")
    assert cfg.train.epochs == 40 and len(runs.read_metrics(tmp_path / "r")) == 40


def test_a_held_lock_is_named_and_released_when_its_holder_dies(tiny_run, tmp_path, capsys):
    run = _copy(tiny_run, tmp_path)
    lock = runs.RunLock(run).acquire()
    lock.announce("train")
    _one_line(capsys, "train", "--resume", run, "--epochs", "3", match=f"pid {os.getpid()}")
    lock.release()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 0


def test_out_into_a_folder_with_user_files_is_refused_unless_forced(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my thesis")
    _one_line(capsys, "train", "vae", "--data", "digits", "--epochs", "1", *TINY_FLAGS, "--out", folder,
              match="not empty and is not an aekit run")
    assert sorted(os.listdir(folder)) == ["notes.txt"]
    assert main(["train", "vae", "--data", "digits", "--epochs", "1", *TINY_FLAGS, "--out", str(folder), "--force"]) == 0
    assert (folder / "notes.txt").read_text() == "my thesis" and runs.is_run(folder)


def test_temporary_leftovers_are_cleaned_on_the_next_start(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    (run / ".model.safetensors.123.tmp").write_bytes(b"half")
    (run / runs.CHECKPOINTS / ".tmp-gen-00000099-abc").mkdir()
    aekit.resume(run, epochs=3, progress=False)
    leftovers = [p for p in run.rglob("*") if runs.is_leftover(p)]
    assert leftovers == []


# ----------------------------------------------------------------------------- failed commands change nothing
def test_a_failed_resume_changes_no_byte(tiny_run, tmp_path, capsys):
    cases = {
        "truncated checkpoint state": lambda run: _truncate(runs.newest_generation(run).file(runs.GEN_TENSORS)),
        "truncated weights": lambda run: _truncate(runs.newest_generation(run).file(runs.GEN_WEIGHTS)),
        "damaged config": lambda run: _flip(run / "config.json", 2),
    }
    for name, damage in cases.items():
        run = _copy(tiny_run, tmp_path, name.replace(" ", "-"))
        damage(run)
        before = runs.folder_digest(run)
        assert main(["train", "--resume", str(run), "--epochs", "4", "--no-progress"]) == 2, name
        assert capsys.readouterr().err.count("\n") == 1
        assert runs.folder_digest(run) == before, name
    run = _copy(tiny_run, tmp_path, "refused-setting")
    before = runs.folder_digest(run)
    _one_line(capsys, "train", "--resume", run, "--lr", "0.1", match="--lr is 0.003 in this run, not 0.1")
    _one_line(capsys, "train", "--resume", run, "--latent-dim", "7", match="--latent-dim")
    assert runs.folder_digest(run) == before


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def test_unreachable_data_fails_the_resume_without_a_change(tmp_path, capsys):
    data = tmp_path / "data" / "points.npy"
    data.parent.mkdir()
    np.save(data, np.random.default_rng(0).random((400, 6)).astype(np.float32))
    run = tmp_path / "r"
    assert main(["train", "vae", "--data", str(data), "--likelihood", "gaussian", "--epochs", "1", *TINY_FLAGS,
                 "--out", str(run)]) == 0
    moved = tmp_path / "elsewhere" / "points.npy"
    moved.parent.mkdir()
    data.rename(moved)
    before = runs.folder_digest(run)
    _one_line(capsys, "train", "--resume", run, "--epochs", "2", match="does not exist")
    assert runs.folder_digest(run) == before
    # other data under the same name is refused too, not trained on
    np.save(data, np.random.default_rng(1).random((400, 6)).astype(np.float32))
    _one_line(capsys, "train", "--resume", run, "--epochs", "2", match="not the data this run was trained on")
    assert runs.folder_digest(run) == before
    # the run's own data, wherever it now is
    assert main(["train", "--resume", str(run), "--epochs", "2", "--data", str(moved), "--no-progress"]) == 0
    assert len(runs.read_metrics(run)) == 2


def test_resume_from_another_working_directory_finds_relative_data(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    np.save(tmp_path / "work" / "points.npy", np.random.default_rng(0).random((300, 5)).astype(np.float32))
    monkeypatch.chdir(tmp_path / "work")
    aekit.train("vae", "points.npy", out="run", likelihood="gaussian", epochs=1, **TINY)
    monkeypatch.chdir(tmp_path)
    aekit.resume("work/run", epochs=2)
    assert len(runs.read_metrics(tmp_path / "work" / "run")) == 2


def test_resume_applies_and_records_the_settings_that_may_change(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    aekit.resume(run, epochs=4, patience=5, progress=False)
    state = runs.newest_generation(run).training_state()
    assert runs.load_config(run).train.epochs == 4 and runs.load_config(run).train.patience == 5
    assert state["settings_changes"] == [{"step": state["history"][1]["step"], "changes": {"epochs": 4, "patience": 5}}]
    assert len(state["history"]) == 4


def test_a_run_killed_before_its_first_checkpoint_restarts_in_place(tiny_run, tmp_path, capsys):
    run = _copy(tiny_run, tmp_path)
    shutil.rmtree(run / runs.CHECKPOINTS)
    for name in (runs.BEST, runs.LAST, runs.METRICS):
        (run / name).unlink()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert "training vae on digits" in capsys.readouterr().out
    assert len(runs.read_metrics(run)) == 2


# ----------------------------------------------------------------------------- unwritable places
def test_unwritable_outputs_give_one_line(tiny_run, tmp_path, capsys):
    _one_line(capsys, "train", "vae", "--data", "digits", *TINY_FLAGS, "--out", "/proc/aekit-run", match="/proc/aekit-run")
    _one_line(capsys, "sample", tiny_run, "-o", "/proc/samples.png", match="cannot write /proc/samples.png")
    _one_line(capsys, "encode", tiny_run, "-o", "/proc/z.npy", match="cannot write /proc/z.npy")


def test_a_full_disk_mid_training_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    real = runs._write_new
    calls = {"n": 0}

    def filling(path, data):
        calls["n"] += 1
        if calls["n"] > 12:  # the disk fills during the third checkpoint
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(runs, "_write_new", filling)
    _one_line(capsys, "train", "vae", "--data", "digits", "--epochs", "3", *TINY_FLAGS, "--out", tmp_path / "r",
              match="the disk is full")
    monkeypatch.setattr(runs, "_write_new", real)
    newest = runs.newest_generation(tmp_path / "r")
    newest.verify()
    assert not [p for p in (tmp_path / "r").rglob("*") if p.name.startswith(".tmp-gen-")]
    assert main(["train", "--resume", str(tmp_path / "r"), "--no-progress"]) == 0
    assert len(runs.read_metrics(tmp_path / "r")) == 3


def test_misspelled_config_section_is_refused(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"trian": {"epochs": 3}}))
    _one_line(capsys, "train", "vae", "--config", cfg, "--out", tmp_path / "r", match="unknown section(s) ['trian']")
    assert not (tmp_path / "r").exists()


def test_run_files_honour_the_umask(tiny_run):
    mode = (tiny_run / "config.json").stat().st_mode & 0o777
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask
    assert (runs.newest_generation(tiny_run).file(runs.GEN_WEIGHTS).stat().st_mode & 0o777) == 0o666 & ~mask
