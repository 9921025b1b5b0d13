"""Discrete latents and their gradient estimators, checked against exact enumeration.

A VAE with K = 3 binary units (8 codes) has an ELBO that is a finite sum, so its exact gradient is
autograd of that sum; the estimators' averages are compared with it coordinate by coordinate (in
standard errors), and the baselines' variances with each other on the same snapshot.
"""

import math

import pytest
import torch
from scipy.stats import chisquare
from torch.distributions import kl_divergence

import aekit
from aekit import cli, runs
from aekit.config import DataShape, ModelConfig
from aekit.errors import AekitError
from aekit.estimators import (GumbelSoftmax, ScoreFunction, StraightThrough, TemperatureSchedule, gradient_variance,
                              leave_one_out_bound, using_estimator)
from aekit.latents import FactorizedBernoulli, GroupedOneHot
from aekit.models.vae import build_vae
from aekit.objectives import kl_per_dimension
from aekit.priors import build_prior
from conftest import TINY


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def tiny_vae(seed=0, latent="bernoulli", latent_dim=3, groups=1, kind="vae", **settings):
    torch.manual_seed(seed)
    cfg = ModelConfig(kind=kind, latent=latent, latent_dim=latent_dim, groups=groups, hidden_dims=(8,), **settings)
    model = build_vae(cfg, DataShape(data_dim=6), objective="iwae" if kind == "iwae" else "elbo")
    return model.double()


def tiny_batch(seed=1, n=4):
    return (torch.rand(n, 6, generator=torch.Generator().manual_seed(seed)) < 0.5).double()


def exact_neg_elbo(model, x):
    """−ELBO averaged over the batch, by enumerating every code: −Σ_z q(z|x) log p(x|z) + KL(q ‖ p)."""
    qz, pz = model.encode(x), model.prior()
    states = pz.states()  # (S, J)
    log_q = qz.log_prob(states[:, None, :])  # (S, B)
    log_px = model.decode(states[:, None, :]).log_prob(x)  # (S, B)
    return (-(log_q.exp() * log_px).sum(0) + kl_divergence(qz, pz.expand(qz.batch_shape))).mean()


def exact_gradient(model, x):
    params = model.gradient_parameters()
    grads = torch.autograd.grad(exact_neg_elbo(model, x), params)
    return torch.cat([g.reshape(-1) for g in grads])


def z_scores(result, exact):
    se = (result["per_coordinate"] / result["draws"]).sqrt()
    keep = se > 1e-9  # coordinates with no noise at all (none here) would divide by zero
    return (result["mean"] - exact)[keep] / se[keep]


