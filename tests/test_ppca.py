"""PPCA: the mathematics (ML optimality, EM = closed form, likelihoods and posteriors against dense
Gaussian formulas and scikit-learn), missing data, the scikit-learn face, and principal angles."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from torch.distributions import LowRankMultivariateNormal, MultivariateNormal

from aekit.errors import AekitError
from aekit.linalg import max_principal_angle, pca_subspace, principal_angles
from aekit.models.ppca import PPCA, _covariance_is_cheaper, aitken_gap, em_step_covariance, fit_em


def low_rank_data(n=400, d=12, q=3, noise=2.0, seed=0):
    """x = A z + μ + noise·ε with latent variances ~ 100, 20, 6.

    EM's slowest mode rescales W within the subspace at a rate ≈ 1 − σ²/λ per iteration, so the
    default noise (σ² ≈ 4) keeps EM to a few hundred iterations; smaller noise needs thousands."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, q)) * np.linspace(3.0, 1.5, q)  # (d, q)
    Z = rng.normal(size=(n, q))
    mu = rng.normal(size=d) * 2.0
    return Z @ A.T + mu + noise * rng.normal(size=(n, d))


@pytest.fixture(scope="module")
def digits():
    return load_digits().data  # (1797, 64), pixel counts 0..16, several constant-zero pixels


@pytest.fixture(scope="module")
def X():
    return low_rank_data()


def total_loglik(X, mean, W, noise_variance):
    """Σ_n log p(x_n) under N(mean, W Wᵀ + σ² I), computed independently of PPCA."""
    X = torch.as_tensor(X)
    cov_diag = torch.full((X.shape[1],), float(noise_variance), dtype=torch.float64)
    return LowRankMultivariateNormal(mean, W, cov_diag).log_prob(X).sum()


# ------------------------------------------------------------------------- closed form


def test_closed_form_noise_variance_is_mean_of_discarded_eigenvalues(X):
    q = 3
    model = PPCA(q).fit(X)
    eigenvalues = np.linalg.eigvalsh(np.cov(X.T, bias=True))[::-1]  # ML covariance (1/N), descending
    assert model.noise_variance_ == pytest.approx(eigenvalues[q:].mean(), rel=1e-10)
    np.testing.assert_allclose(model.explained_variance_.numpy(), eigenvalues[:q], rtol=1e-10)
    np.testing.assert_allclose(model.mean_.numpy(), X.mean(axis=0), rtol=1e-12)
    # T&B eq. 7 with R = I: WᵀW = Λ_q − σ² I
    np.testing.assert_allclose((model.W_.T @ model.W_).numpy(), np.diag(eigenvalues[:q] - model.noise_variance_),
                               atol=1e-9)


def test_closed_form_with_fewer_samples_than_features_uses_D_minus_q():
    """N < D: the SVD route; the D − N zero eigenvalues count in σ² (T&B eq. 8 divides by D − q)."""
    X = low_rank_data(n=30, d=50, q=3, seed=1)
    model = PPCA(3).fit(X)
    eigenvalues = np.clip(np.linalg.eigvalsh(np.cov(X.T, bias=True))[::-1], 0, None)
    assert model.noise_variance_ == pytest.approx(eigenvalues[3:].sum() / (50 - 3), rel=1e-9)
    np.testing.assert_allclose(model.explained_variance_.numpy(), eigenvalues[:3], rtol=1e-9)


