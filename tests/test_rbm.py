"""Restricted Boltzmann machines: the mathematics on tiny models, training, and the scikit-learn face.

Tiny models in float64 make every quantity exact by enumeration (binary layers) or by numerical
integration on a grid (real-valued layers), so each identity below is checked with allclose.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import BernoulliRBM
from sklearn.pipeline import Pipeline

from aekit.errors import AekitError
from aekit.models.rbm import RBM, RBMConfig, RBMEstimator, ais_betas

UNIT_TYPES = [("bernoulli", "bernoulli"), ("gaussian", "bernoulli"), ("bernoulli", "linear"), ("gaussian", "linear")]


def make_rbm(num_visible, num_hidden, visible="bernoulli", hidden="bernoulli", weight_scale=0.8, seed=0):
    """A float64 RBM with nontrivial weights and biases."""
    torch.manual_seed(seed)
    rbm = RBM(num_visible, num_hidden, visible, hidden, dtype=torch.float64)
    with torch.no_grad():
        rbm.weight.normal_(0.0, weight_scale)
        rbm.visible_bias.normal_(0.0, 0.5)
        rbm.hidden_bias.normal_(0.0, 0.5)
    return rbm


def all_states(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)  # (2^n, n)


def visible_data(rbm, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    if rbm.rbm_config.visible == "bernoulli":
        return torch.bernoulli(torch.full((n, rbm.num_visible), 0.5, dtype=torch.float64), generator=g)
    return torch.randn(n, rbm.num_visible, dtype=torch.float64, generator=g)


def grid(n, half_width, points):
    """A regular grid over [-half_width, half_width]^n: (points^n, n) nodes and the cell volume."""
    axis = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    nodes = torch.cartesian_prod(*[axis] * n).reshape(-1, n)
    return nodes, (axis[1] - axis[0]).item() ** n


def bars_and_stripes(n=3):
    rows = torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))
    bars = rows[:, :, None].expand(-1, n, n).reshape(-1, n * n)
    stripes = rows[:, None, :].expand(-1, n, n).reshape(-1, n * n)
    return torch.unique(torch.cat([bars, stripes]), dim=0)  # (2^(n+1) - 2, n²)


# ----- conditionals and free energy -------------------------------------------------------------


@pytest.mark.parametrize("visible,hidden", UNIT_TYPES)
def test_conditionals_equal_the_formulas(visible, hidden):
    rbm = make_rbm(5, 4, visible, hidden, weight_scale=0.3)
    v = visible_data(rbm, 7)
    h = torch.randn(7, 4, dtype=torch.float64)
    qh, pv = rbm.hidden_given_visible(v), rbm.visible_given_hidden(h)
    x_hidden = v @ rbm.weight.T + rbm.hidden_bias
    x_visible = h @ rbm.weight + rbm.visible_bias
    for dist, x, kind in ((qh, x_hidden, hidden), (pv, x_visible, visible)):
        if kind == "bernoulli":
            torch.testing.assert_close(dist.mean, torch.sigmoid(x))
        else:
            torch.testing.assert_close(dist.mean, x)
            torch.testing.assert_close(dist.stddev, torch.ones_like(x))
        assert dist.event_shape == x.shape[-1:]


def test_bernoulli_conditionals_are_the_normalized_joint():
    rbm = make_rbm(4, 3)
    v, h = all_states(4), all_states(3)
    neg_energy = -rbm.energy(v.repeat_interleave(8, 0), h.repeat(16, 1)).view(16, 8)  # (v state, h state)
    p_h_given_v = torch.softmax(neg_energy, dim=1)
    p_v_given_h = torch.softmax(neg_energy, dim=0)
    torch.testing.assert_close(rbm.hidden_given_visible(v).log_prob(h[:, None]).exp().T, p_h_given_v)
    torch.testing.assert_close(rbm.visible_given_hidden(h).log_prob(v[:, None]).exp(), p_v_given_h)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_free_energy_sums_out_bernoulli_hidden_units(visible):
    rbm = make_rbm(5, 4, visible)
    v = visible_data(rbm, 6)
    h = all_states(4)
    energies = rbm.energy(v.repeat_interleave(16, 0), h.repeat(6, 1)).view(6, 16)
    torch.testing.assert_close(rbm.free_energy(v), -torch.logsumexp(-energies, 1))


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_free_energy_integrates_out_linear_hidden_units(visible):
    rbm = make_rbm(3, 2, visible, "linear", weight_scale=0.5)
    v = visible_data(rbm, 4)
    h, cell = grid(2, 10.0, 401)
    for row in v:
        energies = rbm.energy(row.expand(len(h), -1), h)
        numeric = -torch.logsumexp(-energies, 0) - math.log(cell)
        torch.testing.assert_close(rbm.free_energy(row[None])[0], numeric, rtol=0, atol=1e-6)


# ----- partition function and likelihood --------------------------------------------------------


def test_log_partition_by_visible_and_hidden_enumeration_agree():
    rbm = make_rbm(6, 5)
    brute = torch.logsumexp(
        -rbm.energy(all_states(6).repeat_interleave(32, 0), all_states(5).repeat(64, 1)), 0
    )
    torch.testing.assert_close(rbm.log_partition("visible"), brute)
    torch.testing.assert_close(rbm.log_partition("hidden"), brute)
    torch.testing.assert_close(rbm.log_partition(), brute)


def test_log_prob_sums_to_one_over_all_visible_states():
    rbm = make_rbm(6, 4)
    total = rbm.log_prob(all_states(6)).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("visible,hidden", UNIT_TYPES[1:])
def test_log_partition_with_real_layers_by_numerical_integration(visible, hidden):
    # Real layers of 1-2 units, so that ∫ exp(-E) is a 2-D grid sum (binary layers enumerated).
    num_visible = 1 if visible == "gaussian" else 3
    num_hidden = 1 if hidden == "linear" else 3
    rbm = make_rbm(num_visible, num_hidden, visible, hidden, weight_scale=0.4)
    real = [n for n, kind in ((num_visible, visible), (num_hidden, hidden)) if kind != "bernoulli"]
    nodes, cell = grid(sum(real), 12.0, 1201 if len(real) == 1 else 601)
    v = nodes[:, :num_visible] if visible == "gaussian" else None
    h = nodes[:, -num_hidden:] if hidden == "linear" else None
    if v is None:  # enumerate binary v against every h node
        v_states = all_states(num_visible)
        v, h = v_states.repeat_interleave(len(h), 0), h.repeat(len(v_states), 1)
    elif h is None:
        h_states = all_states(num_hidden)
        v, h = v.repeat(len(h_states), 1), h_states.repeat_interleave(len(v), 0)
    numeric = torch.logsumexp(-rbm.energy(v, h), 0) + math.log(cell)
    torch.testing.assert_close(rbm.log_partition(), numeric, rtol=0, atol=1e-6)


def test_gaussian_visible_log_prob_is_a_density():
    rbm = make_rbm(1, 3, "gaussian")
    v, cell = grid(1, 15.0, 3001)
    torch.testing.assert_close(rbm.log_prob(v).exp().sum() * cell, torch.tensor(1.0, dtype=torch.float64))


def test_log_partition_refuses_what_it_cannot_compute():
    with pytest.raises(AekitError, match="ais_log_partition"):
        RBM(30, 25).log_partition()
    assert torch.isfinite(RBM(200, 8).log_partition())  # enumerates the small hidden layer
    with pytest.raises(AekitError, match="not binary"):
        RBM(4, 3, hidden="linear").log_partition("hidden")
    with pytest.raises(AekitError, match="unknown layer"):
        RBM(4, 3).log_partition("both")
    with pytest.raises(AekitError, match="no finite partition function"):
        make_rbm(4, 4, "gaussian", "linear", weight_scale=2.0).log_partition()


@pytest.mark.parametrize("visible,hidden", UNIT_TYPES)
def test_ais_estimate_matches_exact_log_partition(visible, hidden):
    # 12 × 10 with weights large enough that the base model is far from the target (log Z moves by
    # several nats); Gaussian–linear needs ‖W‖₂ < 1 to be normalizable.
    scale = 0.1 if (visible, hidden) == ("gaussian", "linear") else 0.6
    rbm = make_rbm(12, 10, visible, hidden, weight_scale=scale)
    exact = rbm.log_partition().item()
    data = rbm.sample(200, k=200)
    torch.manual_seed(0)
    estimate = rbm.ais_log_partition(data=data, num_chains=100, betas=2000)
    assert abs(estimate.log_z - exact) < 0.1, (estimate, exact)
    assert estimate.lower <= exact <= estimate.upper
    assert estimate.log_weights.shape == (100,)
    log_p = rbm.estimate_log_likelihood(data[:5], log_z=estimate)
    torch.testing.assert_close(log_p, rbm.log_prob(data[:5]), rtol=0, atol=0.1)


def test_ais_betas_follow_the_annealing_schedule():
    betas = ais_betas(14500)
    assert betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()
    assert len(betas) == 14501
    assert (betas < 0.5).sum() == 500 and ((betas >= 0.5) & (betas < 0.9)).sum() == 4000
    with pytest.raises(AekitError, match="betas"):
        RBM(4, 3).ais_log_partition(betas=torch.tensor([0.0, 0.7, 0.5, 1.0]))


# ----- contrastive divergence ------------------------------------------------------------------


@pytest.mark.parametrize("visible,hidden", UNIT_TYPES)
def test_cd_gradient_equals_autograd_of_the_surrogate_loss(visible, hidden):
    rbm = make_rbm(6, 4, visible, hidden, weight_scale=0.3)
    v = visible_data(rbm, 8)
    torch.manual_seed(3)
    v_model = rbm.negative_phase(v, k=2)
    expected = rbm.cd_gradient(v, v_model)
    rbm.zero_grad()
    rbm.cd_surrogate_loss(v, v_model).mean().backward()
    for name, param in rbm.named_parameters():
        torch.testing.assert_close(-param.grad, expected[name])


@pytest.mark.parametrize("persistent", [False, True])
def test_cd_step_applies_the_cd_gradient_with_momentum_and_weight_decay(persistent):
    rbm = make_rbm(6, 4, weight_scale=0.3)
    v = visible_data(rbm, 8)
    lr, momentum, decay = 0.5, 0.9, 0.01
    velocity = {name: torch.zeros_like(p) for name, p in rbm.named_parameters()}
    for step in range(2):
        before = {name: p.detach().clone() for name, p in rbm.named_parameters()}
        chain = rbm.persistent_chain.clone()
        torch.manual_seed(10 + step)
        stats = rbm.cd_step(v, k=2, persistent=persistent, learning_rate=lr, momentum=momentum, weight_decay=decay)
        # Replay the same negative phase on a copy holding the old parameters and chain.
        replay = make_rbm(6, 4, weight_scale=0.3)
        replay.load_state_dict(before)
        replay.persistent_chain = chain
        torch.manual_seed(10 + step)
        v_model = replay.negative_phase(v, k=2, persistent=persistent)
        grads = replay.cd_gradient(v, v_model)
        if persistent:  # both moved their fantasy particles on, identically
            torch.testing.assert_close(rbm.persistent_chain, replay.persistent_chain)
            assert not torch.equal(rbm.persistent_chain, chain)
        for name, param in rbm.named_parameters():
            g = grads[name] - (decay * before[name] if name == "weight" else 0.0)
            velocity[name] = momentum * velocity[name] + lr * g
            torch.testing.assert_close(param.detach() - before[name], velocity[name])
        assert set(stats) == {"reconstruction_error", "free_energy_gap"}
        assert stats["reconstruction_error"].dim() == 0 and stats["reconstruction_error"] > 0


def test_persistent_chain_is_kept_and_reset_when_the_batch_size_changes():
    rbm = make_rbm(6, 4)
    v = visible_data(rbm, 5)
    rbm.cd_step(v, persistent=True)
    first = rbm.persistent_chain.clone()
    assert first.shape == (5, 4) and set(first.unique().tolist()) <= {0.0, 1.0}
    # Given the particles, the negative phase no longer looks at the data: other data of the same
    # size gives the same model samples.
    other = 1.0 - v
    torch.manual_seed(0)
    from_v = rbm.negative_phase(v, persistent=True)
    rbm.persistent_chain = first.clone()
    torch.manual_seed(0)
    torch.testing.assert_close(rbm.negative_phase(other, persistent=True), from_v)
    assert rbm.persistent_chain.shape == (5, 4)
    assert rbm.cd_step(v[:3], persistent=True, monitor=False) == {}
    assert rbm.persistent_chain.shape == (3, 4)
    assert "persistent_chain" not in rbm.state_dict() and set(rbm.state_dict()) == {
        "weight", "visible_bias", "hidden_bias"
    }


@pytest.mark.parametrize("persistent", [False, True])
def test_training_raises_the_exact_log_likelihood_of_bars_and_stripes(persistent):
    x = bars_and_stripes(3).double()  # 14 patterns of 3×3; the best model has log(1/14) = -2.64 nats
    torch.manual_seed(0)
    rbm = RBM(9, 16, dtype=torch.float64).init_visible_bias(x)
    before = rbm.log_prob(x).mean().item()  # ≈ -9 log 2 = -6.24
    for _ in range(1000):
        rbm.cd_step(x, k=1, persistent=persistent, learning_rate=0.1, momentum=0.5)
    after = rbm.log_prob(x).mean().item()
    assert after > before + 1.5, (before, after)


def test_sample_and_gibbs_give_states_of_the_right_kind():
    rbm = make_rbm(6, 4)
    torch.manual_seed(0)
    samples = rbm.sample(50, k=20)
    assert samples.shape == (50, 6) and set(samples.unique().tolist()) <= {0.0, 1.0}
    gaussian = make_rbm(6, 4, "gaussian", weight_scale=0.2).sample(50, k=5)
    assert gaussian.shape == (50, 6) and gaussian.unique().numel() > 100


def test_sampled_chains_reach_the_exact_distribution():
    rbm = make_rbm(4, 3)
    torch.manual_seed(0)
    samples = rbm.sample(20000, k=50)
    codes = (samples * 2 ** torch.arange(3, -1, -1, dtype=torch.float64)).sum(1).long()
    empirical = torch.bincount(codes, minlength=16).double() / len(codes)
    exact = rbm.log_prob(all_states(4)).exp()
    assert (empirical - exact).abs().max() < 0.015


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_init_visible_bias_matches_the_data_base_rates(visible):
    x = torch.rand(500, 6, dtype=torch.float64)
    x[:, 0] = 0.0  # a pixel that is never on gets a large negative, finite bias
    rbm = RBM(6, 3, visible, dtype=torch.float64).init_visible_bias(x)
    expected = x.mean(0) if visible == "gaussian" else x.mean(0).clamp(1e-3, 1 - 1e-3)
    # With W ≈ 0 the model's visible means are the biases' base rates.
    mean = rbm.visible_given_hidden(torch.zeros(1, 3, dtype=torch.float64)).mean[0]
    torch.testing.assert_close(mean, expected)


def test_config_round_trip_rebuilds_the_model():
    rbm = make_rbm(5, 3, "gaussian", "linear")
    copy = RBM.from_config(vars(rbm.rbm_config), dtype=torch.float64)
    copy.load_state_dict(rbm.state_dict())
    v = visible_data(rbm, 4)
    torch.testing.assert_close(copy.free_energy(v), rbm.free_energy(v))
    with pytest.raises(AekitError, match="unknown hidden unit type 'relu'"):
        RBMConfig(5, 3, hidden="relu")
    with pytest.raises(AekitError, match="num_hidden"):
        RBM(5, 0)


# ----- pseudo-likelihood against scikit-learn -------------------------------------------------


def sklearn_copy(rbm, random_state):
    sk = BernoulliRBM(n_components=rbm.num_hidden, random_state=random_state)
    sk.components_ = rbm.weight.detach().numpy().copy()
    sk.intercept_hidden_ = rbm.hidden_bias.detach().numpy().copy()
    sk.intercept_visible_ = rbm.visible_bias.detach().numpy().copy()
    sk.n_features_in_ = rbm.num_visible
    return sk


def test_pseudo_likelihood_matches_sklearn_score_samples():
    rbm = make_rbm(20, 7)
    v = visible_data(rbm, 30)
    flip = np.random.RandomState(42).randint(0, 20, 30)  # scikit-learn's draw for random_state=42
    ours = rbm.pseudo_likelihood(v, flip_index=torch.from_numpy(flip))
    np.testing.assert_allclose(ours.numpy(), sklearn_copy(rbm, 42).score_samples(v.numpy()), rtol=1e-10)
    with pytest.raises(AekitError, match="binary visible"):
        make_rbm(4, 3, "gaussian").pseudo_likelihood(torch.zeros(2, 4, dtype=torch.float64))


def test_estimator_score_samples_matches_sklearn():
    x = np.random.RandomState(0).rand(40, 12)
    est = RBMEstimator(n_components=5, n_iter=2, random_state=7).fit(x)
    sk = BernoulliRBM(n_components=5, random_state=7)
    sk.components_ = est.components_.astype(np.float64)
    sk.intercept_hidden_ = est.intercept_hidden_.astype(np.float64)
    sk.intercept_visible_ = est.intercept_visible_.astype(np.float64)
    sk.n_features_in_ = 12
    np.testing.assert_allclose(est.score_samples(x), sk.score_samples(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(est.transform(x), sk.transform(x), rtol=1e-5, atol=1e-6)


# ----- the scikit-learn face ---------------------------------------------------------------------


def test_estimator_in_a_pipeline_on_digits():
    """Training must help: against the same pipeline with an untrained RBM (random small weights, whose
    near-linear features already give logistic regression 0.94), the trained RBM's features classify
    at least as well and its pseudo-likelihood of held-out digits is several nats higher."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(digits.data / 16.0, digits.target, random_state=0)

    def pipeline(n_iter):
        rbm = RBMEstimator(n_components=100, learning_rate=0.06, n_iter=n_iter, random_state=0, device="cpu")
        return Pipeline([("rbm", rbm), ("logistic", LogisticRegression(C=100.0, max_iter=3000))]).fit(x_train, y_train)

    trained, untrained = pipeline(40), pipeline(0)
    assert trained.score(x_test, y_test) >= untrained.score(x_test, y_test)
    gain = trained["rbm"].score_samples(x_test).mean() - untrained["rbm"].score_samples(x_test).mean()
    assert gain > 3.0, gain


