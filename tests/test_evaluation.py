"""What evaluation reports means what its name says: bits/dim by hand, active units at their threshold,
the likelihood heads against their formulas, L samples, and a conditional model's label."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

import aekit
from aekit.data import ArrayDataset
from aekit.evaluate import DEQUANTIZATION_SEED, GREY_BERNOULLI_NOTE, dequantize, evaluate_model
from aekit.latents import DiagonalNormal
from aekit.likelihoods import ContinuousBernoulliLikelihood, LearnedGaussianLikelihood
from aekit.trainer import prepare_data
from conftest import TINY


def _dataset(x, y=None):
    return ArrayDataset(x=x, y=y, image_shape=None, num_classes=None if y is None else int(y.max()) + 1, name="t")


# ----------------------------------------------------------------------------- bits per dimension
def test_bits_per_dim_of_a_density_on_8_bit_data_is_the_dequantized_figure(tmp_path):
    """PPCA (an exact density) on data quantized to 256 levels: bits/dim = −E[log p(x̃)]/(D ln 2) + 8, with
    x̃ = (k + u)/256 and log p from a dense Gaussian computed here, not by aekit."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(600, 2))
    x = np.clip(0.5 + 0.15 * z @ rng.normal(size=(2, 6)) + 0.03 * rng.normal(size=(600, 6)), 0, 1)
    np.save(tmp_path / "x.npy", (np.round(x * 255) / 255).astype(np.float32))
    model = aekit.train("ppca", str(tmp_path / "x.npy"), out=tmp_path / "ppca", latent_dim=2, figures="none",
                        progress=False)
    test = prepare_data(model.config).test
    r = evaluate_model(model, test, progress=False)
    assert "log_px" not in r and r["log_density_method"] == "exact"
    cov = (model.W @ model.W.T + model.noise_variance * torch.eye(6)).double()
    dense = MultivariateNormal(model.mean.double(), covariance_matrix=cov)
    x_tilde = dequantize(test.x, 256, torch.Generator().manual_seed(DEQUANTIZATION_SEED))
    by_hand = -dense.log_prob(x_tilde.double()).mean().item() / (6 * math.log(2)) + 8
    assert r["bits_per_dim"] == pytest.approx(by_hand, rel=1e-5)
    assert r["log_density"] == pytest.approx(dense.log_prob(test.x.double()).mean().item(), rel=1e-5)
    assert r["bits_per_dim"] > 0  # a raw density's "bits" could be negative; the dequantized figure cannot


def test_bits_per_dim_of_binary_data_is_minus_log_p_over_d_ln_2(tmp_path):
    model = aekit.train("vae", "digits", out=tmp_path / "vae", epochs=2, **TINY)
    test = prepare_data(model.config).test
    assert set(test.x.unique().tolist()) == {0.0, 1.0}  # binarize auto: Bernoulli pixels get binary data
    r = evaluate_model(model, test, iw_samples=20, progress=False)
    assert r["log_px"] < 0 and r["bits_per_dim"] == pytest.approx(-r["log_px"] / (64 * math.log(2)))
    assert r["log_px"] >= -r["neg_elbo"] - 0.5  # k = 20 is no looser than the ELBO (up to its noise)


def test_a_bernoulli_likelihood_on_grey_data_reports_no_likelihood(tmp_path):
    model = aekit.train("vae", "digits", out=tmp_path / "grey", epochs=1, binarize="none", **TINY)
    r = evaluate_model(model, prepare_data(model.config).test, progress=False)
    assert r["note"] == GREY_BERNOULLI_NOTE
    assert not {"log_px", "bits_per_dim", "log_density"} & set(r)


def test_a_density_on_continuous_data_has_no_bits_per_dim(tmp_path):
    model = aekit.train("vae", "swiss-roll", out=tmp_path / "roll", likelihood="gaussian-learned", epochs=1, **TINY)
    r = evaluate_model(model, prepare_data(model.config).test, iw_samples=10, progress=False)
    assert "log_density" in r and "bits_per_dim" not in r and "log_px" not in r