def test_closed_form_is_a_likelihood_maximum(X):
    model = PPCA(3).fit(X)
    mean, W, s2 = model.mean_, model.W_, model.noise_variance_
    best = total_loglik(X, mean, W, s2)
    assert float(best) == pytest.approx(model.score(X) * len(X), rel=1e-12)

    gen = torch.Generator().manual_seed(0)
    for _ in range(5):  # any small move of W or σ² lowers the likelihood
        direction = torch.randn(W.shape, generator=gen, dtype=torch.float64)
        assert total_loglik(X, mean, W + 1e-3 * direction, s2) < best
    assert total_loglik(X, mean, W, s2 * 1.01) < best
    assert total_loglik(X, mean, W, s2 * 0.99) < best
    assert total_loglik(X, mean + 1e-3, W, s2) < best

    # Stationarity: the gradient of the total log-likelihood vanishes at (W, σ²).
    W_var = W.clone().requires_grad_(True)
    log_s2 = torch.tensor(math.log(s2), dtype=torch.float64, requires_grad=True)
    loglik = LowRankMultivariateNormal(mean, W_var, log_s2.exp().expand(X.shape[1])).log_prob(torch.as_tensor(X)).sum()
    loglik.backward()
    assert W_var.grad.abs().max() < 1e-8 * len(X)
    assert abs(float(log_s2.grad)) < 1e-8 * len(X)