def test_estimator_fit_is_reproducible_and_leaves_torch_rng_alone():
    x = np.random.RandomState(0).rand(50, 8).round()
    state = torch.get_rng_state()
    a = RBMEstimator(n_components=4, n_iter=3, batch_size=7, random_state=0).fit(x)
    assert torch.equal(torch.get_rng_state(), state)
    b = clone(a).fit(x)
    np.testing.assert_array_equal(a.components_, b.components_)
    assert a.components_.shape == (4, 8) and a.intercept_hidden_.shape == (4,)
    assert a.intercept_visible_.shape == (8,) and a.n_features_in_ == 8
    assert isinstance(a.module_, RBM)
    assert a.transform(x).shape == (50, 4) and a.score_samples(x).shape == (50,)
    step = a.gibbs(x)
    assert step.shape == (50, 8) and set(np.unique(step)) <= {0.0, 1.0}
    assert isinstance(a.transform(torch.from_numpy(x)), torch.Tensor)
    assert list(a.get_feature_names_out()) == [f"rbmestimator{i}" for i in range(4)]


def test_estimator_epoch_covers_every_example_in_full_batches(monkeypatch):
    x = torch.rand(50, 8)
    batches = []
    original = RBM.cd_step

    def recording_cd_step(self, v, *args, **kwargs):
        batches.append(v.clone())
        return original(self, v, *args, **kwargs)

    monkeypatch.setattr(RBM, "cd_step", recording_cd_step)
    RBMEstimator(n_components=3, batch_size=7, n_iter=2, random_state=0).fit(x)
    assert len(batches) == 2 * 8 and all(b.shape == (7, 8) for b in batches)
    for epoch in (batches[:8], batches[8:]):
        seen = torch.cat(epoch)
        assert all((seen == row).all(1).any() for row in x)