# ----------------------------------------------------------------------------- active units
def test_active_units_count_the_dimensions_whose_posterior_mean_varies_above_0_01(tmp_path):
    model = aekit.train("vae", "digits", out=tmp_path / "vae", epochs=1, latent_dim=3,
                        **{k: v for k, v in TINY.items() if k != "latent_dim"})
    n = 400
    # posterior means whose variance over x is exactly 0.011 (active), 0.009 and 0 (inactive)
    loc = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
    loc = (loc - loc.mean(0)) / loc.std(0) * torch.tensor([0.011, 0.009, 0.0]).sqrt()
    data = _dataset(torch.rand(n, 64, generator=torch.Generator().manual_seed(1)).round())

    def encode(x, y=None):
        rows = torch.cdist(x, data.x).argmin(1)  # which rows of data this batch holds
        return DiagonalNormal(loc[rows], torch.ones_like(loc[rows]))

    model.encode = encode
    r = evaluate_model(model, data, iw_samples=0, progress=False, batch_size=64)
    assert r["active_units"] == 1 and r["latent_dim"] == 3


# ----------------------------------------------------------------------------- likelihood heads
def test_continuous_bernoulli_matches_its_formula_and_integrates_to_one():
    logits = torch.tensor([-3.0, -0.5, 0.0, 0.2, 2.5])
    lam = torch.sigmoid(logits).double()
    px = ContinuousBernoulliLikelihood()(logits[None])  # event over the 5 dimensions
    x = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.7]])
    # C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ), and C(½) = 2
    c = torch.where((lam - 0.5).abs() < 1e-6, torch.full_like(lam, 2.0), 2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam))
    by_hand = (c.log() + x.double() * lam.log() + (1 - x.double()) * (1 - lam).log()).sum()
    assert float(px.log_prob(x)) == pytest.approx(float(by_hand), rel=1e-5)
    grid = torch.linspace(0, 1, 20001)[:, None].expand(-1, 5)
    density = px.base_dist.log_prob(grid).exp()  # (G, 5)
    assert torch.trapezoid(density, grid[:, 0], dim=0).tolist() == pytest.approx([1.0] * 5, abs=1e-4)