def test_noise_floor_keeps_the_likelihood_finite_on_exactly_low_rank_data():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 6))  # rank 2: the ML σ² is 0
    avg_variance = X.var(axis=0).mean()
    for method in ("closed-form", "em"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = PPCA(2, method=method, max_iter=50, random_state=0).fit(X)
        assert 0 < model.noise_variance_ <= 1e-10 * avg_variance
        assert np.isfinite(model.score_samples(X)).all()
    with pytest.raises(AekitError, match="zero variance"):
        PPCA(2).fit(np.ones((10, 4)))


# ------------------------------------------------------------------------- EM


def small_eigengap_data(n=3000, d=30, seed=0):
    """Five latent directions with variances 9, 7, 5, 4, 3.8 plus unit noise: with q = 4 the sample
    eigenvalues λ_5 / λ_4 ≈ 0.96, so EM's subspace (a power iteration) converges slowly."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(d, 5)))
    z = rng.normal(size=(n, 5)) * np.sqrt([9.0, 7.0, 5.0, 4.0, 3.8])
    return z @ basis.T + rng.normal(size=(n, d)) + 3.0 * rng.normal(size=d)


def em_datasets(name):
    if name == "digits":
        return load_digits().data
    if name == "small-eigengap":
        return small_eigengap_data()
    return low_rank_data(n=1600)


@pytest.mark.parametrize("name, q", [("digits", 8), ("digits", 20), ("small-eigengap", 4), ("low-rank", 3)])
def test_em_reaches_the_closed_form_maximum(name, q):
    """EM at its defaults (PX-EM + SQUAREM, Aitken stopping at tol = 1e-12) against T&B eq. 7-8.

    Measured: training gap ≤ 2e-14 relative, test log-likelihood ≤ 1e-8, covariance ≤ 1e-7 of max|C|,
    in 29-55 evaluations. EM stopped on a small relative change (the former rule, tol = 1e-6 of
    the change) leaves the test log-likelihood ~1e-5 away on MNIST; a wrong E- or M-step, far more.
    """
    X = em_datasets(name)
    train, test = X[:1200], X[1200:]
    closed = PPCA(q).fit(train)
    em = PPCA(q, method="em", random_state=0).fit(train)
    assert em.converged_ and em.n_iter_ < 200
    train_gap = (closed.score(train) - em.score(train)) / abs(closed.score(train))
    assert -1e-12 <= train_gap <= 1e-10  # the closed form is the global maximum
    assert em.score(test) == pytest.approx(closed.score(test), rel=1e-6)
    C_em, C_closed = em.get_covariance().numpy(), closed.get_covariance().numpy()
    np.testing.assert_allclose(C_em, C_closed, rtol=0, atol=1e-5 * np.abs(C_closed).max())
    assert em.noise_variance_ == pytest.approx(closed.noise_variance_, rel=1e-6)
    # Canonical form removes EM's rotation: the same columns, signs included.
    np.testing.assert_allclose(em.W_.numpy(), closed.W_.numpy(), rtol=0, atol=1e-3 * closed.W_.abs().max().item())
    # The recorded likelihood is the model's: the trace formula on S equals the per-sample Woodbury one.
    assert em.loglik_history_[-1] == pytest.approx(em.score(train) * len(train), rel=1e-10)


@pytest.mark.parametrize("name, q", [("digits", 20), ("small-eigengap", 4)])
def test_acceleration_cuts_evaluations(name, q):
    """PX-EM + SQUAREM needs several times fewer passes than plain EM to the same tolerance (measured
    55 against 307 on digits q = 20, 40 against 225 on the small-eigengap set)."""
    X = em_datasets(name)[:1200]
    plain = PPCA(q, method="em", acceleration="none", random_state=0, max_iter=5000).fit(X)
    fast = PPCA(q, method="em", random_state=0).fit(X)
    assert plain.converged_ and fast.converged_
    assert fast.n_iter_ * 3 < plain.n_iter_
    assert fast.score(X) >= plain.score(X) - 1e-10 * abs(plain.score(X))


@pytest.mark.parametrize("acceleration", ["none", "px", "squarem"])
def test_em_log_likelihood_never_decreases(digits, acceleration):
    # Digits has close eigenvalues around q, so EM climbs through many iterations.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        em = PPCA(8, method="em", max_iter=60, tol=0.0, acceleration=acceleration, random_state=1).fit(digits)
    history = np.array(em.loglik_history_)
    assert 20 <= len(history) <= em.n_iter_ <= 60
    if acceleration == "none":
        assert len(history) == em.n_iter_  # one recorded likelihood per evaluation without extrapolation
    steps = np.diff(history)
    assert steps.min() >= -1e-12 * abs(history[-1])  # monotone up to float64 rounding
    assert history[-1] - history[0] > 1.0  # and it did climb
    # The E-step's log-likelihood equals torch's LowRankMultivariateNormal on the final model.
    assert history[-1] == pytest.approx(em.score(digits) * len(digits), rel=1e-10)
    # Still below (or at) the global maximum given by the closed form.
    assert history[-1] <= PPCA(8).fit(digits).score(digits) * len(digits) * (1 - 1e-13)


def test_em_step_on_the_covariance_equals_the_per_sample_em_step(X):
    """T&B's update on S equals PRML eq. 12.54-12.57 written out over samples; the PX step only
    reparametrises the expanded model z ~ N(0, G): W_px W_pxᵀ = W̃ G W̃ᵀ."""
    Xt = torch.as_tensor(X)
    N, D = Xt.shape
    q, s2 = 3, 1.7
    W = torch.as_tensor(np.random.default_rng(4).normal(size=(D, q)))
    Xc = Xt - Xt.mean(0)
    S = Xc.T @ Xc / N
    M = W.T @ W + s2 * torch.eye(q, dtype=torch.float64)
    Ez = torch.linalg.solve(M, W.T @ Xc.T).T  # (N, q), PRML 12.54
    Ezz = N * s2 * torch.linalg.inv(M) + Ez.T @ Ez  # Σ_n E[z zᵀ], PRML 12.55
    W_new = (Xc.T @ Ez) @ torch.linalg.inv(Ezz)  # PRML 12.56
    s2_new = float((Xc.square().sum() - 2 * (Ez @ W_new.T * Xc).sum() + (Ezz * (W_new.T @ W_new)).sum()) / (N * D))

    loglik, (W_em, s2_em) = em_step_covariance(lambda A: S @ A, float(S.trace()), N, W, s2, expand=False)
    assert loglik == pytest.approx(total_loglik(X, Xt.mean(0), W, s2).item(), rel=1e-12)
    np.testing.assert_allclose(W_em.numpy(), W_new.numpy(), rtol=1e-10)
    assert s2_em == pytest.approx(s2_new, rel=1e-10)

    _, (W_px, s2_px) = em_step_covariance(lambda A: S @ A, float(S.trace()), N, W, s2, expand=True)
    G = Ezz / N
    np.testing.assert_allclose((W_px @ W_px.T).numpy(), (W_new @ G @ W_new.T).numpy(), rtol=1e-9, atol=1e-12)
    assert s2_px == s2_em


def test_covariance_and_data_routes_take_the_same_steps(X):
    Xt = torch.as_tensor(X)
    W0 = torch.as_tensor(np.random.default_rng(0).normal(size=(X.shape[1], 3)))
    with_S = fit_em(Xt, W0, 1.0, max_iter=25, tol=0.0, route="covariance")
    with_data = fit_em(Xt, W0, 1.0, max_iter=25, tol=0.0, route="data")
    np.testing.assert_allclose(with_data.loglik_history, with_S.loglik_history, rtol=1e-12)
    np.testing.assert_allclose(with_data.W.numpy(), with_S.W.numpy(), rtol=1e-8, atol=1e-10)
    # The cost model forms S for MNIST-like shapes, never when N < D.
    assert _covariance_is_cheaper(60000, 784, 30) and _covariance_is_cheaper(1797, 64, 8)
    assert not _covariance_is_cheaper(30, 50, 3)


def test_aitken_gap_is_exact_on_a_geometric_sequence():
    limit, rho = -1000.0, 0.9
    history = [limit - 50.0 * rho ** t for t in range(12)]
    k = 5
    assert aitken_gap(history, window=k) == pytest.approx(limit - history[-1 - k], rel=1e-9)
    assert aitken_gap(history[:10], window=k) == math.inf  # fewer than 2k + 1 values
    assert aitken_gap([1.0, 3.0, 2.0]) == 0.0  # a decrease is rounding: nothing left to gain
    growing = [-100.0 + t ** 2 for t in range(12)]
    assert aitken_gap(growing, window=k) == math.inf  # increments not shrinking yet


def test_em_warns_when_max_iter_runs_out(X):
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        em = PPCA(3, method="em", max_iter=3, tol=0.0, random_state=0).fit(X)
    assert em.n_iter_ == 3 and not em.converged_


def test_em_float32_agrees_with_float64(X):
    # Same seed, same 30 iterations: the two runs differ only by rounding. (Not run to convergence:
    # float32 resolves L to ~1e-7 relative, so EM in float32 cannot be driven to tol below ~1e-6.)
    params = dict(method="em", tol=0.0, max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        em64 = PPCA(3, **params).fit(X)
        em32 = PPCA(3, dtype="float32", **params).fit(X.astype(np.float32))
    assert em32.W_.dtype == torch.float32 and em32.mean_.dtype == torch.float32
    C64 = em64.get_covariance().numpy()
    np.testing.assert_allclose(em32.get_covariance().double().numpy(), C64, rtol=0, atol=1e-4 * np.abs(C64).max())


# ------------------------------------------------------------------------- likelihood and posterior


def test_score_samples_matches_sklearn_pca(digits, X):
    """sklearn's PCA is the PPCA model with the 1/(N − 1) covariance: covariance='unbiased' matches it."""
    for data, q in ((digits, 10), (digits, 30), (X, 3)):
        ours = PPCA(q, covariance="unbiased").fit(data).score_samples(data)
        theirs = PCA(n_components=q).fit(data).score_samples(data)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    # The ML fit is a different (higher-likelihood) model, so the option matters.
    ml = PPCA(10).fit(digits)
    assert not np.allclose(ml.score_samples(digits), PCA(10).fit(digits).score_samples(digits), rtol=1e-6)
    assert ml.score(digits) > PPCA(10, covariance="unbiased").fit(digits).score(digits)


@pytest.mark.parametrize("method", ["closed-form", "em"])
def test_score_samples_matches_dense_gaussian(X, method):
    model = PPCA(3, method=method, random_state=0).fit(X)
    dense = MultivariateNormal(model.mean_, covariance_matrix=model.get_covariance())
    np.testing.assert_allclose(model.score_samples(X), dense.log_prob(torch.as_tensor(X)).numpy(), rtol=1e-10)
    assert model.score(X) == pytest.approx(float(dense.log_prob(torch.as_tensor(X)).mean()), rel=1e-10)


def test_score_samples_with_nan_is_the_marginal_of_observed_coordinates(X):
    model = PPCA(3).fit(X)
    Xm = X[:20].copy()
    rng = np.random.default_rng(0)
    Xm[rng.random(Xm.shape) < 0.3] = np.nan
    Xm[0] = np.nan  # nothing observed: log p = 0
    scores = model.score_samples(Xm)
    C, mu = model.get_covariance(), model.mean_
    assert scores[0] == 0.0
    for n in range(1, 20):
        o = torch.as_tensor(~np.isnan(Xm[n]))
        dense = MultivariateNormal(mu[o], covariance_matrix=C[o][:, o])
        assert scores[n] == pytest.approx(float(dense.log_prob(torch.as_tensor(Xm[n])[o])), rel=1e-10)


def test_posterior_equals_gaussian_conditioning(X):
    """p(z|x) from the joint Gaussian of (z, x): mean Wᵀ C⁻¹ (x − μ), covariance I − Wᵀ C⁻¹ W."""
    model = PPCA(3).fit(X)
    W, mu, C = model.W_, model.mean_, model.get_covariance()
    x = torch.as_tensor(X[:10])
    Cinv = torch.linalg.inv(C)
    qz = model.posterior(X[:10])
    np.testing.assert_allclose(qz.mean.numpy(), ((x - mu) @ Cinv @ W).numpy(), rtol=1e-9, atol=1e-12)
    expected_cov = torch.eye(3, dtype=torch.float64) - W.T @ Cinv @ W
    np.testing.assert_allclose(qz.covariance_matrix[0].numpy(), expected_cov.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.transform(X[:10]), qz.mean.numpy())
    # decode ∘ mean is the mean of p(x|z), and inverse_transform is its mean.
    np.testing.assert_allclose(model.decode(qz.mean).mean.numpy(), model.inverse_transform(qz.mean).numpy())


def test_posterior_and_impute_with_nan_condition_on_observed_coordinates(X):
    model = PPCA(3).fit(X)
    W, mu, C = model.W_, model.mean_, model.get_covariance()
    Xm = X[:8].copy()
    rng = np.random.default_rng(2)
    Xm[rng.random(Xm.shape) < 0.4] = np.nan
    qz = model.posterior(Xm)
    filled = model.impute(Xm)
    for n in range(8):
        o = torch.as_tensor(~np.isnan(Xm[n]))
        m = ~o
        x_o = torch.as_tensor(Xm[n])[o]
        Coo_inv = torch.linalg.inv(C[o][:, o])
        np.testing.assert_allclose(qz.mean[n].numpy(), (W[o].T @ Coo_inv @ (x_o - mu[o])).numpy(), atol=1e-10)
        cov = torch.eye(3, dtype=torch.float64) - W[o].T @ Coo_inv @ W[o]
        np.testing.assert_allclose(qz.covariance_matrix[n].numpy(), cov.numpy(), atol=1e-10)
        # E[x_M | x_O] = μ_M + C_MO C_OO⁻¹ (x_O − μ_O)
        expected = mu[m] + C[m][:, o] @ Coo_inv @ (x_o - mu[o])
        np.testing.assert_allclose(filled[n][m.numpy()], expected.numpy(), atol=1e-10)
        np.testing.assert_array_equal(filled[n][o.numpy()], Xm[n][o.numpy()])


# ------------------------------------------------------------------------- missing data


def test_em_with_missing_entries_beats_mean_imputation():
    X = low_rank_data(n=400, d=20, q=3, noise=0.5, seed=3)
    rng = np.random.default_rng(4)
    held_out = rng.random(X.shape) < 0.2
    Xm = np.where(held_out, np.nan, X)
    model = PPCA(3, method="em", tol=1e-6, random_state=0).fit(Xm)
    assert model.converged_
    history = np.array(model.loglik_history_)
    assert np.diff(history).min() >= -1e-10 * abs(history[-1])
    filled = model.impute(Xm)
    rmse_ppca = np.sqrt(np.mean((filled[held_out] - X[held_out]) ** 2))
    column_means = np.nanmean(Xm, axis=0)
    rmse_mean = np.sqrt(np.mean((np.broadcast_to(column_means, X.shape)[held_out] - X[held_out]) ** 2))
    # Measured 0.56 against 4.6: the held-out entries are predicted to about the noise level 0.5.
    assert rmse_ppca < 0.2 * rmse_mean, (rmse_ppca, rmse_mean)
    assert rmse_ppca < 0.75
    # And the final log-likelihood on the observed entries matches score_samples with NaN.
    assert history[-1] == pytest.approx(model.score(Xm) * len(Xm), rel=1e-10)


@pytest.mark.parametrize("acceleration", ["none", "px", "squarem"])
def test_missing_data_em_equals_plain_em_when_nothing_is_missing(X, acceleration):
    """The per-row missing-data updates (μ re-estimated, PX with a latent mean) take the same steps as
    the update on S when every entry is observed."""
    Xt = torch.as_tensor(X)
    rng = np.random.default_rng(0)
    W0 = torch.as_tensor(rng.normal(size=(X.shape[1], 3)))
    plain = fit_em(Xt, W0, 1.0, max_iter=40, tol=0.0, acceleration=acceleration)
    masked = fit_em(Xt, W0, 1.0, observed=torch.ones_like(Xt, dtype=torch.bool), max_iter=40, tol=0.0,
                    acceleration=acceleration)
    # At the maximum the log-likelihood is flat to float64 rounding (the last steps here move it by
    # ~1e-12 either way), so where the two stop, and the parameters' last digits (√ε ≈ 1e-8 relative,
    # as for W), depend on the order of the sums: on an AVX-512 machine SQUAREM's masked run took one
    # step more at the maximum and ended with σ² 3.7e-9 apart. Along the way the steps are the same.
    np.testing.assert_allclose(masked.W.numpy(), plain.W.numpy(), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(masked.mean.numpy(), plain.mean.numpy(), rtol=1e-10, atol=1e-12)
    assert masked.noise_variance == pytest.approx(plain.noise_variance, rel=1e-7)
    common = min(len(masked.loglik_history), len(plain.loglik_history))
    assert abs(len(masked.loglik_history) - len(plain.loglik_history)) <= 1 and common >= 10
    np.testing.assert_allclose(masked.loglik_history[:common], plain.loglik_history[:common], rtol=1e-10)


def test_accelerated_missing_data_em_is_monotone_and_reaches_plain_em():
    """With 20% of digits' pixels missing, PX-EM + SQUAREM reaches the maximum plain EM reaches
    (measured 4e-13 relative apart) in far fewer passes (measured 40 against 141), never decreasing."""
    X = load_digits().data[:600]
    rng = np.random.default_rng(0)
    Xm = np.where(rng.random(X.shape) < 0.2, np.nan, X)
    Xm[:, X.std(axis=0) == 0] = 0.0  # a pixel that is always 0 must be observed somewhere
    plain = PPCA(6, method="em", acceleration="none", random_state=0, max_iter=3000).fit(Xm)
    fast = PPCA(6, method="em", random_state=0).fit(Xm)
    assert plain.converged_ and fast.converged_ and fast.n_iter_ * 2 < plain.n_iter_
    for model in (plain, fast):
        history = np.array(model.loglik_history_)
        assert np.diff(history).min() >= -1e-12 * abs(history[-1])
    assert fast.score(Xm) == pytest.approx(plain.score(Xm), rel=1e-9)
    np.testing.assert_allclose(fast.get_covariance().numpy(), plain.get_covariance().numpy(),
                               atol=1e-4 * plain.get_covariance().abs().max().item())


def test_em_rejects_a_feature_with_no_observed_value(X):
    Xm = X.copy()
    Xm[:, 4] = np.nan
    with pytest.raises(AekitError, match="feature 4"):
        PPCA(3, method="em").fit(Xm)


# ------------------------------------------------------------------------- scikit-learn face


def test_works_in_a_pipeline_and_with_clone(digits):
    pipe = Pipeline([("scale", StandardScaler()), ("ppca", PPCA(5))])
    Z = pipe.fit_transform(digits)
    assert isinstance(Z, np.ndarray) and Z.shape == (len(digits), 5)
    scaled = StandardScaler().fit_transform(digits)
    assert pipe.score(digits) == pytest.approx(PPCA(5).fit(scaled).score(scaled), rel=1e-12)
    scores = cross_val_score(pipe, digits, cv=3)
    assert np.isfinite(scores).all()

    est = PPCA(4, method="em", tol=1e-5, random_state=3, dtype="float32")
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    twin.set_params(n_components=2, method="closed-form")
    assert twin.get_params()["n_components"] == 2 and est.n_components == 4
    assert not hasattr(clone(pipe.named_steps["ppca"]), "W_")  # clone drops fitted state
    assert list(pipe.named_steps["ppca"].get_feature_names_out()) == [f"ppca{i}" for i in range(5)]


def test_inputs_and_outputs_keep_their_kind(X):
    model = PPCA(3).fit(torch.as_tensor(X, dtype=torch.float32))
    assert model.W_.dtype == torch.float64  # working dtype, whatever the input dtype
    assert isinstance(model.transform(X), np.ndarray)
    Z = model.transform(torch.as_tensor(X))
    assert isinstance(Z, torch.Tensor) and Z.shape == (len(X), 3)
    np.testing.assert_allclose(model.inverse_transform(Z.numpy()), model.inverse_transform(Z).numpy())
    assert model.components_.shape == (3, X.shape[1]) and torch.equal(model.components_, model.W_.T)


def test_sample_draws_from_the_marginal(X):
    model = PPCA(3).fit(X)
    draws = model.sample(40000, random_state=0)
    assert torch.equal(draws[:5], model.sample(40000, random_state=0)[:5])
    C = model.get_covariance()
    scale = float(C.diagonal().max())
    np.testing.assert_allclose(draws.mean(0).numpy(), model.mean_.numpy(), atol=0.05 * math.sqrt(scale))
    np.testing.assert_allclose(torch.cov(draws.T).numpy(), C.numpy(), atol=0.05 * scale)


# ------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "params, data, match",
    [
        (dict(n_components=12), None, "n_components=12 is out of range.*< n_features = 12"),
        (dict(n_components=0), None, "n_components=0 is out of range"),
        (dict(n_components=2.5), None, "n_components=2.5"),
        (dict(n_components=3, method="svd"), None, "unknown method 'svd'; choose one of: closed-form, em"),
        (dict(n_components=3, covariance="mle"), None, "unknown covariance"),
        (dict(n_components=3, method="em", covariance="unbiased"), None, "covariance='unbiased'"),
        (dict(n_components=3, method="em", max_iter=0), None, "max_iter=0"),
        (dict(n_components=3, method="em", tol=-1.0), None, "tol=-1.0"),
        (dict(n_components=3, method="em", acceleration="aitken"), None, "unknown acceleration 'aitken'"),
        (dict(n_components=3, dtype=torch.float16), None, "dtype="),
        (dict(n_components=3), "nan", "method='em'"),
        (dict(n_components=3, method="em"), "inf", "infinite"),
        (dict(n_components=3), "1d", "2-D"),
        (dict(n_components=5), "few", "more than 5 samples"),
    ],
)
def test_bad_inputs_raise_aekit_error(X, params, data, match):
    bad = X.copy()
    if data == "nan":
        bad[3, 2] = np.nan
    elif data == "inf":
        bad[3, 2] = np.inf
    elif data == "1d":
        bad = bad[0]
    elif data == "few":
        bad = bad[:5]
    with pytest.raises(AekitError, match=match):
        PPCA(**params).fit(bad)


def test_transform_checks_feature_count(X):
    model = PPCA(3).fit(X)
    with pytest.raises(AekitError, match="fitted on 12"):
        model.transform(X[:, :5])


# ------------------------------------------------------------------------- linear algebra helpers


def test_principal_angles_known_cases():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 2))
    assert principal_angles(A, A).abs().max() < 1e-7  # √eps resolution of arccos
    E = np.eye(6)
    np.testing.assert_allclose(principal_angles(E[:, :2], E[:, 2:4]).numpy(), [math.pi / 2] * 2, atol=1e-12)
    theta = 0.3  # rotate span(e1, e2) by θ in the (e2, e3) plane: angles 0 and θ
    B = np.stack([E[:, 0], math.cos(theta) * E[:, 1] + math.sin(theta) * E[:, 2]], axis=1)
    np.testing.assert_allclose(principal_angles(E[:, :2], B).numpy(), [0.0, theta], atol=1e-7)
    assert max_principal_angle(E[:, :2], B) == pytest.approx(theta, abs=1e-12)


