"""The VQ-VAE line: a codebook kept alive, a PixelCNN prior over its codes that makes it a generator, its
likelihood bound beside a continuous VAE's, and the posterior collapse a PixelCNN decoder invites."""

from __future__ import annotations

from pathlib import Path

import torch

from ..helpers import bars, by_budget, evaluate, figure, image_grid, mnist_settings, run_splits, save, train
from ..registry import MNIST, Claim, Measurement, register

SECTION = "vqvae"

# The paper's recipe: the codebook learned by its own loss term from a uniform start, no restarts.
PLAIN_CODEBOOK = dict(codebook_update="loss", codebook_init="uniform", restart_threshold=0.0)


def _data(budget: str, data_dir: str | None) -> tuple[str, dict]:
    return ("digits", {}) if budget == "smoke" else ("mnist", mnist_settings(data_dir))


# ----------------------------------------------------------------------------- vq-codebook-health
def _codebook_run(budget: str, out: Path, seed: int, data_dir: str | None = None) -> Measurement:
    from ...models.vqvae import code_counts, codebook_usage

    data, where = _data(budget, data_dir)
    steps, codebook_size = by_budget(budget, (3, 16), (300, 512), (5000, 512))
    rows, counts = {}, {}
    for name, settings in (("plain codebook loss", PLAIN_CODEBOOK), ("EMA + k-means + restarts", {})):
        model = train("vq-vae", data, out / "runs" / name.split()[0], seed, steps=steps,
                      codebook_size=codebook_size, **where, **settings)
        test = run_splits(model).test
        rows[name] = codebook_usage(model, test)
        counts[name] = code_counts(model, test.x).numpy()
    fig, axes = figure(2, size=(4.6, 3.4))
    for ax, (name, c) in zip(axes, counts.items()):
        order = sorted(c, reverse=True)
        ax.bar(range(len(order)), order, width=1.0)
        ax.set_yscale("symlog")
        ax.set_xlabel("code (sorted by use)")
        ax.set_ylabel("assignments over the test split")
        ax.set_title(f"{name}: {rows[name]['codes_used']} of {codebook_size} used", fontsize=9)
    return Measurement({"data": data, "steps": steps, "codebook_size": codebook_size, "rows": rows},
                       (save(fig, out, "vq-codebook-health.png"),))


def _used(m: dict, name: str) -> float:
    return m["rows"][name]["codes_used_fraction"]


register(Claim(
    id="vq-codebook-health",
    section=SECTION,
    claim="Dead-code restarts with an EMA codebook from a k-means start keep a K = 512 codebook alive: the VQ-VAE "
          "uses at least 90% of its codes over the MNIST test set, where the paper's plain codebook loss from a "
          "uniform start leaves most of them dead.",
    measurement="Codes used over the test split (aekit.models.vqvae.codebook_usage) by two vq-vae runs of the same "
                "network, data and steps: the plain codebook loss (codebook_update=loss, uniform init, no "
                "restarts) and aekit's default (EMA, k-means init, restarts).",
    rule="holds if the default uses ≥ 90% of K and the plain recipe < 90% of K.",
    verdict=lambda m: (_used(m, "EMA + k-means + restarts") >= 0.9 > _used(m, "plain codebook loss")),
    headline=lambda m: "codes used of {}: plain {} vs EMA + k-means + restarts {} (usage perplexity {:.0f} vs {:.0f})"
    .format(m["codebook_size"], m["rows"]["plain codebook loss"]["codes_used"],
            m["rows"]["EMA + k-means + restarts"]["codes_used"],
            m["rows"]["plain codebook loss"]["usage_perplexity"],
            m["rows"]["EMA + k-means + restarts"]["usage_perplexity"]),
    run=_codebook_run,
    anchor="van den Oord et al. 2017 (NeurIPS) §3.2 (the codebook loss), App. A.1 (EMA); Dhariwal et al. 2020 "
           "(Jukebox) §3 (random restarts); Łańcucki et al. 2020 (k-means initialization)",
    budgets={"smoke": "digits, K = 16, 3 steps each", "quick": "MNIST, K = 512, 300 steps each",
             "full": "MNIST, K = 512, 5000 steps each"},
    needs={"quick": (MNIST,), "full": (MNIST,)},
    supporting=({"rows": {"plain codebook loss": {"codes_used_fraction": 0.02},
                          "EMA + k-means + restarts": {"codes_used_fraction": 1.0}}},),
    contradicting=({"rows": {"plain codebook loss": {"codes_used_fraction": 0.02},
                             "EMA + k-means + restarts": {"codes_used_fraction": 0.6}}},
                   {"rows": {"plain codebook loss": {"codes_used_fraction": 0.95},
                             "EMA + k-means + restarts": {"codes_used_fraction": 1.0}}}),
))


