"""Linear autoencoder = PCA subspace (Baldi & Hornik), closed-form PCA, PPCA runs, through the CLI/API."""

import json

import numpy as np
import pytest
import torch

import aekit
from aekit.cli import main
from aekit.errors import AekitError
from aekit.evaluate import evaluate_model
from aekit.trainer import prepare_data


@pytest.fixture(scope="module")
def low_rank_file(tmp_path_factory):
    """2000 points near a 3-D subspace of R^12 (eigenvalues 9, 4, 1 against noise 0.01)."""
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(12, 3)))
    z = rng.normal(size=(2000, 3)) * np.array([3.0, 2.0, 1.0])
    x = z @ basis.T + 0.1 * rng.normal(size=(2000, 12)) + 0.5
    path = tmp_path_factory.mktemp("lowrank") / "lowrank.npy"
    np.save(path, x.astype(np.float32))
    return path


def _evaluate(run):
    model = aekit.load(run)
    splits = prepare_data(model.config)
    return evaluate_model(model, splits.test, iw_samples=0, progress=False, reference=splits.train)


def test_linear_autoencoder_learns_the_pca_subspace(tmp_path, low_rank_file):
    aekit.train("linear-ae", str(low_rank_file), out=tmp_path / "lin", latent_dim=3, epochs=30, lr=2e-2, lr_schedule="cosine",
                batch_size=64, figures="none", progress=False)
    r = _evaluate(tmp_path / "lin")
    assert r["max_principal_angle"] < 0.02, r
    # within 5% of the least error any rank-3 linear map can reach (the total variance is ~150x larger)
    assert r["train_squared_error"] == pytest.approx(r["pca_residual"], rel=0.05)


def test_untrained_linear_autoencoder_is_far_from_the_subspace(tmp_path, low_rank_file):
    """The check above can fail: one step of training leaves the subspace far from PCA's."""
    aekit.train("linear-ae", str(low_rank_file), out=tmp_path / "lin", latent_dim=3, steps=1, lr=1e-3,
                figures="none", progress=False)
    r = _evaluate(tmp_path / "lin")
    assert r["max_principal_angle"] > 0.3
    assert r["train_squared_error"] > 2 * r["pca_residual"]


def test_closed_form_pca_run(tmp_path, capsys):
    assert main(["train", "pca", "--data", "digits", "--latent-dim", "8", "--out", str(tmp_path / "pca"),
                 "--no-progress"]) == 0
    assert main(["evaluate", str(tmp_path / "pca"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["max_principal_angle"] < 1e-6
    assert r["train_squared_error"] == pytest.approx(r["pca_residual"], rel=1e-6)
    assert (tmp_path / "pca" / "spectrum.png").exists() and (tmp_path / "pca" / "basis.png").exists()


def test_ppca_runs_em_and_closed_form_agree_and_match_the_estimator(tmp_path):
    from aekit.models.ppca import PPCA

    cf = aekit.train("ppca", "digits", out=tmp_path / "cf", latent_dim=6, figures="none", progress=False)
    em = aekit.train("ppca", "digits", out=tmp_path / "em", latent_dim=6, method="em", max_iter=2000, tol=1e-10,
                     figures="none", progress=False)
    splits = prepare_data(cf.config)
    x = splits.test.x
    cov = lambda m: (m.W @ m.W.T + m.noise_variance * torch.eye(64)).double()
    torch.testing.assert_close(cov(em), cov(cf), atol=2e-3, rtol=0)
    reference = PPCA(6).fit(splits.train.x.numpy()).score_samples(x.numpy())
    np.testing.assert_allclose(cf.log_likelihood(x).double().numpy(), np.asarray(reference), rtol=1e-4)
    r = evaluate_model(cf, splits.test, progress=False, reference=splits.train)
    assert r["log_density_method"] == "exact" and r["max_principal_angle"] < 1e-3 and "log_px" not in r


def test_latent_size_must_be_below_the_data_dimension(tmp_path):
    with pytest.raises(AekitError, match=r"latent_dim must be below the data dimension.*< 64"):
        aekit.train("pca", "digits", out=tmp_path / "x", latent_dim=64, progress=False)
    with pytest.raises(AekitError, match="--likelihood does not apply to linear-ae"):
        aekit.train("linear-ae", "digits", out=tmp_path / "y", likelihood="bernoulli", progress=False)
