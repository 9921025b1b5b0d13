"""The Helmholtz machine and the shifter data, checked by enumeration.

A sigmoid belief net with 6 visible and 3 + 2 hidden units has 32 hidden states and 64 visible ones:
its log p(x), its normalization, the exact gradient of log p(x), and the ELBO are finite sums.
"""

import math

import pytest
import torch

import aekit
from aekit import cli, runs
from aekit.data.shifter import (SHIFTER_ON, kl_from_data, load_shifter, sample_shifter, shift_scores,
                                shifter_distribution, shifter_report)
from aekit.errors import AekitError
from aekit.latents import binary_states
from aekit.models.helmholtz import HelmholtzMachine


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def tiny_sbn(seed=0, layers=(3, 2), scale=2.0, **kw):
    torch.manual_seed(seed)
    model = HelmholtzMachine(6, layers, **kw)
    with torch.no_grad():  # weights large enough that the posterior is far from q and from uniform
        for p in model.parameters():
            p.mul_(scale)
    return model


def brute_force_log_px(model, x):
    """log Σ_h p(x, h) over every joint hidden state, differentiable (independent of the recursion)."""
    h1, h2 = binary_states(3, x), binary_states(2, x)
    pairs = [(a, b) for a in h1 for b in h2]
    hs = [torch.stack([a for a, _ in pairs])[:, None, :], torch.stack([b for _, b in pairs])[:, None, :]]
    log_px_h, log_ph = model.log_joint(x, hs)  # (32, B)
    return torch.logsumexp(log_px_h + log_ph, 0)


def test_exact_log_likelihood_equals_brute_force_and_is_normalized(float64):
    model = tiny_sbn()
    images = binary_states(6)  # all 64 binary images
    exact = model.exact_log_likelihood(images)
    torch.testing.assert_close(exact, brute_force_log_px(model, images))
    torch.testing.assert_close(exact.exp().sum(), torch.tensor(1.0))