# ----------------------------------------------------------------------------- the vq-vae, its prior, a VAE
# vq-prior-generates and vq-bound-vs-vae measure the same two runs; in one process (``--all``) they are
# trained once per (budget, seed, data folder). Models only: their run folders go with the first claim's.
_TRAINED: dict[tuple, tuple] = {}


def _vq_with_prior(budget: str, out: Path, seed: int, data_dir: str | None):
    from ...models.vqvae import train_prior

    key = (budget, seed, data_dir)
    if key not in _TRAINED:
        data, where = _data(budget, data_dir)
        steps = by_budget(budget, 3, 400, 5000)
        vq_dir = out / "runs" / "vq-vae"
        vq = train("vq-vae", data, vq_dir, seed, steps=steps, binarize="dynamic", **where)
        prior = train_prior(vq_dir, out=out / "runs" / "prior", steps=steps, seed=seed, figures="none",
                            progress=False).cpu()
        _TRAINED[key] = (vq, prior, steps)
    return _TRAINED[key]


def _grey_classifier(data: str, where: dict, seed: int, epochs: int):
    """An MLP classifier on the grey training images (the decoded samples are Bernoulli means)."""
    from ...api import build_config
    from ...generation import train_classifier
    from ...trainer import prepare_data

    grey = prepare_data(build_config("ae", data, binarize="none", **where))
    return train_classifier(grey.train.x, grey.train.y, epochs, seed), grey


def _prior_run(budget: str, out: Path, seed: int, data_dir: str | None = None) -> Measurement:
    from ...generation import sample_scores
    from ...models.vqvae import prior_bound, sample_with_prior

    data, where = _data(budget, data_dir)
    vq, prior, steps = _vq_with_prior(budget, out, seed, data_dir)
    n, classifier_epochs = by_budget(budget, (50, 10), (500, 3), (5000, 10))
    bound = prior_bound(vq, prior, run_splits(vq).test)
    classifier, grey = _grey_classifier(data, where, seed, classifier_epochs)
    torch.manual_seed(seed + 11)
    drawn = sample_with_prior(vq, prior, n)
    with torch.no_grad():
        uniform = vq.decode_codes(torch.randint(vq.num_codes, drawn["codes"].shape)).mean
    real = grey.test.x[:n]
    rows = {name: sample_scores(x, classifier, grey.train.x)
            for name, x in (("prior samples", drawn["x"]), ("uniform codes", uniform), ("real test images", real))}
    fig, axes = figure(3, size=(2.8, 3.1))
    for ax, (name, x) in zip(axes, (("PixelCNN prior", drawn["x"]), ("uniform codes", uniform), ("real", real))):
        key = {"PixelCNN prior": "prior samples", "uniform codes": "uniform codes", "real": "real test images"}[name]
        image_grid(ax, x[:36].numpy(), grey.image_shape, nrow=6,
                   title=f"{name}\nmax p {rows[key]['max_prob']:.2f}")
    return Measurement({"data": data, "steps": steps, "samples": n, "bound": bound, "rows": rows,
                        "maps_per_second": drawn["maps_per_second"]}, (save(fig, out, "vq-prior-samples.png"),))


