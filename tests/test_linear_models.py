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
    # EM at the run's defaults (PX-EM + SQUAREM, tol 1e-12): the closed form to float32 storage.
    em = aekit.train("ppca", "digits", out=tmp_path / "em", latent_dim=6, method="em", figures="none",
                     progress=False)
    assert em.fit_info["converged"] and em.fit_info["n_iter"] < 200
    splits = prepare_data(cf.config)
    x = splits.test.x
    cov = lambda m: (m.W.double() @ m.W.double().T + m.noise_variance.double() * torch.eye(64, dtype=torch.float64))
    torch.testing.assert_close(cov(em), cov(cf), atol=1e-5 * cov(cf).abs().max().item(), rtol=0)
    torch.testing.assert_close(em.log_likelihood(x).double().mean(), cf.log_likelihood(x).double().mean(), rtol=1e-6,
                               atol=0)
    reference = PPCA(6).fit(splits.train.x.numpy()).score_samples(x.numpy())
    np.testing.assert_allclose(cf.log_likelihood(x).double().numpy(), np.asarray(reference), rtol=1e-4)
    r = evaluate_model(cf, splits.test, progress=False, reference=splits.train)
    assert r["log_px_method"] == "exact" and r["max_principal_angle"] < 1e-3


def test_ppca_run_face_delegates_to_the_estimator_formulas(tmp_path):
    """The run's encode / decode / log_likelihood are the estimator's posterior / decode / score_samples
    for the same μ, W, σ² (one module holds the formulas), with NaN entries treated as missing."""
    from aekit.models.ppca import PPCA

    model = aekit.train("ppca", "digits", out=tmp_path / "cf", latent_dim=5, figures="none", progress=False).double()
    x = prepare_data(model.config).test.x[:40].double()
    estimator = PPCA(5).fit(prepare_data(model.config).train.x.double())
    # The run stored the estimator's fit (float32 buffers, here converted back to float64).
    torch.testing.assert_close(model.W, estimator.W_, atol=1e-5 * estimator.W_.abs().max().item(), rtol=0)
    estimator.mean_, estimator.W_, estimator.noise_variance_ = model.mean, model.W, float(model.noise_variance)
    x_missing = x.clone()
    x_missing[torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < 0.3] = float("nan")
    for data in (x, x_missing):
        qz, reference = model.encode(data), estimator.posterior(data)
        torch.testing.assert_close(qz.mean, reference.mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(qz.covariance_matrix.expand_as(reference.covariance_matrix),
                                   reference.covariance_matrix, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(model.log_likelihood(data), estimator.log_likelihood(data), rtol=1e-12, atol=0)
    z = model.embed(x)
    torch.testing.assert_close(model.decode(z).mean, estimator.decode(z).mean)
    torch.testing.assert_close(model.decode(z).stddev, estimator.decode(z).stddev)
    torch.testing.assert_close(model.reconstruct(x), torch.as_tensor(estimator.reconstruct(x)))
    assert model.sample(7).shape == (7, 64) and model.decoder_basis().shape == (64, 5)


def test_ppca_em_run_is_seeded_by_the_training_seed(tmp_path):
    """EM starts from a random W drawn with --seed: stopped after 2 evaluations, two seeds differ and
    the same seed repeats exactly."""
    from sklearn.exceptions import ConvergenceWarning

    def loadings(name, seed):
        with pytest.warns(ConvergenceWarning, match="max_iter=2"):
            return aekit.train("ppca", "digits", out=tmp_path / name, latent_dim=4, method="em", max_iter=2,
                               seed=seed, figures="none", progress=False).W

    first, again, other = loadings("a", 0), loadings("b", 0), loadings("c", 1)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other, atol=1e-3)


def test_latent_size_must_be_below_the_data_dimension(tmp_path):
    with pytest.raises(AekitError, match=r"latent_dim must be below the data dimension.*< 64"):
        aekit.train("pca", "digits", out=tmp_path / "x", latent_dim=64, progress=False)
    with pytest.raises(AekitError, match="--likelihood does not apply to linear-ae"):
        aekit.train("linear-ae", "digits", out=tmp_path / "y", likelihood="bernoulli", progress=False)