def test_learned_sigma_gaussian_matches_its_formula_and_learns_the_noise_level(tmp_path):
    raw = torch.tensor([[0.3, -1.0, 2.0, 0.0, 0.5, -0.2]])
    px = LearnedGaussianLikelihood()(raw)
    loc, scale = raw[:, :3], torch.nn.functional.softplus(raw[:, 3:]) + 1e-3
    x = torch.tensor([[0.1, -0.4, 1.5]])
    by_hand = (-0.5 * ((x - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum()
    assert float(px.log_prob(x)) == pytest.approx(float(by_hand), rel=1e-6)
    # data on a 1-d line plus noise of σ = 0.1: the learned σ must approach 0.1 (untrained: ≈ 0.69)
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3000, 1))
    x = t @ rng.normal(size=(1, 4)) + 0.1 * rng.normal(size=(3000, 4))
    np.save(tmp_path / "line.npy", x.astype(np.float32))
    model = aekit.train("vae", str(tmp_path / "line.npy"), out=tmp_path / "r", likelihood="gaussian-learned",
                        latent_dim=1, hidden_dims=(32,), epochs=40, batch_size=128, figures="none", progress=False)
    test = prepare_data(model.config).test
    with torch.no_grad():
        sigma = model.decode(model.encode(test.x).mean).base_dist.scale.mean().item()
    assert 0.07 < sigma < 0.15, sigma


# ----------------------------------------------------------------------------- L samples
def test_more_monte_carlo_samples_lower_the_variance_of_the_elbo_estimate(tmp_path):
    """The L-sample ELBO is the mean of L single-sample estimates: its variance falls as 1/L."""
    model = aekit.train("vae", "digits", out=tmp_path / "r", epochs=1, **TINY)
    x = prepare_data(model.config).test.x[:32]
    model.train()

    def estimates(samples):
        model.mc_samples = samples
        return torch.stack([model.loss(x).total.detach() for _ in range(300)])  # (300, B)

    var1, var8 = estimates(1).var(0).mean(), estimates(8).var(0).mean()
    assert 5 < float(var1 / var8) < 12  # 8 in expectation


def test_mc_samples_is_what_the_trained_model_uses(tmp_path):
    one = aekit.train("vae", "digits", out=tmp_path / "one", epochs=1, **TINY)
    four = aekit.train("vae", "digits", out=tmp_path / "four", epochs=1, mc_samples=4, **TINY)
    assert one.mc_samples == 1 and four.mc_samples == 4


# ----------------------------------------------------------------------------- conditional model
def test_a_cvae_generates_the_class_it_is_given(tmp_path):
    """Samples for label c are closer to class c's mean training image than to any other class's."""
    model = aekit.train("cvae", "digits", out=tmp_path / "cvae", epochs=40, hidden_dims=(64,), latent_dim=4,
                        batch_size=64, figures="none", progress=False)
    train = prepare_data(model.config).train
    means = torch.stack([train.x[train.y == c].mean(0) for c in range(10)])  # (10, 64)
    torch.manual_seed(0)
    labels = torch.arange(10).repeat_interleave(20)
    with torch.no_grad():
        x = model.sample(len(labels), labels)
    nearest = torch.cdist(x, means).argmin(1)
    accuracy = float((nearest == labels).float().mean())
    assert accuracy > 0.7, accuracy  # chance: 0.1


# ----------------------------------------------------------------------------- the Python face
def test_the_python_face_accepts_numpy_float64_and_image_batches(tmp_path):
    from sklearn.datasets import load_digits

    model = aekit.train("vae", "digits", out=tmp_path / "r", epochs=1, **TINY)
    x = load_digits().data[:5] / 16.0  # float64 numpy, as a user has it
    as_tensor = torch.as_tensor(x, dtype=torch.float32)
    torch.testing.assert_close(model.reconstruct(x), model.reconstruct(as_tensor))
    torch.testing.assert_close(model.reconstruct(x.reshape(5, 8, 8)), model.reconstruct(as_tensor))
    assert model.encode(x).mean.shape == (5, TINY["latent_dim"])
    assert model.decode(np.zeros((2, TINY["latent_dim"]))).mean.shape == (2, 64)
    with pytest.raises(aekit.AekitError, match=r"reshape\(1, -1\)"):
        model.reconstruct(x[0])
    with pytest.raises(aekit.AekitError, match="rows of 64 values"):
        model.reconstruct(x[:, :10])
    loaded = aekit.load(tmp_path / "r")
    torch.testing.assert_close(loaded.reconstruct(x), model.reconstruct(x))


# ----------------------------------------------------------------------------- fast paths
def test_the_fast_likelihood_path_equals_the_plain_one(tmp_path, monkeypatch):
    """log p(x) with aekit's Bernoulli (product-and-softplus for many z, chunks sized to the cache) equals
    torch's Independent(Bernoulli) in one chunk, on the same model and seed, to 1e-4 nats per example."""
    from torch.distributions import Bernoulli, Independent

    import aekit.likelihoods as likelihoods
    import aekit.models.vae as vae_module

    model = aekit.train("vae", "digits", out=tmp_path / "r", epochs=2, **TINY)
    x = prepare_data(model.config).test.x[:50]
    torch.manual_seed(0)
    fast = model.log_likelihood(x, num_samples=400)
    monkeypatch.setattr(likelihoods.BernoulliLikelihood, "forward",
                        lambda self, out: Independent(Bernoulli(logits=out, validate_args=False), 1))
    monkeypatch.setattr(vae_module, "_LOGLIK_CHUNK_ELEMENTS", 1 << 30)
    torch.manual_seed(0)
    plain = model.log_likelihood(x, num_samples=400)
    assert float((fast - plain).abs().max()) < 1e-4


def test_the_grouped_bernoulli_form_is_as_accurate_as_softplus():
    """Σ_d [x_d l_d − softplus(l_d)] as penalties and grouped products (what --compile compiles), for D with 16,
    2 and 1 factors per logarithm, binary and grey x: within 1e-6 of the float64 value relative to it, and on
    average no further from it than the softplus form (both are float32 roundings)."""
    import torch.nn.functional as F

    from aekit.likelihoods import bernoulli_log_prob_grouped

    g = torch.Generator().manual_seed(0)
    for d in (784, 66, 7):
        logits = torch.randn(50, 9, d, generator=g) * 8
        for x in ((torch.rand(9, d, generator=g) < 0.3).float(), torch.rand(9, d, generator=g)):
            exact = (logits.double() * x.double() - F.softplus(logits.double())).sum(-1)
            grouped = (bernoulli_log_prob_grouped(logits, x).double() - exact).abs()
            softplus = (((logits * x).sum(-1) - F.softplus(logits).sum(-1)).double() - exact).abs()
            assert float((grouped / exact.abs()).max()) < 1e-6, d
            assert float(grouped.mean()) <= 1.1 * float(softplus.mean()), (d, float(grouped.mean()), float(softplus.mean()))


def _plain_log_likelihood(model, x, monkeypatch, k):
    """log p(x) by torch's Independent(Bernoulli), all k samples in one chunk, seed 0."""
    from torch.distributions import Bernoulli, Independent

    import aekit.likelihoods as likelihoods
    import aekit.models.vae as vae_module

    with monkeypatch.context() as m:
        m.setattr(likelihoods.BernoulliLikelihood, "forward",
                  lambda self, out: Independent(Bernoulli(logits=out, validate_args=False), 1))
        m.setattr(vae_module, "_LOGLIK_CHUNK_ELEMENTS", 1 << 30)
        torch.manual_seed(0)
        return model.log_likelihood(x, num_samples=k)


@pytest.mark.skipif(not __import__("aekit.likelihoods").likelihoods.cxx_compiler_found(),
                    reason="torch.compile's CPU backend needs a C++ compiler")
def test_the_compiled_likelihood_equals_the_plain_one(tmp_path, monkeypatch, capsys):
    """log p(x) with the likelihood compiled (evaluate --compile) equals torch's Independent(Bernoulli) in one
    chunk to 1e-4 nats per example, and the compiled kernel did compute it (no fallback)."""
    from aekit.likelihoods import compiled_likelihood, likelihood_is_compiled

    model = aekit.train("vae", "digits", out=tmp_path / "r", epochs=2, **TINY)
    x = prepare_data(model.config).test.x[:50]
    with compiled_likelihood():
        torch.manual_seed(0)
        fast = model.log_likelihood(x, num_samples=400)
        assert likelihood_is_compiled(), capsys.readouterr().err
    assert "--compile" not in capsys.readouterr().err
    plain = _plain_log_likelihood(model, x, monkeypatch, 400)
    assert float((fast - plain).abs().max()) < 1e-4


def test_the_compiled_likelihood_falls_back_with_one_line(tmp_path, monkeypatch, capsys):
    """Where torch.compile cannot compile (no C++ compiler), one line says so and log p(x) is the eager one."""
    from aekit.likelihoods import compiled_likelihood, likelihood_is_compiled

    def cannot_compile(fn, **kwargs):
        def compiled(*args):
            raise RuntimeError("InductorError: no working C++ compiler found")
        return compiled

    model = aekit.train("vae", "digits", out=tmp_path / "r", epochs=1, **TINY)
    x = prepare_data(model.config).test.x[:50]
    torch.manual_seed(0)
    eager = model.log_likelihood(x, num_samples=100)
    capsys.readouterr()
    monkeypatch.setattr(torch, "compile", cannot_compile)
    with compiled_likelihood():
        torch.manual_seed(0)
        fallback = model.log_likelihood(x, num_samples=100)
        assert not likelihood_is_compiled()
    err = capsys.readouterr().err
    assert err.count("--compile: torch.compile failed here") == 1 and len(err.strip().splitlines()) == 1, err
    assert torch.equal(fallback, eager)


def test_a_long_log_likelihood_compiles_its_kernel_on_the_way_unless_told_not_to(tmp_path, monkeypatch):
    """By default evaluate enters the compiled likelihood after the first batch once the estimate exceeds
    AUTO_COMPILE_SECONDS (here 0), with the same log p(x) to 1e-4 nats; compile=False never enters it."""
    import contextlib

    import aekit.evaluate as evaluation

    entered = []
    real = evaluation.compiled_likelihood

    @contextlib.contextmanager
    def recording():
        entered.append(True)
        with real():
            yield

    monkeypatch.setattr(evaluation, "compiled_likelihood", recording)
    monkeypatch.setattr(evaluation, "AUTO_COMPILE_SECONDS", 0.0)
    monkeypatch.setattr(evaluation, "cxx_compiler_found", lambda: True)
    model = aekit.train("vae", "digits", out=tmp_path / "r", epochs=1, **TINY)
    test = prepare_data(model.config).test
    eager = evaluation.evaluate_model(model, test, iw_samples=2000, progress=False, compile=False)["log_px"]
    assert entered == []
    auto = evaluation.evaluate_model(model, test, iw_samples=2000, progress=False)["log_px"]
    assert entered == [True]
    assert abs(auto - eager) < 1e-4


def test_fused_adam_falls_back_with_one_line(tmp_path, monkeypatch, capsys):
    real = torch.optim.Adam

    def no_fused(params, *args, fused=None, **kwargs):
        if fused:
            raise RuntimeError("fused Adam is not supported here")
        return real(params, *args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", no_fused)
    aekit.train("vae", "digits", out=tmp_path / "r", epochs=1, **TINY)
    out = capsys.readouterr().out
    assert out.count("fused Adam is not available here") == 1


def test_amp_falls_back_to_float32_with_one_line_on_a_cpu_without_bf16(tmp_path, monkeypatch, capsys):
    """--amp where the CPU has no native bfloat16: one line, and exactly the float32 run's parameters."""
    import aekit.trainer as trainer

    monkeypatch.setattr(trainer, "cpu_has_bf16", lambda: False)
    plain = aekit.train("vae", "digits", out=tmp_path / "fp32", epochs=1, **TINY)
    capsys.readouterr()
    fallback = aekit.train("vae", "digits", out=tmp_path / "amp", epochs=1, amp=True, **TINY)
    assert capsys.readouterr().out.count("no native bfloat16 arithmetic") == 1
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), fallback.state_dict().values()))


@pytest.mark.skipif(not __import__("aekit.trainer").trainer.cpu_has_bf16(), reason="this CPU has no native bfloat16")
def test_amp_on_a_bf16_cpu_trains_in_bfloat16_to_about_the_float32_loss(tmp_path):
    """Autocast acts (the parameters differ from float32's) and costs little: the validation −ELBO after 3
    epochs within 2% of float32's, and both below the untrained model's by far."""
    from aekit.models import build_model
    from aekit.trainer import evaluate_terms

    plain = aekit.train("vae", "digits", out=tmp_path / "fp32", epochs=3, **TINY)
    mixed = aekit.train("vae", "digits", out=tmp_path / "amp", epochs=3, amp=True, **TINY)
    assert not all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), mixed.state_dict().values()))
    torch.manual_seed(0)
    untrained = build_model(plain.config.model, plain.config.shape)
    val = prepare_data(plain.config).val
    start = evaluate_terms(untrained, val)["neg_elbo"]
    fp32, bf16 = (evaluate_terms(m, val)["neg_elbo"] for m in (plain, mixed))
    assert abs(bf16 - fp32) < 0.02 * fp32
    assert bf16 < fp32 + 0.5 * (start - fp32)
