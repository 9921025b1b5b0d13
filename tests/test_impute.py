"""Missing data: the masked likelihood, MIWAE, and every imputation method against the exact Gaussian conditional.

The reference is a known linear-Gaussian model x = Wz + μ + σε (PPCA), whose conditional
E[x_m | x_o] = μ_m + C_mo C_oo⁻¹ (x_o − μ_o), C = WWᵀ + σ²I, is computed densely here, row by row.
"""

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

from aekit.api import build_config
from aekit.cli import main
from aekit.data import load_data
from aekit.data.incomplete import gaussian_conditional
from aekit.errors import AekitError
from aekit.impute import MaskedLikelihood, impute, methods_for, split_missing
from aekit.models.linear import PPCAModel
from aekit.run_data import fit_run, prepare_run_data

D, Q, N, SIGMA2 = 8, 2, 2000, 0.1


def _linear_gaussian(seed=0, missing=0.3):
    rng = np.random.default_rng(seed)
    W, mu = rng.standard_normal((D, Q)), rng.standard_normal(D)
    x = rng.standard_normal((N, Q)) @ W.T + mu + np.sqrt(SIGMA2) * rng.standard_normal((N, D))
    miss = rng.random((N, D)) < missing
    miss[miss.all(1), 0] = False  # every row keeps an observed entry
    observed = x.copy()
    observed[miss] = np.nan
    model = PPCAModel(D, Q)
    model.W.copy_(torch.tensor(W))
    model.mean.copy_(torch.tensor(mu))
    model.noise_variance.fill_(SIGMA2)
    return x, observed.astype(np.float32), miss, model


@pytest.fixture(scope="module")
def problem():
    x, x_obs, miss, true = _linear_gaussian()
    exact = gaussian_conditional(true.W.double().numpy(), true.mean.double().numpy(), SIGMA2, x_obs)
    mean_fill = np.where(miss, np.nanmean(x_obs, 0), x_obs)
    return x, x_obs, miss, true, exact, mean_fill


def _mse(a, b, miss):
    return float(((a - b)[miss] ** 2).mean())


def test_masked_likelihood_sums_the_observed_dimensions_only():
    torch.manual_seed(0)
    loc, scale = torch.randn(3, 5, requires_grad=True), torch.rand(3, 5) + 0.5
    px = Independent(Normal(loc, scale), 1)
    x = torch.randn(3, 5)
    x[0, 1] = x[2, 4] = float("nan")
    x0, observed = split_missing(x)
    lp = MaskedLikelihood(px, observed).log_prob(x)
    brute = torch.stack([sum(Normal(loc[i, d], scale[i, d]).log_prob(x[i, d]) for d in range(5) if observed[i, d])
                         for i in range(3)])
    assert torch.allclose(lp, brute)
    lp.sum().backward()
    assert loc.grad[0, 1] == 0 and loc.grad[2, 4] == 0 and loc.grad[1].abs().min() > 0  # missing entries get no gradient
    assert torch.isfinite(lp).all()
    # broadcasting over K samples of z: (K, B, D) likelihood, (B, D) mask
    many = Independent(Normal(loc.detach().expand(4, 3, 5), scale), 1)
    assert torch.allclose(MaskedLikelihood(many, observed).log_prob(x), lp.detach().expand(4, 3))
    with pytest.raises(AekitError, match="factorized over dimensions"):
        MaskedLikelihood(Normal(loc, scale), observed)


