"""The command line end to end on digits, and every bad input giving one clear line and a non-zero exit."""

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest

from aekit.cli import main
from conftest import REPO

TINY_FLAGS = ["--hidden-dims", "32", "--latent-dim", "2", "--batch-size", "64", "--no-progress"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "vae"
    assert main(["train", "vae", "--data", "digits", "--epochs", "2", "--out", str(run), *TINY_FLAGS]) == 0
    return run


def test_train_writes_a_complete_run_folder(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"config.json", "model.safetensors", "model-last.safetensors", "checkpoint", "metrics.jsonl", "tb",
            "samples.png", "reconstructions.png", "latent.png", "manifold.png", "curves.png"} <= names


def test_evaluate_json(trained_run, capsys):
    code, out, _ = run_cli(capsys, "evaluate", trained_run, "--iw-samples", "50", "--json")
    assert code == 0
    r = json.loads(out)
    assert r["split"] == "test" and r["split_size"] > 0
    assert r["neg_elbo"] == pytest.approx(r["reconstruction"] + r["kl"], rel=1e-6)
    # importance sampling with k = 50 is at least as tight as the ELBO (up to the noise of a 1-sample ELBO)
    assert r["log_px"] >= -r["neg_elbo"] - 0.5
    assert r["bits_per_dim"] == pytest.approx(-r["log_px"] / (64 * np.log(2)))
    assert len(r["kl_per_dim"]) == 2
    # active units: posterior means (what aekit encode writes) whose variance over the split exceeds 0.01
    assert run_cli(capsys, "encode", trained_run, "-o", trained_run.parent / "z.npy")[0] == 0
    z = np.load(trained_run.parent / "z.npy")
    assert r["active_units"] == int((z.var(0, ddof=1) > 0.01).sum())
    code, out, _ = run_cli(capsys, "evaluate", trained_run, "--iw-samples", "0", "--split", "val")
    assert code == 0 and "neg_elbo" in out


def test_generation_commands(trained_run, tmp_path, capsys):
    assert run_cli(capsys, "sample", trained_run, "-n", "16", "-o", tmp_path / "s.png")[0] == 0
    assert run_cli(capsys, "sample", trained_run, "-n", "16", "-o", tmp_path / "s.npy")[0] == 0
    assert np.load(tmp_path / "s.npy").shape == (16, 64)
    assert run_cli(capsys, "reconstruct", trained_run, "-o", tmp_path / "r.png")[0] == 0
    assert run_cli(capsys, "interpolate", trained_run, "--pairs", "3", "--steps", "5", "-o", tmp_path / "i.npy")[0] == 0
    interp = np.load(tmp_path / "i.npy")
    assert interp.shape == (15, 64)
    assert run_cli(capsys, "encode", trained_run, "-o", tmp_path / "z.npz")[0] == 0
    z = np.load(tmp_path / "z.npz")
    assert z["z"].shape[1] == 2 and len(z["y"]) == len(z["z"])
    assert run_cli(capsys, "plot", trained_run, "-o", tmp_path / "c.png")[0] == 0
    for name in ("s.png", "r.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_cvae_generates_the_requested_label(tmp_path, capsys):
    run = tmp_path / "cvae"
    assert run_cli(capsys, "train", "cvae", "--data", "digits", "--epochs", "1", "--out", run, *TINY_FLAGS)[0] == 0
    assert run_cli(capsys, "sample", run, "-n", "8", "--label", "3", "-o", tmp_path / "three.png")[0] == 0
    code, _, err = run_cli(capsys, "sample", run, "--label", "12")
    assert code == 2 and "--label must be in 0..9" in err


def test_resume_from_cli(trained_run, capsys):
    code, out, _ = run_cli(capsys, "train", "--resume", trained_run, "--epochs", "3")
    assert code == 0 and "epoch 3/3" in out
    assert len((trained_run / "metrics.jsonl").read_text().splitlines()) == 3


def test_list_and_help(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for word in ("vae", "iwae", "cvae", "digits", "mnist", "bernoulli", "continuous-bernoulli", "normal"):
        assert word in out
    proc = subprocess.run([sys.executable, "-m", "aekit", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "train" in proc.stdout


def _one_line_error(capsys, *argv, match):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aekit: error:"), err
    assert match in lines[0], lines[0]
    assert "Traceback" not in err


def test_bad_names(capsys, tmp_path):
    _one_line_error(capsys, "train", "vea", "--out", tmp_path / "x", match="unknown model 'vea'; choose one of: ae")
    _one_line_error(capsys, "train", "vae", "--data", "cifar", "--out", tmp_path / "x", match="cifar")
    _one_line_error(capsys, "train", "vae", "--likelihood", "poisson", "--out", tmp_path / "x", match="bernoulli")
    _one_line_error(capsys, "train", "vae", "--binarize", "sometimes", "--out", tmp_path / "x", match="dynamic")
    _one_line_error(capsys, "train", "vae", "--epochs", "zero", match="invalid int value")
    _one_line_error(capsys, "train", "vae", "--latent-dim", "0", match="--latent-dim must be >= 1")
    _one_line_error(capsys, "evaluate", tmp_path / "nowhere", match="does not exist")
    _one_line_error(capsys, "train", "iwae", "--corruption", "masking", "--out", tmp_path / "x",
                    match="--corruption does not apply to iwae")
    _one_line_error(capsys, "train", "vae", "--body", "conv", "--hidden-dims", "", "--out", tmp_path / "x",
                    match="conv body needs --hidden-dims")
    assert not (tmp_path / "x").exists()


def test_compile_is_refused_where_it_would_change_nothing(capsys, tmp_path, trained_run):
    """evaluate --compile compiles a Bernoulli decoder's importance-sampled log p(x): refused without one."""
    _one_line_error(capsys, "evaluate", trained_run, "--compile", "--iw-samples", "0", match="--iw-samples is 0")
    code, out, _ = run_cli(capsys, "evaluate", trained_run, "--no-compile", "--iw-samples", "0", "--json")
    assert code == 0 and "log_px" not in out  # --no-compile asks for nothing a run could lack
    assert main(["train", "pca", "--data", "digits", "--latent-dim", "2", "--out", str(tmp_path / "pca")]) == 0
    capsys.readouterr()
    _one_line_error(capsys, "evaluate", tmp_path / "pca", "--compile", match="a pca run has no importance-sampled")
    assert main(["train", "vae", "--data", "digits", "--likelihood", "gaussian", "--epochs", "1",
                 "--out", str(tmp_path / "gauss"), *TINY_FLAGS]) == 0
    capsys.readouterr()
    _one_line_error(capsys, "evaluate", tmp_path / "gauss", "--compile", match="likelihood is gaussian, not bernoulli")
    assert main(["train", "miwae", "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "miwae"), *TINY_FLAGS]) == 0
    capsys.readouterr()
    _one_line_error(capsys, "evaluate", tmp_path / "miwae", "--compile", match="scores only the observed entries")


def test_missing_mnist_files_say_where_to_put_them(capsys, tmp_path, monkeypatch):
    import aekit.data.download as download

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(download, "urlopen", offline)
    _one_line_error(capsys, "train", "vae", "--data", "mnist", "--data-dir", tmp_path / "empty",
                    "--out", tmp_path / "x", match="train-images-idx3-ubyte")


def test_corrupt_idx_is_detected(capsys, tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (d / f"{name}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03garbage"))
    _one_line_error(capsys, "train", "vae", "--data", "mnist", "--data-dir", d, "--out", tmp_path / "x",
                    match="ubyte")


def test_bad_user_data(capsys, tmp_path):
    nan = tmp_path / "nan.npy"
    x = np.random.rand(50, 4)
    x[3, 1] = np.nan
    np.save(nan, x)
    _one_line_error(capsys, "train", "vae", "--data", nan, "--out", tmp_path / "x", match="NaN")
    wide = tmp_path / "wide.npy"
    np.save(wide, np.random.randn(200, 4) * 3)
    _one_line_error(capsys, "train", "vae", "--data", wide, "--out", tmp_path / "x", match="needs values in [0, 1]")
    unlabeled = tmp_path / "u.npy"
    np.save(unlabeled, np.random.rand(200, 4))
    _one_line_error(capsys, "train", "cvae", "--data", unlabeled, "--out", tmp_path / "x", match="cvae needs labels")
    truncated = tmp_path / "t.npz"
    np.savez(truncated, x=np.random.rand(200, 4))
    truncated.write_bytes(truncated.read_bytes()[:100])
    _one_line_error(capsys, "train", "vae", "--data", truncated, "--out", tmp_path / "x", match="t.npz")
    # the same Gaussian-likelihood data trains fine
    assert run_cli(capsys, "train", "vae", "--data", wide, "--likelihood", "gaussian", "--epochs", "1",
                   "--out", tmp_path / "ok", *TINY_FLAGS)[0] == 0


def test_corrupt_checkpoint_and_mismatched_weights(capsys, tmp_path, trained_run):
    import shutil

    from aekit import runs

    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    state = runs.newest_generation(run).file(runs.GEN_STATE)
    state.write_bytes(state.read_bytes()[:200])
    before = runs.folder_digest(run)
    _one_line_error(capsys, "train", "--resume", run, "--epochs", "5", match="does not match the checksum")
    assert runs.folder_digest(run) == before
    # weights of another architecture under a (hand-written, unstamped) config
    shutil.rmtree(run)
    shutil.copytree(trained_run, run)
    shutil.rmtree(run / runs.CHECKPOINTS)  # a folder with only config.json and the weights files
    cfg = json.loads((run / "config.json").read_text())
    cfg.pop("aekit")
    cfg["model"]["latent_dim"] = 5
    (run / "config.json").write_text(json.dumps(cfg))
    _one_line_error(capsys, "sample", run, match="does not fit")
    (run / "model.safetensors").write_bytes(b"not safetensors at all")
    _one_line_error(capsys, "sample", run, match="corrupt")


def test_existing_run_is_not_overwritten(capsys, trained_run):
    before = (trained_run / "config.json").read_bytes()
    _one_line_error(capsys, "train", "vae", "--out", trained_run, match="already holds a run")
    assert (trained_run / "config.json").read_bytes() == before
