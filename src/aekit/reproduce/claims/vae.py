"""The variational autoencoder family: the ELBO and the importance-weighted bound against an exact log p(x),
the reparameterization gradient, β's rate–distortion trade, posterior collapse."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..helpers import by_budget, decreasing, evaluate, figure, increasing, mnist_settings, run_splits, save, train
from ..registry import MNIST, Claim, Measurement, register

SECTION = "vae"


# ----------------------------------------------------------------------------- a linear-Gaussian model
class _Identity(nn.Module):
    def forward(self, x, cond=None):
        return x


class _Affine(nn.Module):
    """z ↦ W z + μ: the linear decoder body of the linear-Gaussian model."""

    def __init__(self, W: torch.Tensor, mean: torch.Tensor):
        super().__init__()
        self.register_buffer("W", W)
        self.register_buffer("mean", mean)

    def forward(self, z, cond=None):
        return z @ self.W.T + self.mean


class _GaussianPosteriorHead(nn.Module):
    """q(z|x) of the linear-Gaussian model p(z) = N(0, I), p(x|z) = N(Wz + μ, σ²I): the exact posterior
    N(M⁻¹Wᵀ(x − μ), σ²M⁻¹), M = WᵀW + σ²I (PRML eq. 12.42), or with ``mean_field`` its best factorized
    approximation, N(M⁻¹Wᵀ(x − μ), diag(σ² / M_jj)) — the KL(q ‖ p)-optimal diagonal Gaussian (PRML §10.1.2)."""

    def __init__(self, W: torch.Tensor, mean: torch.Tensor, noise_variance: float, mean_field: bool):
        super().__init__()
        q = W.shape[1]
        M = W.T @ W + noise_variance * torch.eye(q, dtype=W.dtype)
        self.register_buffer("W", W)
        self.register_buffer("mean", mean)
        self.register_buffer("M_inv", torch.linalg.inv(M))
        self.register_buffer("cov", noise_variance * torch.linalg.inv(M))
        self.register_buffer("diag_var", noise_variance / torch.diagonal(M))
        self.mean_field = mean_field

    def forward(self, x):
        from ...latents import DiagonalNormal

        loc = (x - self.mean) @ self.W @ self.M_inv.T  # (B, q)
        if self.mean_field:
            return DiagonalNormal(loc, self.diag_var.sqrt().expand_as(loc))
        return torch.distributions.MultivariateNormal(loc, covariance_matrix=self.cov)


def linear_gaussian_vaes(budget: str, seed: int):
    """A linear-Gaussian model fitted to digits (PPCA's maximum likelihood, its loadings rotated so the exact
    posterior is correlated), as two aekit VAEs: q = the exact posterior, and q = its mean-field approximation.

    PPCA's likelihood is invariant to W → WR for a rotation R, so the rotated model has the same exact
    log p(x) (PPCA's ``score_samples``); its posterior covariance σ²(RᵀWᵀWR + σ²I)⁻¹ is no longer diagonal,
    so the factorized q cannot match it and the ELBO has a real gap.
    """
    from ... import PPCA
    from ...data import load_data
    from ...likelihoods import FixedGaussianLikelihood
    from ...models.parts import Decoder, Encoder
    from ...models.vae import VAE
    from ...priors import StandardNormalPrior

    q, n_test = by_budget(budget, (8, 20), (8, 200), (8, 360))
    splits = load_data("digits")
    ppca = PPCA(q).fit(splits.train.x.double())
    g = torch.Generator().manual_seed(seed)
    R, _ = torch.linalg.qr(torch.randn(q, q, generator=g, dtype=torch.float64))
    W = torch.as_tensor(ppca.W_, dtype=torch.float64) @ R
    mean = torch.as_tensor(ppca.mean_, dtype=torch.float64)
    s2 = float(ppca.noise_variance_)
    vaes = {}
    for name, mean_field in (("exact posterior", False), ("mean-field", True)):
        vaes[name] = VAE(Encoder(_Identity(), _GaussianPosteriorHead(W, mean, s2, mean_field)),
                         Decoder(_Affine(W, mean), FixedGaussianLikelihood(math.sqrt(s2))),
                         StandardNormalPrior(q).double()).double().eval()
    x = splits.test.x[:n_test].double()
    log_px = torch.as_tensor(ppca.score_samples(x), dtype=torch.float64)
    return vaes, x, log_px, {"latent_dim": q, "noise_variance": s2, "test_examples": len(x)}


# ----------------------------------------------------------------------------- elbo-gap
@torch.no_grad()
def _elbo_gap_run(budget: str, out: Path, seed: int, data_dir: str | None = None) -> Measurement:
    from torch.distributions import MultivariateNormal, kl_divergence

    samples = by_budget(budget, 100, 2000, 20000)
    vaes, x, log_px, info = linear_gaussian_vaes(budget, seed)
    elbo, se = {}, {}
    for name, vae in vaes.items():
        log_w = vae.log_weights(x, num_samples=samples)  # (L, B): log p(x, z) − log q(z|x), z ~ q
        elbo[name] = log_w.mean(0)
        se[name] = log_w.std(0) / math.sqrt(samples)
    qz = vaes["mean-field"].encode(x)
    posterior = vaes["exact posterior"].encode(x)
    kl = kl_divergence(MultivariateNormal(qz.mean, torch.diag_embed(qz.variance)), posterior)  # (B,)
    gap = log_px - elbo["mean-field"]
    gap_se = float(se["mean-field"].square().mean().sqrt() / math.sqrt(len(x)))
    # the ELBO the VAE reports: its reconstruction term and closed-form KL to the prior
    rec, kl_prior, _ = vaes["mean-field"].elbo_terms(x, num_samples=samples)
    measured = dict(info, samples=samples,
                    mean_log_px=float(log_px.mean()), mean_elbo_mean_field=float(elbo["mean-field"].mean()),
                    mean_elbo_reported=float(-(rec + kl_prior).mean()),
                    mean_gap=float(gap.mean()), mean_gap_se=gap_se, mean_kl_to_posterior=float(kl.mean()),
                    largest_excess_in_se=float(((elbo["mean-field"] - log_px) / se["mean-field"]).max()),
                    exact_posterior_max_abs_gap=float((elbo["exact posterior"] - log_px).abs().max()),
                    exact_posterior_max_weight_spread=float(
                        (vaes["exact posterior"].log_weights(x, num_samples=100) - log_px).abs().max()))

    fig, (ax1, ax2) = figure(2, size=(4.6, 3.8))
    ax1.scatter(log_px, elbo["mean-field"], s=8, label="ELBO, mean-field q")
    ax1.scatter(log_px, elbo["exact posterior"], s=8, marker="x", label="ELBO, q = p(z|x)")
    lims = [float(log_px.min()), float(log_px.max())]
    ax1.plot(lims, lims, "k--", lw=1, label="log p(x)")
    ax1.set_xlabel("exact log p(x) (nats)")
    ax1.set_ylabel("ELBO (nats, Monte Carlo)")
    ax1.set_title(f"linear-Gaussian model on digits (q = {info['latent_dim']})", fontsize=9)
    ax1.legend(fontsize=7)
    ax2.hist(gap.numpy(), bins=20, color="tab:blue", alpha=0.7, label="log p(x) − ELBO per test image")
    ax2.axvline(float(kl.mean()), color="k", ls="--", lw=1.2, label=f"KL(q ‖ p(z|x)) = {float(kl.mean()):.3f}")
    ax2.set_xlabel("nats")
    ax2.set_ylabel("test images")
    ax2.set_title("the gap is the posterior KL (Monte Carlo spread)", fontsize=9)
    ax2.legend(fontsize=7)
    return Measurement(measured, (save(fig, out, "elbo-gap.png"),))


register(Claim(
    id="elbo-gap",
    section=SECTION,
    claim="The ELBO lies below log p(x) by exactly KL(q(z|x) ‖ p(z|x)), and equals log p(x) when q is the exact "
          "posterior.",
    measurement="A linear-Gaussian model fitted to digits (PPCA, loadings rotated so p(z|x) is correlated) as aekit "
                "VAEs with q = its mean-field approximation and q = the exact posterior; Monte Carlo ELBO per test "
                "image from VAE.log_weights beside the exact log p(x), and the closed-form KL(q ‖ p(z|x)).",
    rule="holds if no image's mean-field ELBO exceeds its log p(x) by more than 4 standard errors, the mean gap is "
         "positive by more than 4 s.e. and within 4 s.e. of the mean closed-form KL, and with q = p(z|x) every "
         "log-weight equals log p(x) to 1e-6 nats.",
    verdict=lambda m: (m["largest_excess_in_se"] < 4 and m["mean_gap"] > 4 * m["mean_gap_se"]
                       and abs(m["mean_gap"] - m["mean_kl_to_posterior"]) < 4 * m["mean_gap_se"]
                       and m["exact_posterior_max_weight_spread"] < 1e-6 and m["exact_posterior_max_abs_gap"] < 1e-6),
    headline=lambda m: (f"log p(x) − ELBO = {m['mean_gap']:.4f} ± {m['mean_gap_se']:.4f} nats vs KL(q‖p(z|x)) "
                        f"{m['mean_kl_to_posterior']:.4f}; exact posterior: |gap| ≤ {m['exact_posterior_max_abs_gap']:.0e}"),
    run=_elbo_gap_run,
    anchor="Kingma & Welling 2014 (ICLR), eq. 1: log p(x) = KL(q(z|x) ‖ p(z|x)) + L(x)",
    budgets={"smoke": "20 test images, 100 samples of z each", "quick": "200 test images, 2000 samples each",
             "full": "all 360 test images, 20000 samples each"},
    supporting=({"largest_excess_in_se": 2.1, "mean_gap": 0.30, "mean_gap_se": 0.001, "mean_kl_to_posterior": 0.301,
                 "exact_posterior_max_weight_spread": 1e-12, "exact_posterior_max_abs_gap": 1e-12},),
    contradicting=({"largest_excess_in_se": 9.0, "mean_gap": 0.30, "mean_gap_se": 0.001, "mean_kl_to_posterior": 0.301,
                    "exact_posterior_max_weight_spread": 1e-12, "exact_posterior_max_abs_gap": 1e-12},
                   {"largest_excess_in_se": 2.1, "mean_gap": 0.20, "mean_gap_se": 0.001, "mean_kl_to_posterior": 0.301,
                    "exact_posterior_max_weight_spread": 1e-12, "exact_posterior_max_abs_gap": 1e-12},
                   {"largest_excess_in_se": 2.1, "mean_gap": 0.30, "mean_gap_se": 0.001, "mean_kl_to_posterior": 0.301,
                    "exact_posterior_max_weight_spread": 0.5, "exact_posterior_max_abs_gap": 0.2}),
))


# ----------------------------------------------------------------------------- iwae-k
@torch.no_grad()
def _iwae_run(budget: str, out: Path, seed: int, data_dir: str | None = None) -> Measurement:
    ks, work = by_budget(budget, ((1, 10, 100), 20_000), ((1, 2, 5, 10, 50, 100, 500, 1000, 5000), 200_000),
                         ((1, 2, 5, 10, 50, 100, 500, 1000, 5000, 20000), 2_000_000))
    vaes, x, log_px, info = linear_gaussian_vaes(budget, seed)
    vae = vaes["mean-field"]
    bounds, ses = [], []
    for k in ks:
        reps = max(10, work // (k * len(x)))
        # L_k = E[log (1/k) Σ_i w_i]: VAE.log_likelihood is one draw of that estimate per row; average reps draws
        draws = vae.log_likelihood(x.repeat(reps, 1), num_samples=k).double().reshape(reps, len(x))  # (reps, B)
        per_rep = draws.mean(1)  # (reps,): the test-set mean of each replicate
        bounds.append(float(per_rep.mean()))
        ses.append(float(per_rep.std() / math.sqrt(reps)))
    target = float(log_px.mean())
    steps = [(b - a) / math.sqrt(sa ** 2 + sb ** 2 + 1e-300) for a, b, sa, sb in zip(bounds, bounds[1:], ses, ses[1:])]
    measured = dict(info, ks=list(ks), bounds=bounds, bound_se=ses, log_px=target,
                    smallest_step_in_se=min(steps), largest_excess_in_se=max((b - target) / s for b, s in zip(bounds, ses)),
                    gap_first=target - bounds[0], gap_last=target - bounds[-1],
                    rise_in_se=(bounds[-1] - bounds[0]) / math.sqrt(ses[0] ** 2 + ses[-1] ** 2))

    fig, ax = figure(size=(5.4, 3.8))
    ax.errorbar(ks, bounds, yerr=[2 * s for s in ses], marker="o", capsize=3, label="L_k (mean over test images)")
    ax.axhline(target, color="k", ls="--", lw=1, label=f"exact log p(x) = {target:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("k, importance samples")
    ax.set_ylabel("bound (nats per image)")
    ax.set_title("IWAE bound of a mean-field q on a linear-Gaussian model (±2 s.e.)", fontsize=9)
    ax.legend(fontsize=8)
    return Measurement(measured, (save(fig, out, "iwae-k.png"),))


register(Claim(
    id="iwae-k",
    section=SECTION,
    claim="The importance-weighted bound L_k rises with k and approaches log p(x) from below.",
    measurement="On the linear-Gaussian model of elbo-gap with the mean-field q: L_k averaged over test images and "
                "replicates (VAE.log_likelihood with k samples, the k-sample bound) for k from 1 to 5000, beside "
                "the exact log p(x).",
    rule="holds if no step from one k to the next falls by more than 3 standard errors, no L_k exceeds log p(x) by "
         "more than 3 s.e., L_k at the largest k is above L_1 by more than 4 s.e., and its gap to log p(x) is less "
         "than half that of L_1.",
    verdict=lambda m: (m["smallest_step_in_se"] > -3 and m["largest_excess_in_se"] < 3 and m["rise_in_se"] > 4
                       and m["gap_last"] < 0.5 * m["gap_first"]),
    headline=lambda m: (f"L_1 {m['bounds'][0]:.3f} → L_{m['ks'][-1]} {m['bounds'][-1]:.3f} vs log p(x) "
                        f"{m['log_px']:.3f} (gap {m['gap_first']:.3f} → {m['gap_last']:.4f} nats)"),
    run=_iwae_run,
    anchor="Burda, Grosse & Salakhutdinov 2016 (ICLR), Theorem 1: log p(x) ≥ L_{k+1} ≥ L_k, L_k → log p(x)",
    budgets={"smoke": "20 test images, k = 1, 10, 100", "quick": "200 test images, k = 1 … 5000 (2·10⁵ samples each)",
             "full": "360 test images, k = 1 … 20000 (2·10⁶ samples each)"},
    supporting=({"smallest_step_in_se": 0.5, "largest_excess_in_se": -20, "rise_in_se": 50, "gap_first": 0.3,
                 "gap_last": 0.01},),
    contradicting=({"smallest_step_in_se": -8, "largest_excess_in_se": -20, "rise_in_se": 50, "gap_first": 0.3,
                    "gap_last": 0.01},
                   {"smallest_step_in_se": 0.5, "largest_excess_in_se": -20, "rise_in_se": 50, "gap_first": 0.3,
                    "gap_last": 0.29},
                   {"smallest_step_in_se": 0.5, "largest_excess_in_se": 12, "rise_in_se": 50, "gap_first": 0.3,
                    "gap_last": 0.01}),
))


# ----------------------------------------------------------------------------- reparam-vs-sf
def _gradient_run(budget: str, out: Path, seed: int, data_dir: str | None = None) -> Measurement:
    from ...estimators import ScoreFunction, gradient_variance, using_estimator

    epochs, draws = by_budget(budget, (2, 20), (20, 500), (100, 5000))
    model = train("vae", "digits", out / "runs" / "vae", seed, latent_dim=8, hidden_dims=(64,), epochs=epochs,
                  batch_size=64)
    x = run_splits(model).val.x[:100]
    with torch.no_grad():
        signal = -float(model.evaluation_terms(x)["reconstruction"].mean())  # E_q[log p(x|z)]: the learning signal
    results = {"reparameterization": gradient_variance(model, x, draws=draws, seed=seed)}
    for baseline in ("none", "moving-average"):
        estimator = ScoreFunction(baseline)
        estimator.moments.mean.fill_(signal)  # a running mean that has settled at the signal's level
        estimator.moments.count.fill_(1)
        with using_estimator(model, estimator):
            results[f"score-function ({baseline})"] = gradient_variance(model, x, draws=draws, seed=seed)
    rep = results["reparameterization"]
    z = {}
    for name, r in results.items():
        if name != "reparameterization":
            se = ((r["per_coordinate"] + rep["per_coordinate"]) / draws).sqrt().clamp_min(1e-30)
            z[name] = float(((r["mean"] - rep["mean"]) / se).abs().max())
    measured = {"draws": draws, "coordinates": int(rep["mean"].numel()), "epochs": epochs,
                "variance": {k: r["variance"] for k, r in results.items()},
                "snr": {k: r["snr"] for k, r in results.items()},
                "max_abs_z_against_reparameterization": z}
    measured["variance_ratio"] = {k: v / measured["variance"]["reparameterization"]
                                  for k, v in measured["variance"].items() if k != "reparameterization"}

    fig, (ax1, ax2) = figure(2, size=(4.6, 3.6))
    names = list(results)
    ax1.bar(range(len(names)), [results[n]["variance"] for n in names], color=["tab:green", "tab:red", "tab:orange"])
    ax1.set_yscale("log")
    ax1.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=7)
    ax1.set_ylabel("gradient variance per coordinate (mean)")
    ax1.set_title(f"encoder gradient, one minibatch, {draws} draws", fontsize=9)
    m_rep = rep["mean"].numpy()
    m_sf = results["score-function (moving-average)"]["mean"].numpy()
    ax2.scatter(m_rep, m_sf, s=3)
    lim = float(abs(m_rep).max())
    ax2.plot([-lim, lim], [-lim, lim], "k--", lw=1)
    ax2.set_xlabel("mean gradient, reparameterization")
    ax2.set_ylabel("mean gradient, score function (m.a.)")
    ax2.set_title("same expectation", fontsize=9)
    return Measurement(measured, (save(fig, out, "reparam-vs-sf.png"),))


register(Claim(
    id="reparam-vs-sf",
    section=SECTION,
    claim="On a Gaussian latent the reparameterization gradient and the score-function gradient have the same "
          "expectation, and the reparameterization gradient has far lower variance, even against a baseline.",
    measurement="A VAE (64-64-8) trained on digits; on one minibatch of 100 validation images, aekit.estimators."
                "gradient_variance of the encoder gradient with the model's reparameterization and with the score "
                "function (no baseline; a moving-average baseline at the signal's mean): mean per-coordinate variance, "
                "and the largest |z| of the difference of the mean gradients.",
    rule="holds if the reparameterization variance is below both score-function variances and both score-function "
         "mean gradients agree with it (largest |z| < 5 over the coordinates).",
    verdict=lambda m: (all(r > 1 for r in m["variance_ratio"].values())
                       and all(v < 5 for v in m["max_abs_z_against_reparameterization"].values())),
    headline=lambda m: ("score-function variance " + ", ".join(
        f"{v:.0f}× ({k.split('(')[1].rstrip(')')})" for k, v in m["variance_ratio"].items())
        + " the reparameterization's; max |z| " + ", ".join(
        f"{v:.1f}" for v in m["max_abs_z_against_reparameterization"].values())),
    run=_gradient_run,
    anchor="Kingma & Welling 2014 (ICLR), §2.3–2.4 (the reparameterization trick); Williams 1992 (REINFORCE)",
    budgets={"smoke": "2 epochs, 20 gradient draws", "quick": "20 epochs, 500 draws", "full": "100 epochs, 5000 draws"},
    supporting=({"variance_ratio": {"a": 300.0, "b": 40.0}, "max_abs_z_against_reparameterization": {"a": 3.2, "b": 3.9}},),
    contradicting=({"variance_ratio": {"a": 300.0, "b": 0.8}, "max_abs_z_against_reparameterization": {"a": 3.2, "b": 3.9}},
                   {"variance_ratio": {"a": 300.0, "b": 40.0}, "max_abs_z_against_reparameterization": {"a": 3.2, "b": 9.0}}),
))


# ----------------------------------------------------------------------------- beta-rate-distortion
BETAS = (0.1, 0.3, 1.0, 3.0, 10.0)


def _beta_run(budget: str, out: Path, seed: int, data_dir: str | None = None) -> Measurement:
    data, settings = by_budget(
        budget,
        ("digits", dict(epochs=2, hidden_dims=(64,), latent_dim=8, batch_size=64)),
        ("digits", dict(epochs=60, hidden_dims=(200,), latent_dim=16, batch_size=64)),
        ("mnist", dict(epochs=100, hidden_dims=(400, 200), latent_dim=32, batch_size=128, **mnist_settings(data_dir))))
    rows = {}
    for beta in BETAS:
        model = train("vae", data, out / "runs" / f"beta{beta:g}", seed, beta=beta, **settings)
        r = evaluate(model, run_splits(model).test)
        rows[f"{beta:g}"] = {"rate": r["kl"], "distortion": r["reconstruction"], "active_units": r["active_units"]}
    rates = [rows[f"{b:g}"]["rate"] for b in BETAS]
    distortions = [rows[f"{b:g}"]["distortion"] for b in BETAS]
    measured = {"data": data, "betas": list(BETAS), "rows": rows, "rate": rates, "distortion": distortions}

    fig, ax = figure(size=(5.4, 4.0))
    ax.plot(rates, distortions, marker="o")
    for i, (b, r, d) in enumerate(zip(BETAS, rates, distortions)):  # labels alternate sides: points can crowd at R ≈ 0
        ax.annotate(f"β={b:g}", (r, d), textcoords="offset points", xytext=(6, 4) if i % 2 == 0 else (6, -11),
                    fontsize=8)
    lo, hi = min(r + d for r, d in zip(rates, distortions)), max(r + d for r, d in zip(rates, distortions))
    for total in (lo, hi):  # iso-ELBO lines R + D = const
        ax.plot([0, total], [total, 0], color="gray", ls=":", lw=0.8)
    ax.set_xlim(0, max(rates) * 1.15)
    ax.set_ylim(min(distortions) * 0.9, max(distortions) * 1.1)
    ax.set_xlabel("rate R = KL(q(z|x) ‖ p(z)) (nats)")
    ax.set_ylabel("distortion D = −E_q[log p(x|z)] (nats)")
    ax.set_title(f"β-VAE on {data} (test set); dotted: R + D = −ELBO constant", fontsize=9)
    return Measurement(measured, (save(fig, out, "beta-rate-distortion.png"),))


register(Claim(
    id="beta-rate-distortion",
    section=SECTION,
    claim="β trades reconstruction for KL: as β grows the rate KL(q ‖ p) falls and the distortion −E_q[log p(x|z)] "
          "rises, tracing a rate–distortion curve.",
    measurement=f"VAEs trained with β ∈ {{{', '.join(f'{b:g}' for b in BETAS)}}}, otherwise identical; test-set rate "
                "(KL) and distortion (reconstruction term) from aekit.evaluate.",
    rule="holds if the rate falls strictly and the distortion rises strictly from each β to the next.",
    verdict=lambda m: decreasing(m["rate"]) and increasing(m["distortion"]),
    headline=lambda m: ("R " + " > ".join(f"{r:.1f}" for r in m["rate"]) + "; D "
                        + " < ".join(f"{d:.1f}" for d in m["distortion"]) + " nats"),
    run=_beta_run,
    anchor="Higgins et al. 2017 (ICLR), the β-VAE objective; Alemi et al. 2018 (ICML), the rate–distortion plane (Fig. 1)",
    budgets={"smoke": "digits, 64-64-8, 2 epochs per β", "quick": "digits (binarized), 64-200-16, 60 epochs per β",
             "full": "MNIST (binarized), 784-400-200-32, 100 epochs per β"},
    needs={"full": (MNIST,)},
    supporting=({"rate": [30.0, 20.0, 12.0, 5.0, 1.0], "distortion": [10.0, 12.0, 15.0, 21.0, 30.0]},),
    contradicting=({"rate": [30.0, 20.0, 22.0, 5.0, 1.0], "distortion": [10.0, 12.0, 15.0, 21.0, 30.0]},
                   {"rate": [30.0, 20.0, 12.0, 5.0, 1.0], "distortion": [10.0, 12.0, 11.0, 21.0, 30.0]}),
))


# ----------------------------------------------------------------------------- posterior-collapse
_COLLAPSE_RUNS = {"plain": {}, "KL warm-up": {"kl_schedule": "linear"}, "free bits 0.25": {"free_bits": 0.25}}


def _collapse_run(budget: str, out: Path, seed: int, data_dir: str | None = None) -> Measurement:
    data, settings, warmup = by_budget(
        budget,
        ("digits", dict(latent_dim=32, hidden_dims=(64, 64), epochs=2, batch_size=64), 20),
        ("digits", dict(latent_dim=32, hidden_dims=(256, 256), epochs=100, batch_size=64), 1000),
        ("mnist", dict(latent_dim=50, hidden_dims=(400, 200), epochs=100, batch_size=128, **mnist_settings(data_dir)),
         10000))
    rows, kl_dims = {}, {}
    for name, extra in _COLLAPSE_RUNS.items():
        extra = {**extra, "warmup_steps": warmup} if "kl_schedule" in extra else extra
        model = train("vae", data, out / "runs" / name.replace(" ", "-"), seed, **settings, **extra)
        r = evaluate(model, run_splits(model).test)
        kl_dims[name] = sorted(r["kl_per_dim"], reverse=True)
        rows[name] = {"active_units": r["active_units"], "kl": r["kl"], "reconstruction": r["reconstruction"],
                      "neg_elbo": r["neg_elbo"], "units_above_0.1_nats": sum(k > 0.1 for k in r["kl_per_dim"])}
    J = settings["latent_dim"]
    measured = {"data": data, "latent_dim": J, "warmup_steps": warmup, "rows": rows, "kl_per_dim_sorted": kl_dims}

    fig, (ax1, ax2) = figure(2, size=(4.6, 3.6))
    for name, kd in kl_dims.items():
        ax1.semilogy(range(1, J + 1), [max(k, 1e-4) for k in kd], marker=".", label=name)
    ax1.set_xlabel("latent unit (sorted by KL)")
    ax1.set_ylabel("KL(q(z_j|x) ‖ p(z_j)) (nats, test mean)")
    ax1.set_title(f"{data}, {J} latent units", fontsize=9)
    ax1.legend(fontsize=7)
    names = list(rows)
    ax2.bar(range(len(names)), [rows[n]["active_units"] for n in names], color=["tab:red", "tab:blue", "tab:green"])
    ax2.axhline(J, color="k", ls=":", lw=1, label=f"J = {J}")
    ax2.axhline(J / 2, color="r", ls="--", lw=1, label="J / 2")
    ax2.set_xticks(range(len(names)), names, fontsize=8)
    ax2.set_ylabel("active units (Cov_x E_q[z_j] > 0.01)")
    ax2.legend(fontsize=7)
    return Measurement(measured, (save(fig, out, "posterior-collapse.png"),))


register(Claim(
    id="posterior-collapse",
    section=SECTION,
    claim="Without help, the KL term switches most latent units off (posterior collapse: q(z_j|x) = p(z_j)); KL "
          "warm-up and free bits keep more units active.",
    measurement="Three VAEs identical but for the KL term — constant β = 1, a linear KL warm-up, free bits λ = 0.25 "
                "nats per unit — with more latent units than the data need and a wide decoder; active units "
                "(Cov_x E_q[z_j] > 0.01) and KL per unit on the test set (aekit.evaluate).",
    rule="holds if more than half the units are inactive in the plain VAE and both the warm-up and free bits give more "
         "active units than the plain VAE.",
    verdict=lambda m: (m["rows"]["plain"]["active_units"] < m["latent_dim"] / 2
                       and m["rows"]["KL warm-up"]["active_units"] > m["rows"]["plain"]["active_units"]
                       and m["rows"]["free bits 0.25"]["active_units"] > m["rows"]["plain"]["active_units"]),
    headline=lambda m: ("active units of {J}: plain {a}, KL warm-up {b}, free bits {c}".format(
        J=m["latent_dim"], a=m["rows"]["plain"]["active_units"], b=m["rows"]["KL warm-up"]["active_units"],
        c=m["rows"]["free bits 0.25"]["active_units"])),
    run=_collapse_run,
    anchor="Bowman et al. 2016 (CoNLL), §3.1 (KL cost annealing); Kingma et al. 2016 (NeurIPS, IAF), the free-bits "
           "objective; Burda et al. 2016 (ICLR), §5.2 (active units)",
    budgets={"smoke": "digits, 32 units, 64-64 MLPs, 2 epochs",
             "quick": "digits (binarized), 32 units, 256-256 MLPs, 100 epochs; warm-up over 1000 steps",
             "full": "MNIST (binarized), 50 units, 784-400-200, 100 epochs; warm-up over 10000 steps"},
    needs={"full": (MNIST,)},
    supporting=({"latent_dim": 32, "rows": {"plain": {"active_units": 4}, "KL warm-up": {"active_units": 9},
                                            "free bits 0.25": {"active_units": 32}}},),
    contradicting=({"latent_dim": 32, "rows": {"plain": {"active_units": 30}, "KL warm-up": {"active_units": 31},
                                               "free bits 0.25": {"active_units": 32}}},
                   {"latent_dim": 32, "rows": {"plain": {"active_units": 4}, "KL warm-up": {"active_units": 4},
                                               "free bits 0.25": {"active_units": 32}}},
                   {"latent_dim": 32, "rows": {"plain": {"active_units": 4}, "KL warm-up": {"active_units": 9},
                                               "free bits 0.25": {"active_units": 3}}}),
))