register(Claim(
    id="vq-prior-generates",
    section=SECTION,
    claim="A PixelCNN prior over the codes makes the VQ-VAE a generator: it lowers the bound −log p(x|z_q) − "
          "log p(z_q) below the uniform-code bound, and its decoded samples look like digits to a classifier, "
          "where decoded uniform codes do not.",
    measurement="A vq-vae on binarized MNIST and a gated PixelCNN prior over its 7×7 code maps (aekit train prior "
                "--codes-from): the bound on the test split with the prior and with uniform codes (nats per "
                "image); 500 prior samples and 500 decoded uniform code maps scored by an MLP classifier trained "
                "on the real images (mean largest class probability).",
    rule="holds if the prior's bound < the uniform bound and the prior samples' mean largest class probability "
         "exceeds the uniform codes' by more than 0.1.",
    verdict=lambda m: (m["bound"]["bound_nats"] < m["bound"]["uniform_bound_nats"]
                       and m["rows"]["prior samples"]["max_prob"] > m["rows"]["uniform codes"]["max_prob"] + 0.1),
    headline=lambda m: ("bound {:.1f} vs uniform codes {:.1f} nats; max class prob prior {:.3f} vs uniform {:.3f} "
                        "(real {:.3f})".format(m["bound"]["bound_nats"], m["bound"]["uniform_bound_nats"],
                                               m["rows"]["prior samples"]["max_prob"],
                                               m["rows"]["uniform codes"]["max_prob"],
                                               m["rows"]["real test images"]["max_prob"])),
    run=_prior_run,
    anchor="van den Oord et al. 2017 (NeurIPS) §3.2 and §4 (samples decoded from a PixelCNN prior over the codes)",
    budgets={"smoke": "digits, 3 steps each, 50 samples",
             "quick": "MNIST, vq-vae 400 steps, prior 400 steps, classifier 3 epochs, 500 samples",
             "full": "MNIST, vq-vae 5000 steps, prior 5000 steps, classifier 10 epochs, 5000 samples"},
    needs={"quick": (MNIST,), "full": (MNIST,)},
    supporting=({"bound": {"bound_nats": 218.0, "uniform_bound_nats": 351.0},
                 "rows": {"prior samples": {"max_prob": 0.78}, "uniform codes": {"max_prob": 0.47}}},),
    contradicting=({"bound": {"bound_nats": 360.0, "uniform_bound_nats": 351.0},
                    "rows": {"prior samples": {"max_prob": 0.78}, "uniform codes": {"max_prob": 0.47}}},
                   {"bound": {"bound_nats": 218.0, "uniform_bound_nats": 351.0},
                    "rows": {"prior samples": {"max_prob": 0.52}, "uniform codes": {"max_prob": 0.47}}}),
))


# ----------------------------------------------------------------------------- vq-bound-vs-vae
def _bound_run(budget: str, out: Path, seed: int, data_dir: str | None = None) -> Measurement:
    from ...models.vqvae import prior_bound

    data, where = _data(budget, data_dir)
    vq, prior, steps = _vq_with_prior(budget, out, seed, data_dir)
    k, n = by_budget(budget, (10, 100), (100, 2000), (5000, 10000))
    test = run_splits(vq).test
    bound = prior_bound(vq, prior, test)
    vae = train("vae", data, out / "runs" / "vae", seed, steps=steps, binarize="dynamic", **where)
    vae_test = run_splits(vae).test
    vae_nll = _vae_nll(vae, vae_test, k, n)
    fig, ax = figure(size=(5.0, 3.6))
    bars(ax, ["VQ-VAE + PixelCNN prior\n(bound)", "VQ-VAE + uniform codes\n(bound)", f"VAE\n(IS, k = {k})"],
         [bound["bound_nats"], bound["uniform_bound_nats"], vae_nll], ylabel="−log p(x), nats per test image")
    ax.set_title(f"{data}, binarized, {steps} steps each", fontsize=9)
    return Measurement({"data": data, "steps": steps, "iw_samples": k, "vae_test_images": min(n, len(vae_test)),
                        "bound": bound, "vae_nll": vae_nll, "ratio": bound["bound_nats"] / vae_nll},
                       (save(fig, out, "vq-bound-vs-vae.png"),))