def test_score_function_is_unbiased_and_every_baseline_keeps_the_mean_and_lowers_the_variance(float64):
    model, x = tiny_vae(), tiny_batch()
    exact = exact_gradient(model, x)
    draws = 1000
    # The learning signal's mean, for the data-independent baselines, and per example, for C(x).
    with torch.no_grad():
        qz, pz = model.encode(x), model.prior()
        states = pz.states()
        expected = (model.encode(x).log_prob(states[:, None, :]).exp()
                    * model.decode(states[:, None, :]).log_prob(x)).sum(0)  # E_q[log p(x|z)] per example (B,)
    results = {}
    for baseline in ("none", "constant", "moving-average", "learned"):
        estimator = ScoreFunction(baseline, input_features=6, hidden=16).double()
        estimator.moments.mean.fill_(float(expected.mean()))
        estimator.moments.count.fill_(1)
        if baseline == "constant":
            estimator.constant.data.fill_(float(expected.mean()))
        if baseline == "learned":  # fit C(x) to E_q[f | x] − c by regression, as training would
            opt = torch.optim.Adam(estimator.net.parameters(), lr=0.02)
            for _ in range(600):
                loss = ((estimator.net(x) - (expected - expected.mean())) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        with using_estimator(model, estimator):
            results[baseline] = gradient_variance(model, x, draws=draws, seed=3)
        z = z_scores(results[baseline], exact)
        assert z.abs().max() < 4.5, (baseline, float(z.abs().max()))
    assert results["none"]["variance"] > results["moving-average"]["variance"] > results["learned"]["variance"]
    assert results["constant"]["variance"] < 0.5 * results["none"]["variance"]
    assert results["learned"]["variance"] < 0.7 * results["moving-average"]["variance"]


def test_the_unbiasedness_check_can_fail(float64):
    """The check above rejects a biased estimator: straight-through on the same model."""
    model, x = tiny_vae(), tiny_batch()
    exact = exact_gradient(model, x)
    with using_estimator(model, StraightThrough()):
        result = gradient_variance(model, x, draws=1000, seed=3)
    assert z_scores(result, exact).abs().max() > 6


def test_vimco_is_unbiased_for_the_iwae_bound_and_lowers_the_variance(float64):
    """E[L_k] for k = 2 samples of a 2-unit code is a sum over 4² pairs: its exact gradient by enumeration."""
    model, x = tiny_vae(kind="iwae", latent_dim=2, estimator="score-function", iw_samples=2), tiny_batch()
    model.iw_samples = 2
    qz, pz = model.encode(x), model.prior()
    states = pz.states()  # (4, 2)
    log_w = (model.decode(states[:, None, :]).log_prob(x) + pz.log_prob(states)[:, None]
             - qz.log_prob(states[:, None, :]))  # (4, B)
    log_q = qz.log_prob(states[:, None, :])
    pair_bound = torch.logaddexp(log_w[:, None], log_w[None, :]) - math.log(2)  # (4, 4, B)
    pair_prob = (log_q[:, None] + log_q[None, :]).exp()
    exact_loss = -(pair_prob * pair_bound).sum((0, 1)).mean()
    exact = torch.cat([g.reshape(-1) for g in torch.autograd.grad(exact_loss, model.gradient_parameters())])
    variances = {}
    for baseline in ("none", "vimco"):
        with using_estimator(model, ScoreFunction(baseline)):
            result = gradient_variance(model, x, draws=1000, seed=5)
        assert z_scores(result, exact).abs().max() < 4.5, baseline
        variances[baseline] = result["variance"]
    assert variances["vimco"] < 0.5 * variances["none"]


def test_leave_one_out_bound_replaces_each_log_weight_by_the_mean_of_the_others(float64):
    log_w = torch.randn(4, 3)
    loo = leave_one_out_bound(log_w)
    for i in range(4):
        replaced = log_w.clone()
        replaced[i] = torch.cat([log_w[:i], log_w[i + 1:]]).mean(0)
        torch.testing.assert_close(loo[i], torch.logsumexp(replaced, 0) - math.log(4))


@pytest.mark.parametrize("estimator", ["score-function", "gumbel-softmax", "straight-through", "gumbel-st"])
def test_the_surrogate_value_is_the_objective_on_a_discrete_sample(float64, estimator):
    settings = {"baseline": "learned"} if estimator == "score-function" else {}
    model, x = tiny_vae(estimator=estimator, **settings), tiny_batch()
    model.train()
    torch.manual_seed(7)
    out = model.loss(x, step=0)
    torch.testing.assert_close(out.total, out.terms["reconstruction"] + out.terms["kl"], atol=1e-12, rtol=0)
    # the reconstruction is −log p(x | z) at a binary code z drawn from q, redrawn with the same seed
    torch.manual_seed(7)
    qz = model.encode(x)
    if estimator in ("gumbel-softmax", "gumbel-st"):
        code = qz.discretize(qz.relaxed(1.0).rsample((1,)))
    else:
        code = qz.sample((1,))
    assert set(code.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(out.terms["reconstruction"], -model.decode(code).log_prob(x).mean(0))
    if estimator == "gumbel-softmax":
        assert not torch.allclose(out.terms["relaxed_reconstruction"], out.terms["reconstruction"])
        assert float(out.terms["temperature"][0]) == 1.0


def test_temperature_schedule_is_annealed_every_n_steps_to_its_floor():
    s = TemperatureSchedule(initial=1.0, minimum=0.5, decay=1e-3, interval=100)
    assert s(0) == s(99) == 1.0
    assert s(100) == pytest.approx(math.exp(-0.1)) and s(150) == s(100)
    assert s(10_000) == 0.5


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_gumbel_softmax_argmax_follows_the_categorical_probabilities(tau):
    torch.manual_seed(0)
    probs = torch.tensor([0.05, 0.15, 0.3, 0.5])
    q = GroupedOneHot(probs.log()[None, None, :])  # one group of 4 classes
    soft = q.relaxed(tau).rsample((40_000,))  # (n, 1, 4)
    counts = q.discretize(soft).reshape(-1, 4).sum(0)
    assert chisquare(counts.numpy(), 40_000 * probs.numpy()).pvalue > 1e-3
    # the test has power: the same counts are rejected against the uniform distribution
    assert chisquare(counts.numpy(), 40_000 * torch.full((4,), 0.25).numpy()).pvalue < 1e-6
    # binary units: the thresholded relaxed sample is Bernoulli(σ(logit))
    b = FactorizedBernoulli(torch.tensor([-1.5, 0.0, 2.0]))
    freq = b.discretize(b.relaxed(tau).rsample((40_000,))).mean(0)
    assert (freq - torch.sigmoid(b.logits)).abs().max() < 4 * math.sqrt(0.25 / 40_000)


def test_relaxed_samples_approach_one_hot_as_the_temperature_falls():
    torch.manual_seed(0)
    q = GroupedOneHot(torch.tensor([[[0.3, -0.2, 0.1, 0.0, 0.5]]]))
    distance = []
    for tau in (2.0, 0.5, 0.1, 0.01):
        soft = q.relaxed(tau).rsample((5000,))
        distance.append(float((soft - q.discretize(soft)).abs().sum(-1).mean()))
    assert distance == sorted(distance, reverse=True)
    assert distance[-1] < 0.02 and distance[0] > 0.5


@pytest.mark.parametrize("latent,latent_dim,groups", [("bernoulli", 5, 1), ("categorical", 4, 3)])
@pytest.mark.parametrize("prior", ["uniform", "learned"])
def test_discrete_kl_is_the_closed_form_and_splits_per_dimension(float64, latent, latent_dim, groups, prior):
    torch.manual_seed(0)
    shape = (2, latent_dim) if latent == "bernoulli" else (2, groups, latent_dim)
    q = FactorizedBernoulli(torch.randn(shape)) if latent == "bernoulli" else GroupedOneHot(torch.randn(shape))
    p_module = build_prior(prior, latent, latent_dim, groups).double()
    if prior == "learned":
        p_module.logits.data.normal_()
    p = p_module()
    states = p.states()
    assert len(states) == (2 ** latent_dim if latent == "bernoulli" else latent_dim ** groups)
    torch.testing.assert_close(p.log_prob(states).exp().sum(), torch.tensor(1.0))  # a normalized distribution
    log_q = q.log_prob(states[:, None, :])  # (S, 2)
    exact = (log_q.exp() * (log_q - p.log_prob(states)[:, None])).sum(0)  # Σ_z q log q/p
    kl = kl_divergence(q, p.expand(q.batch_shape))
    torch.testing.assert_close(kl, exact)
    per_dim = kl_per_dimension(q, p)
    assert per_dim.shape == (2, latent_dim if latent == "bernoulli" else groups)
    torch.testing.assert_close(per_dim.sum(-1), exact)


def test_exact_log_likelihood_of_a_discrete_vae_and_the_bounds_below_it(float64):
    for latent, dim, groups in (("bernoulli", 4, 1), ("categorical", 3, 2)):
        model, x = tiny_vae(latent=latent, latent_dim=dim, groups=groups), tiny_batch()
        exact = model.exact_log_likelihood(x)
        torch.manual_seed(0)
        estimate = model.log_likelihood(x, num_samples=20_000).double()
        torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0)
        assert (-exact_neg_elbo_per_example(model, x) < exact).all()
    # p(x) sums to 1 over all 2^6 binary images
    model = tiny_vae(latent_dim=4)
    images = FactorizedBernoulli(torch.zeros(6)).states()
    torch.testing.assert_close(model.exact_log_likelihood(images).exp().sum(), torch.tensor(1.0), atol=1e-6, rtol=0)


def exact_neg_elbo_per_example(model, x):
    qz, pz = model.encode(x), model.prior()
    states = pz.states()
    log_q = qz.log_prob(states[:, None, :])
    log_px = model.decode(states[:, None, :]).log_prob(x)
    return -(log_q.exp() * log_px).sum(0) + kl_divergence(qz, pz.expand(qz.batch_shape))


def test_exact_log_likelihood_refuses_more_than_twenty_units_in_one_line():
    model = build_vae(ModelConfig(latent="bernoulli", latent_dim=21, hidden_dims=(8,)), DataShape(data_dim=6))
    with pytest.raises(AekitError, match="at most 2\\^20") as e:
        model.exact_log_likelihood(torch.zeros(2, 6))
    assert "\n" not in str(e.value)
    gaussian = build_vae(ModelConfig(latent_dim=2, hidden_dims=(8,)), DataShape(data_dim=6))
    with pytest.raises(AekitError, match="discrete latent"):
        gaussian.exact_log_likelihood(torch.zeros(2, 6))


def test_reparameterization_has_lower_gradient_variance_than_the_score_function(float64):
    """On one Gaussian-latent snapshot the pathwise gradient is far less noisy than REINFORCE."""
    model, x = tiny_vae(latent="gaussian", latent_dim=2), tiny_batch()
    pathwise = gradient_variance(model, x, draws=300, seed=0)
    with using_estimator(model, ScoreFunction("none")):
        score = gradient_variance(model, x, draws=300, seed=0)
    assert score["variance"] > 10 * pathwise["variance"]


def test_resume_of_a_discrete_vae_with_running_baseline_state_equals_an_uninterrupted_run(tmp_path):
    settings = dict(latent="bernoulli", estimator="score-function", baseline="moving-average",
                    variance_normalization=True, track_grad_variance=True, binarize="dynamic", **TINY)
    aekit.train("vae", "digits", out=tmp_path / "whole", epochs=4, **settings)
    aekit.train("vae", "digits", out=tmp_path / "split", epochs=2, **settings)
    aekit.resume(tmp_path / "split", epochs=4)
    from safetensors.torch import load_file

    whole, split = load_file(str(tmp_path / "whole" / runs.LAST)), load_file(str(tmp_path / "split" / runs.LAST))
    assert {"estimator.moments.mean", "estimator.moments.var", "grad_moments.second"} <= whole.keys()
    assert whole.keys() == split.keys()
    for k in whole:
        torch.testing.assert_close(whole[k], split[k], atol=0, rtol=0, msg=k)
    assert float(whole["estimator.moments.count"]) == runs.read_metrics(tmp_path / "whole")[-1]["step"]
    h1, h2 = runs.read_metrics(tmp_path / "whole"), runs.read_metrics(tmp_path / "split")
    assert [h["val/loss"] for h in h1] == [h["val/loss"] for h in h2]
    assert all(math.isfinite(h["train/grad_log_variance"]) for h in h1)


def test_gumbel_softmax_vae_trains_and_reports_its_temperature(tmp_path):
    settings = {**TINY, "latent_dim": 4}
    model = aekit.train("vae", "digits", out=tmp_path / "g", epochs=3, latent="categorical", groups=3,
                        estimator="gumbel-softmax", temperature=1.0, temperature_decay=0.01, temperature_interval=10,
                        binarize="dynamic", **settings)
    history = runs.read_metrics(tmp_path / "g")
    assert history[0]["train/temperature"] == pytest.approx(sum(max(0.5, math.exp(-0.01 * 10 * (s // 10)))
                                                                for s in range(21)) / 21)
    assert history[-1]["train/temperature"] < history[0]["train/temperature"]
    assert history[-1]["val/neg_elbo"] < history[0]["val/neg_elbo"]
    code = model.sample(5)
    assert code.shape == (5, 64)


BAD_INPUT = [
    (["--latent", "bernoulli", "--estimator", "gumbel-softmax", "--temperature", "0"], "--temperature"),
    (["--latent", "bernoulli", "--estimator", "gumbel-softmax", "--temperature-min", "2"], "--temperature-min"),
    (["--estimator", "gumbel-softmax"], "needs a discrete latent"),
    (["--estimator", "straight-through"], "needs a discrete latent"),
    (["--latent", "bernoulli", "--estimator", "gumbel-st", "--baseline", "learned"], "needs --estimator score-function"),
    (["--baseline", "moving-average"], "needs --estimator score-function"),
    (["--latent", "bernoulli", "--estimator", "reparameterization"], "no reparameterization"),
    (["--groups", "3"], "--groups"),
    (["--latent", "bernoulli", "--prior", "learned", "--latent-dim", "4", "--temperature", "0.3"], "--temperature"),
    (["--prior", "learned"], "discrete latents"),
]


@pytest.mark.parametrize("flags,fragment", BAD_INPUT)
def test_bad_settings_are_one_line_errors_with_exit_2_and_nothing_written(tmp_path, capsys, flags, fragment):
    out = tmp_path / "run"
    code = cli.main(["train", "vae", "--data", "digits", "--out", str(out), "--epochs", "1", "--no-progress", *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("aekit: error: ") and fragment in err, err
    assert not out.exists()


def test_categorical_code_grid_changes_one_group_at_a_time(tmp_path):
    from aekit.plots import categorical_codes, save_categorical_codes

    model = tiny_vae(latent="categorical", latent_dim=4, groups=3).float()
    codes = categorical_codes(model.prior()).reshape(3, 4, 3, 4)  # (row group n, column class k, N, K)
    assert torch.equal(codes.sum(-1), torch.ones(3, 4, 3))  # every group one-hot
    for n in range(3):
        for k in range(4):
            assert codes[n, k, n].argmax() == k
            others = [g for g in range(3) if g != n]
            assert torch.equal(codes[n, k, others], codes[n, 0, others])  # the other groups held fixed
    save_categorical_codes(model, (1, 2, 3), tmp_path / "codes.png")
    assert (tmp_path / "codes.png").stat().st_size > 0


def test_running_statistics_move_only_in_after_step_from_the_batch_that_was_trained_on():
    est = ScoreFunction("constant", variance_normalization=True)
    est.train()
    signal, log_q = torch.tensor([[-10.0, -20.0, -30.0]]), torch.zeros(1, 3)
    est.surrogate(torch.zeros(3), signal=signal, log_q=log_q)
    assert float(est.moments.count) == 0 and float(est.constant.detach()) == 0.0  # nothing moves in the loss
    est.after_step(1)
    assert float(est.moments.mean) == -20.0 and float(est.moments.var) == 100.0 and float(est.constant.detach()) == -20.0
    est.surrogate(torch.zeros(3), signal=signal + 10, log_q=log_q)
    est.after_step(2)
    assert float(est.moments.mean) == pytest.approx(0.8 * -20 + 0.2 * -10)
    assert float(est.constant.detach()) == -20.0  # after the first step only the optimizer moves the constant
    est.eval()
    est.surrogate(torch.zeros(3), signal=signal, log_q=log_q)
    est.after_step(3)
    assert float(est.moments.count) == 2  # evaluation never feeds the running state


def test_gradient_moments_are_bias_corrected_running_averages():
    from aekit.estimators import GradientMoments

    p = torch.nn.Parameter(torch.zeros(3))
    moments = GradientMoments(3)
    grads = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    for t, g in enumerate(grads, 1):
        p.grad = g.clone()
        moments.update([p])
    a = GradientMoments.decay
    w = torch.tensor([(1 - a) * a ** (50 - t) for t in range(1, 51)]) / (1 - a ** 50)
    first, second = (w[:, None] * grads).sum(0), (w[:, None] * grads ** 2).sum(0)
    assert moments.log_variance() == pytest.approx(math.log(float((second - first ** 2).mean())), rel=1e-5)