def test_principal_angles_are_invariant_to_the_basis():
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    mix_a, mix_b = rng.normal(size=(3, 3)), rng.normal(size=(2, 2))  # invertible with probability 1
    angles = principal_angles(A, B)
    assert angles.shape == (2,) and bool((angles[1:] >= angles[:-1]).all())
    np.testing.assert_allclose(principal_angles(A @ mix_a, B @ mix_b).numpy(), angles.numpy(), atol=1e-10)
    np.testing.assert_allclose(principal_angles(B, A).numpy(), angles.numpy(), atol=1e-10)
    with pytest.raises(AekitError, match="linearly dependent"):
        principal_angles(np.stack([A[:, 0], 2 * A[:, 0]], axis=1), B)


@pytest.mark.parametrize("n, d", [(300, 10), (8, 20)])  # eigh route (N ≥ D) and SVD route (N < D)
def test_pca_subspace_matches_dense_eigendecomposition(n, d):
    X = np.random.default_rng(2).normal(size=(n, d)) @ np.diag(np.linspace(3, 0.5, d))
    basis, eigenvalues = pca_subspace(X, 3, ddof=1)
    expected_values, expected_vectors = np.linalg.eigh(np.cov(X.T))
    expected_values, expected_vectors = np.clip(expected_values[::-1], 0, None), expected_vectors[:, ::-1]
    np.testing.assert_allclose(eigenvalues.numpy(), expected_values, atol=1e-10)
    # Compare projectors, not signs.
    P = basis @ basis.T
    np.testing.assert_allclose(P.numpy(), expected_vectors[:, :3] @ expected_vectors[:, :3].T, atol=1e-8)
    assert max_principal_angle(basis, expected_vectors[:, :3]) < 1e-6


def test_pca_subspace_is_exact_for_data_far_from_the_origin():
    """The fast XᵀX − N μμᵀ route would lose ~14 digits at an offset of 1e7; the guard must catch it."""
    X = np.random.default_rng(3).normal(size=(500, 6)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.2, 0.1])
    basis, eigenvalues = pca_subspace(X, 2)
    far_basis, far_eigenvalues = pca_subspace(X + 1e7, 2)
    np.testing.assert_allclose(far_eigenvalues.numpy(), eigenvalues.numpy(), rtol=1e-6)
    assert max_principal_angle(far_basis, basis) < 1e-6
    assert PPCA(2).fit(X + 1e7).noise_variance_ == pytest.approx(PPCA(2).fit(X).noise_variance_, rel=1e-6)