def test_miwae_on_complete_data_is_the_iwae_bound(tmp_path):
    from aekit.models import build_model
    from aekit.config import DataShape, ModelConfig

    shape = DataShape(data_dim=D)
    torch.manual_seed(0)
    miwae = build_model(ModelConfig(kind="miwae", likelihood="gaussian", hidden_dims=(16,), latent_dim=2), shape)
    iwae = build_model(ModelConfig(kind="iwae", likelihood="gaussian", hidden_dims=(16,), latent_dim=2,
                                   iw_samples=20), shape)
    iwae.load_state_dict(miwae.state_dict())
    x = torch.randn(10, D)
    torch.manual_seed(1)
    a = miwae.log_weights(x, num_samples=20)
    torch.manual_seed(1)
    b = iwae.log_weights(x, num_samples=20)
    assert torch.allclose(a, b)
    # with entries missing: the encoder reads zeros there, and only the observed coordinates enter log p(x|z)
    x_missing = x.clone()
    x_missing[:, :3] = float("nan")
    x_zero = torch.where(torch.isnan(x_missing), torch.zeros(()), x_missing)
    torch.manual_seed(1)
    masked = miwae.log_weights(x_missing, num_samples=20)
    torch.manual_seed(1)
    qz = iwae.encode(x_zero)
    z = qz.rsample((20,))
    per_dim = iwae.decode(z).base_dist.log_prob(x_zero)  # (K, B, D)
    by_hand = per_dim[..., 3:].sum(-1) + iwae.prior().log_prob(z) - qz.log_prob(z)
    assert torch.allclose(masked, by_hand, atol=1e-5)


def test_ppca_exact_imputation_equals_the_closed_form_conditional(problem):
    x, x_obs, miss, true, exact, _ = problem
    got = impute(true, torch.from_numpy(x_obs), method="exact").double().numpy()
    assert np.allclose(got, exact, atol=1e-4)
    assert np.array_equal(got[~miss], x_obs[~miss])  # observed entries unchanged
    assert methods_for(true)[0] == "exact"


@pytest.mark.parametrize("method, tolerance", [("importance", 0.01), ("gibbs", 0.02), ("metropolis", 0.03)])
def test_sampling_imputations_of_ppca_approach_the_exact_conditional(problem, method, tolerance):
    # PPCA's encoder is the exact posterior: importance sampling is consistent, and Gibbs is exact Gibbs
    x, x_obs, miss, true, exact, mean_fill = problem
    rows = slice(0, 300)
    got = impute(true, torch.from_numpy(x_obs[rows]), method=method, samples=2000, iterations=400).double().numpy()
    err = _mse(got, exact[rows], miss[rows])
    assert err < tolerance * _mse(mean_fill[rows], exact[rows], miss[rows]), err


@pytest.fixture(scope="module")
def miwae_run(problem, tmp_path_factory):
    _, x_obs, *_ = problem
    folder = tmp_path_factory.mktemp("miwae")
    np.save(folder / "missing.npy", x_obs)
    cfg = build_config("miwae", str(folder / "missing.npy"), likelihood="gaussian", sigma=float(np.sqrt(SIGMA2)),
                       hidden_dims=(64,), latent_dim=Q, epochs=20, batch_size=64, figures="none", progress=False)
    return folder, fit_run(cfg, folder / "run")


def test_miwae_trains_with_missing_entries_and_imputes_near_the_exact_conditional(problem, miwae_run):
    x, x_obs, miss, true, exact, mean_fill = problem
    _, model = miwae_run
    assert methods_for(model) == ["importance", "metropolis"]
    got = impute(model, torch.from_numpy(x_obs), samples=1000).double().numpy()
    assert np.isfinite(got).all() and np.array_equal(got[~miss], x_obs[~miss])
    # near the exact conditional mean (mean imputation is ≈ 1.6 away), and as good against the truth
    assert _mse(got, exact, miss) < 0.05 * _mse(mean_fill, exact, miss)
    assert _mse(got, x, miss) < 1.15 * _mse(exact, x, miss)
    with pytest.raises(AekitError, match="trained on zero-filled rows and diverges when --method gibbs"):
        impute(model, torch.from_numpy(x_obs[:5]), method="gibbs")