def _vae_nll(vae, test, k: int, n: int) -> float:
    """−log p(x) of the VAE by importance sampling with k samples, averaged over the first n test images."""
    x = test.x[:n]
    with torch.no_grad():
        return float(-torch.cat([vae.log_likelihood(x[s:s + 100], num_samples=k)
                                 for s in range(0, len(x), 100)]).mean())


register(Claim(
    id="vq-bound-vs-vae",
    section=SECTION,
    claim="The VQ-VAE's likelihood bound with a PixelCNN prior is comparable with a continuous VAE's "
          "importance-sampled −log p(x) (the paper: 4.67 vs 4.51 bits/dim on CIFAR-10, within 4%).",
    measurement="The bound of vq-prior-generates (same runs) beside −log p(x) of an MLP VAE trained for the same "
                "steps on the same binarized MNIST, by importance sampling with k samples on test images.",
    rule="holds if the VQ-VAE's bound ≤ 1.1 × the VAE's −log p(x).",
    verdict=lambda m: m["bound"]["bound_nats"] <= 1.1 * m["vae_nll"],
    headline=lambda m: "VQ-VAE bound {:.1f} vs VAE −log p(x) {:.1f} nats (ratio {:.2f})".format(
        m["bound"]["bound_nats"], m["vae_nll"], m["bound"]["bound_nats"] / m["vae_nll"]),
    run=_bound_run,
    anchor="van den Oord et al. 2017 (NeurIPS) §4.1 (CIFAR-10: VQ-VAE 4.67 bits/dim, VAE 4.51, VIMCO 5.14)",
    budgets={"smoke": "digits, 3 steps each, k = 10 on 100 images",
             "quick": "MNIST, 400 steps each, k = 100 on 2000 test images",
             "full": "MNIST, 5000 steps each, k = 5000 on the 10000 test images"},
    needs={"quick": (MNIST,), "full": (MNIST,)},
    supporting=({"bound": {"bound_nats": 95.0}, "vae_nll": 92.0},),
    contradicting=({"bound": {"bound_nats": 218.0}, "vae_nll": 123.0},),
))