def test_estimator_partial_fit_and_options():
    x = np.random.RandomState(0).rand(30, 6)
    est = RBMEstimator(n_components=3, random_state=0)
    assert est.partial_fit(x[:10]) is est
    before = est.components_.copy()
    est.partial_fit(x[10:20])
    assert not np.allclose(before, est.components_)
    z = (x - x.mean(0)) / x.std(0)
    gauss = RBMEstimator(n_components=3, visible="gaussian", persistent=True, k=2, momentum=0.5,
                         weight_decay=1e-4, n_iter=2, random_state=0, verbose=1).fit(z)
    assert np.isfinite(gauss.components_).all()


@pytest.mark.parametrize(
    "data,params,message",
    [
        (np.full((5, 4), 2.0), {}, r"scale it to \[0, 1\] or .* visible='gaussian'"),
        (-np.ones((5, 4)), {}, r"needs data in \[0, 1\]"),
        (np.array([[0.5, np.nan], [0.1, 0.2]]), {}, "NaN"),
        (np.array([[0.5, np.inf], [0.1, 0.2]]), {"visible": "gaussian"}, "NaN or infinite"),
        (np.zeros(4), {}, "2-D"),
        (np.zeros((5, 4)), {"n_components": 0}, "n_components must be an integer >= 1"),
        (np.zeros((5, 4)), {"learning_rate": -1.0}, "learning_rate"),
        (np.zeros((5, 4)), {"momentum": 1.0}, r"momentum must be a number in \[0.0, 1.0\)"),
        (np.zeros((5, 4)), {"visible": "poisson"}, "unknown visible unit type 'poisson'"),
        (np.zeros((5, 4)), {"k": 0}, "k must be"),
        (np.zeros((5, 4)), {"device": "gpu0"}, "not a torch device"),
        (np.zeros((5, 4)), {"device": "cuda" if not torch.cuda.is_available() else "gpu"}, "device"),
    ],
)
def test_estimator_rejects_bad_input_with_one_line(data, params, message):
    with pytest.raises(AekitError, match=message) as info:
        RBMEstimator(**{"n_components": 2, "n_iter": 1, **params}).fit(data)
    assert "\n" not in str(info.value)


def test_estimator_rejects_a_different_number_of_features():
    est = RBMEstimator(n_components=2, n_iter=1, random_state=0).fit(np.zeros((5, 4)))
    with pytest.raises(AekitError, match="X has 3 features but this RBM was fitted with 4"):
        est.transform(np.zeros((5, 3)))