def test_iterated_reconstruction_of_pca_reaches_the_completion_nearest_the_subspace(problem, tmp_path):
    x, x_obs, miss, *_ = problem
    np.save(tmp_path / "complete.npy", x.astype(np.float32))
    pca = fit_run(build_config("pca", str(tmp_path / "complete.npy"), latent_dim=Q, figures="none", progress=False),
                  tmp_path / "pca")
    rows = x_obs[:100]
    got = impute(pca, torch.from_numpy(rows), method="iterate", iterations=3000).double().numpy()
    U = pca.decoder_basis().double().numpy()  # (D, Q), orthonormal columns
    mu = pca.decoder.body.linear.bias.detach().double().numpy()
    R = np.eye(D) - U @ U.T
    for i, row in enumerate(rows):
        m = np.isnan(row)
        if m.any():  # argmin over x_m of ‖R (x̂ − μ)‖²: least squares in the missing coordinates
            o = ~m
            sol, *_ = np.linalg.lstsq(R[:, m], -R[:, o] @ (row[o] - mu[o]), rcond=None)
            assert np.allclose(got[i, m], mu[m] + sol, atol=2e-3)  # float32 model, linear convergence
    assert methods_for(pca) == ["iterate"]
    with pytest.raises(AekitError, match="has no a posterior distribution q|has no .*posterior"):
        impute(pca, torch.from_numpy(rows), method="importance")


def test_nan_is_allowed_only_for_the_kinds_that_train_on_it(problem, miwae_run, tmp_path):
    folder, _ = miwae_run
    with pytest.raises(AekitError, match="NaN marks a missing entry, which only miwae train on"):
        load_data(str(folder / "missing.npy"))
    with pytest.raises(AekitError, match="which only miwae train on"):
        prepare_run_data(build_config("vae", str(folder / "missing.npy"), likelihood="gaussian"))
    splits = prepare_run_data(build_config("miwae", str(folder / "missing.npy"), likelihood="gaussian"))
    assert torch.isnan(splits.train.x).any()
    empty = np.ones((20, D), dtype=np.float32)
    empty[7] = np.nan
    np.save(tmp_path / "empty.npy", empty)
    with pytest.raises(AekitError, match="row 7 of .* has every entry missing"):
        load_data(str(tmp_path / "empty.npy"), allow_missing=True)
    inf = np.ones((20, D), dtype=np.float32)
    inf[3, 1], inf[4, 2] = np.nan, np.inf
    np.save(tmp_path / "inf.npy", inf)
    with pytest.raises(AekitError, match="infinite values; only NaN may mark a missing entry"):
        load_data(str(tmp_path / "inf.npy"), allow_missing=True)


def test_impute_command(problem, miwae_run, tmp_path, capsys):
    x, x_obs, miss, *_ = problem
    folder, _ = miwae_run
    out = tmp_path / "filled.npy"
    np.save(tmp_path / "some.npy", x_obs[:40])
    assert main(["impute", str(folder / "run"), "--data", str(tmp_path / "some.npy"), "-o", str(out),
                 "--samples", "200"]) == 0
    assert f"imputed {int(miss[:40].sum())} missing entries" in capsys.readouterr().out
    filled = np.load(out)
    assert filled.shape == (40, D) and np.isfinite(filled).all()
    assert np.array_equal(filled[~miss[:40]], x_obs[:40][~miss[:40]])

    def one_line(*argv, match):
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err

    never = tmp_path / "never.npy"
    bad = x_obs[:10].copy()
    bad[2] = np.nan
    np.save(tmp_path / "row.npy", bad)
    one_line("impute", folder / "run", "--data", tmp_path / "row.npy", "-o", never, match="row 2 of the data has every entry missing")
    np.save(tmp_path / "wide.npy", np.zeros((3, D + 2), dtype=np.float32))
    one_line("impute", folder / "run", "--data", tmp_path / "wide.npy", "-o", never, match="rows of 10 values")
    one_line("impute", folder / "run", "--data", tmp_path / "some.npy", "-o", tmp_path / "f.txt", match="-o must name a .npy or .csv")
    one_line("impute", folder / "run", "--data", tmp_path / "some.npy", "-o", never, "--method", "exact",
             match="miwae has no closed-form conditional; it imputes with: importance, metropolis")
    one_line("impute", folder / "run", "--data", tmp_path / "some.npy", "-o", never, "--method", "magic",
             match="unknown imputation method 'magic'")
    assert not never.exists()