def test_importance_sampled_log_likelihood_converges_to_the_exact_value_and_the_elbo_stays_below(float64):
    model = tiny_sbn()
    x = binary_states(6)[[3, 17, 40, 63]]
    exact = model.exact_log_likelihood(x)
    torch.manual_seed(1)
    errors = [float((model.log_likelihood(x, num_samples=k).double() - exact).abs().mean()) for k in (1, 100, 20_000)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02 and errors[0] > 10 * errors[2]
    # the exact ELBO of the one-layer machine, and the Monte Carlo free energy of the two-layer one
    neg_elbo = model.evaluation_terms(x.repeat(4000, 1))["neg_elbo"].reshape(4000, -1).mean(0)
    assert (-neg_elbo < exact - 0.05).all()  # strictly below: q is not the posterior here
    one = tiny_sbn(layers=(4,))
    exact_one = one.exact_log_likelihood(x)
    assert (-one.evaluation_terms(x.repeat(4000, 1))["neg_elbo"].reshape(4000, -1).mean(0) < exact_one - 0.05).all()
    torch.testing.assert_close(one.log_likelihood(x, num_samples=20_000).double(), exact_one, atol=0.05, rtol=0)


def test_exact_log_likelihood_refuses_more_than_twenty_hidden_units():
    with pytest.raises(AekitError, match="at most 20 binary units; this machine has 21") as e:
        HelmholtzMachine(6, (16, 5)).exact_log_likelihood(torch.zeros(1, 6))
    assert "\n" not in str(e.value)


def test_wake_step_and_sleep_step_are_sgd_on_the_wake_sleep_surrogate():
    x = (torch.rand(8, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    woken, slept, by_loss = tiny_sbn(seed=2), tiny_sbn(seed=2), tiny_sbn(seed=2)
    torch.manual_seed(5)  # the same random stream as the loss: the upward pass, then the dream (from the old weights)
    woken.wake_step(x, lr=0.1)
    slept.sleep_step(len(x), lr=0.1)
    by_rule = tiny_sbn(seed=2)
    with torch.no_grad():
        for name, p in by_rule.named_parameters():
            p.copy_(dict((slept if name.startswith("recognition") else woken).named_parameters())[name])
    torch.manual_seed(5)
    out = by_loss.loss(x)
    out.total.mean().backward()
    with torch.no_grad():
        for p in by_loss.parameters():
            p -= 0.1 * p.grad
    for (name, a), (_, b) in zip(by_rule.named_parameters(), by_loss.named_parameters()):
        torch.testing.assert_close(a, b, msg=name)
    # the surrogate's value is the one-sample free energy log q(h|x) − log p(x, h)
    torch.testing.assert_close(out.total, out.terms["free_energy"])


def test_reweighted_wake_phase_gradient_approaches_the_exact_log_likelihood_gradient(float64):
    """Σ_k w̃_k ∇_θ log p(x, h_k) is a consistent estimate of ∇_θ log p(x): its error shrinks as K grows."""
    model = tiny_sbn(algorithm="reweighted-wake-sleep")
    x = binary_states(6)[[5, 22, 58]]
    generative = [model.top_logits, *model.generative.parameters()]
    exact = torch.cat([g.reshape(-1) for g in torch.autograd.grad(-brute_force_log_px(model, x).mean(), generative)])
    errors = {}
    for k in (10, 100_000):
        model.iw_samples = k
        torch.manual_seed(0)
        estimate = torch.cat([g.reshape(-1) for g in torch.autograd.grad(model.loss(x).total.mean(), generative)])
        errors[k] = float((estimate - exact).norm() / exact.norm())
    assert errors[100_000] < 0.02 and errors[10] > 5 * errors[100_000]
    # the value is −L_K, within a few hundredths of −log p(x) at this K
    torch.manual_seed(0)
    torch.testing.assert_close(model.loss(x).total, -brute_force_log_px(model, x).detach(), atol=0.02, rtol=0)


@pytest.mark.parametrize("estimator", ["score-function", "gumbel-softmax", "straight-through", "gumbel-st"])
def test_the_elbo_algorithm_reports_the_free_energy_of_a_discrete_sample(float64, estimator):
    from aekit.config import ModelConfig
    from aekit.estimators import build_estimator

    cfg = ModelConfig(kind="helmholtz", latent="bernoulli", algorithm="elbo", estimator=estimator,
                      **({"baseline": "learned"} if estimator == "score-function" else {}))
    model = tiny_sbn(algorithm="elbo", estimator=build_estimator(cfg, 6).double())
    x = binary_states(6)[[1, 2, 3]]
    torch.manual_seed(0)
    many = x.repeat(3000, 1)  # 3000 independent draws for each of the 3 images, in one batch
    values = model.loss(many).total.detach().reshape(3000, 3).mean(0)
    exact = model.evaluation_terms(many)["neg_elbo"].detach().reshape(3000, 3).mean(0)
    torch.testing.assert_close(values, exact, atol=0.15, rtol=0)  # both unbiased estimates of F(x)
    model.loss(x).total.mean().backward()  # and the recognition net gets a gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.recognition.parameters())


def test_shifter_distribution_has_508_images_and_the_entropy_of_its_formula():
    d = shifter_distribution()
    assert len(d.images) == 508 and len(d.images.unique(dim=0)) == 508
    torch.testing.assert_close(d.probs.sum(), torch.tensor(1.0, dtype=torch.float64))
    h = -(SHIFTER_ON * math.log(SHIFTER_ON) + (1 - SHIFTER_ON) * math.log(1 - SHIFTER_ON))
    p_period_two = (1 - SHIFTER_ON) ** 8 + SHIFTER_ON ** 8 + 2 * (SHIFTER_ON * (1 - SHIFTER_ON)) ** 4
    assert d.entropy == pytest.approx(8 * h + (1 - p_period_two) * math.log(2), abs=1e-12)
    assert d.entropy == pytest.approx(4.5792, abs=1e-4)
    assert d.direction_information == pytest.approx((1 - p_period_two) * math.log(2), abs=1e-9)
    assert d.accuracy_ceiling == pytest.approx(1 - p_period_two / 2, abs=1e-12)
    assert kl_from_data(d.probs.log()) == pytest.approx(0.0, abs=1e-12)


def test_shifter_samples_follow_the_distribution_and_their_labels():
    source = load_shifter()
    x, y = source.x, source.y
    assert x.shape == (12500, 32) and source.image_shape == (1, 4, 8) and set(y.tolist()) == {0, 1}
    rows = x.reshape(-1, 4, 8)
    assert torch.equal(rows[:, 0], rows[:, 1]) and torch.equal(rows[:, 2], rows[:, 3])
    right = rows[:, 0].roll(1, -1)
    assert torch.equal(rows[y == 1, 2], right[y == 1])
    d = shifter_distribution()
    index = {tuple(img.tolist()): i for i, img in enumerate(d.images.float())}
    counts = torch.bincount(torch.tensor([index[tuple(img.tolist())] for img in x]), minlength=508).double()
    se = (d.probs * (1 - d.probs) / len(x)).sqrt()
    assert ((counts / len(x) - d.probs).abs() / se.clamp_min(1e-4)).max() < 5


def test_shift_scores_of_an_oracle_unit_reach_the_ceilings_and_a_blind_unit_scores_nothing():
    d = shifter_distribution()
    # a unit on with probability P(right | image): on the period-2 images it is a coin flip, so
    # P(right | on) = 1 − P2/2 and I(h; direction) = log 2 − h(1 − P2/2), below I(image; direction)
    oracle = shift_scores(d.p_right[:, None])
    p2 = 2 * (1 - d.accuracy_ceiling)
    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    assert oracle["shift_information"] == pytest.approx(math.log(2) - h(1 - p2 / 2), abs=1e-9)
    assert oracle["shift_information"] < d.direction_information
    assert oracle["shift_accuracy"] == pytest.approx(d.accuracy_ceiling, abs=1e-9)
    blind = shift_scores(torch.full((508, 1), 0.3, dtype=torch.float64))
    assert blind["shift_information"] == pytest.approx(0.0, abs=1e-9) and blind["shift_accuracy"] == pytest.approx(0.5)


def test_wake_sleep_on_shifter_lowers_the_kl_from_the_data_far_below_the_untrained_model(tmp_path):
    torch.manual_seed(0)
    untrained = shifter_report(HelmholtzMachine(32, (16, 4)))
    assert untrained["log_px_method"] == "exact" and untrained["kl"] > 12  # about log 2^32 − 4.58 nats
    model = aekit.train("helmholtz", "shifter", out=tmp_path / "ws", steps=1000, hidden_dims=(16, 4), lr=0.03,
                        batch_size=100, figures="none", progress=False)
    trained = shifter_report(model)
    assert trained["kl"] < 3.0 and trained["kl"] < 0.2 * untrained["kl"]
    history = runs.read_metrics(tmp_path / "ws")
    assert history[-1]["val/neg_elbo"] < history[0]["val/neg_elbo"]


def test_helmholtz_from_the_cli_trains_evaluates_and_refuses_settings_it_does_not_use(tmp_path, capsys):
    out = tmp_path / "rws"
    assert cli.main(["train", "helmholtz", "--data", "shifter", "--hidden-dims", "8,2", "--algorithm",
                     "reweighted-wake-sleep", "--iw-samples", "3", "--steps", "30", "--no-progress", "--figures", "end",
                     "--out", str(out)]) == 0
    assert (out / "samples.png").exists() and (out / "filters.png").exists()
    from aekit.plots import save_generative_filters

    model = aekit.load(out)
    assert model.generative_filters().shape == (8, 32)
    save_generative_filters(model, (1, 4, 8), tmp_path / "generative.png")
    assert (tmp_path / "generative.png").stat().st_size > 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--iw-samples", "50", "--json"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["log_px"] > -result["neg_elbo"] - 0.5 and result["log_px_method"].startswith("importance")
    for flags, fragment in ((["--latent-dim", "4"], "--latent-dim"), (["--iw-samples", "4"], "--algorithm reweighted"),
                            (["--algorithm", "elbo", "--estimator", "reparameterization"], "no reparameterization"),
                            (["--baseline", "learned"], "--baseline does not apply")):
        bad = tmp_path / "bad"
        code = cli.main(["train", "helmholtz", "--data", "shifter", "--out", str(bad), "--no-progress", *flags])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and fragment in err, err
        assert not bad.exists()


def test_helmholtz_refuses_data_outside_the_unit_interval(tmp_path, capsys):
    import numpy as np

    data = tmp_path / "wide.npy"
    np.save(data, np.linspace(-1, 2, 40 * 6).reshape(40, 6).astype(np.float32))
    code = cli.main(["train", "helmholtz", "--data", str(data), "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "[0, 1]" in err
    assert not (tmp_path / "r").exists()


def test_sampling_shapes_and_dream_are_binary():
    model = HelmholtzMachine(32, (16, 4))
    x, hs = model.dream(7)
    assert x.shape == (7, 32) and [h.shape for h in hs] == [(7, 16), (7, 4)]
    assert set(torch.cat([x.flatten(), *[h.flatten() for h in hs]]).unique().tolist()) <= {0.0, 1.0}
    assert model.sample(5).shape == (5, 32)
    x_data, _ = sample_shifter(10)
    assert model.code_probabilities(x_data).shape == (10, 4) and model.reconstruct(x_data).shape == (10, 32)


def test_layer_information_of_a_layer_that_copies_the_direction_reaches_the_ceiling():
    from aekit.data.shifter import layer_information

    d = shifter_distribution()
    # a 2-state layer equal to the direction where the image tells it (state 1 = right), a coin flip elsewhere
    copies = torch.stack([1 - d.p_right, d.p_right], 1)
    assert layer_information(copies) == pytest.approx(shift_scores(d.p_right[:, None])["shift_information"])
    # a 4-state layer that also marks the period-2 images apart (states 2, 3) knows all there is to know
    ambiguous = (d.p_right == 0.5).double()
    exact = torch.stack([(1 - d.p_right) * (1 - ambiguous), d.p_right * (1 - ambiguous), ambiguous / 2, ambiguous / 2], 1)
    assert layer_information(exact) == pytest.approx(d.direction_information, abs=1e-9)


def test_code_distribution_sums_to_one_and_matches_the_unit_probabilities():
    model = HelmholtzMachine(32, (6, 3))
    x, _ = sample_shifter(5)
    for layer in (0, 1):
        dist = model.code_distribution(x, layer, num_samples=4000)
        states = binary_states(dist.shape[1].bit_length() - 1)
        torch.testing.assert_close(dist.sum(1), torch.ones(5))
        torch.testing.assert_close(dist @ states, model.code_probabilities(x, layer, num_samples=4000), atol=0.03, rtol=0)