# ----------------------------------------------------------------------------- pixelvae-collapse
def _collapse_run(budget: str, out: Path, seed: int, data_dir: str | None = None) -> Measurement:
    # 8×8 digits at every budget: MNIST with a PixelCNN decoder is a GPU budget even at "quick".
    steps = by_budget(budget, 3, 1500, 20000)
    pixel = dict(likelihood="pixelcnn", pixelcnn_layers=4, pixelcnn_channels=16)
    runs = {"Bernoulli decoder": {}, "PixelCNN decoder": pixel,
            "PixelCNN + free bits 0.5": {**pixel, "free_bits": 0.5},
            "PixelCNN + KL annealing": {**pixel, "kl_schedule": "linear", "warmup_steps": max(1, steps // 2)}}
    rows = {}
    for name, settings in runs.items():
        model = train("vae", "digits", out / "runs" / str(len(rows)), seed, steps=steps, batch_size=64,
                      binarize="dynamic", hidden_dims=(400,), latent_dim=8, **settings)
        r = evaluate(model, run_splits(model).test)
        rows[name] = {"kl": r["kl"], "active_units": r["active_units"], "reconstruction": r["reconstruction"],
                      "neg_elbo": r["neg_elbo"]}
    plain = rows["PixelCNN decoder"]
    fig, axes = figure(2, size=(4.4, 3.6))
    names = list(rows)
    short = ["Bernoulli", "PixelCNN", "+ free bits", "+ annealing"]
    bars(axes[0], short, [rows[n]["kl"] for n in names], ylabel="test KL(q(z|x) ‖ p(z)), nats")
    bars(axes[1], short, [rows[n]["active_units"] for n in names], ylabel="active units of 8", fmt="{:.0f}")
    return Measurement({"data": "digits", "steps": steps, "latent_dim": 8, "rows": rows,
                        "full_collapse": plain["active_units"] == 0 and plain["kl"] < 0.5},
                       (save(fig, out, "pixelvae-collapse.png"),))


def _collapse_holds(m: dict) -> bool:
    r = m["rows"]
    plain, bern = r["PixelCNN decoder"], r["Bernoulli decoder"]
    return (plain["active_units"] < bern["active_units"] and plain["kl"] < 0.5 * bern["kl"]
            and r["PixelCNN + free bits 0.5"]["active_units"] > plain["active_units"]
            and r["PixelCNN + KL annealing"]["active_units"] > plain["active_units"])


def _collapse_numbers(plain_units, plain_kl, fb_units=8, anneal_units=8) -> dict:
    return {"rows": {"Bernoulli decoder": {"active_units": 8, "kl": 5.0},
                     "PixelCNN decoder": {"active_units": plain_units, "kl": plain_kl},
                     "PixelCNN + free bits 0.5": {"active_units": fb_units, "kl": 4.3},
                     "PixelCNN + KL annealing": {"active_units": anneal_units, "kl": 4.1}}}


register(Claim(
    id="pixelvae-collapse",
    section=SECTION,
    claim="With a PixelCNN decoder a plain VAE leaves latents unused (less than half the factorized decoder's KL, "
          "fewer active units), and free bits or KL annealing bring them back.",
    measurement="Test KL and active units (Cov_x E_q[z_j] > 0.01) of four VAEs on binarized 8×8 digits, 64-400-8: "
                "Bernoulli decoder; PixelCNN decoder (4 gated layers × 16 channels); the same with free bits 0.5; "
                "with linear KL annealing over half the steps. full_collapse (no active unit, KL < 0.5 nats) is "
                "reported too.",
    rule="holds if the PixelCNN run has fewer active units than the Bernoulli run and less than half its KL, and "
         "both cures have more active units than the plain PixelCNN run.",
    verdict=_collapse_holds,
    headline=lambda m: ("KL Bernoulli {:.2f} → PixelCNN {:.2f} nats, active units {} → {}; free bits {}, "
                        "annealing {} of 8".format(m["rows"]["Bernoulli decoder"]["kl"],
                                                   m["rows"]["PixelCNN decoder"]["kl"],
                                                   m["rows"]["Bernoulli decoder"]["active_units"],
                                                   m["rows"]["PixelCNN decoder"]["active_units"],
                                                   m["rows"]["PixelCNN + free bits 0.5"]["active_units"],
                                                   m["rows"]["PixelCNN + KL annealing"]["active_units"])),
    run=_collapse_run,
    anchor="Bowman et al. 2016 (CoNLL) §3 (KL annealing); Chen et al. 2017 (ICLR, VLAE) §2; Gulrajani et al. 2017 "
           "(ICLR, PixelVAE)",
    budgets={"smoke": "digits, 3 steps each", "quick": "digits, 1500 steps of batch 64 each",
             "full": "digits, 20000 steps of batch 64 each"},
    supporting=(_collapse_numbers(5, 2.1),),
    contradicting=(_collapse_numbers(8, 2.1), _collapse_numbers(5, 4.0), _collapse_numbers(5, 2.1, fb_units=5),
                   _collapse_numbers(5, 2.1, anneal_units=4)),
))
