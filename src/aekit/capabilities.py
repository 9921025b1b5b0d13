"""What a trained model can do, declared once per model class.

Every model answers ``encode``, ``decode``, ``reconstruct`` and ``embed``. Beyond that, a model
class states its face in one line, ``capabilities = frozenset({...})``, drawn from the names below
(a property where it depends on the instance, e.g. whether an autoencoder corrupts its input),
and the CLI, evaluation, figures and applications ask :func:`has` / :func:`require` instead of
probing attributes. A missing capability is a user error naming the models that have it.

    class VAE(Autoencoder):
        capabilities = frozenset({SAMPLE, LOG_LIKELIHOOD, ELBO, POSTERIOR})
"""

from __future__ import annotations

from .errors import AekitError

SAMPLE = "sample"                  # sample(n, y): new data from a prior p(z) through the decoder
LOG_LIKELIHOOD = "log_likelihood"  # log_likelihood(x, y, num_samples): log p(x), exact or estimated
ELBO = "elbo"                      # evaluation_terms holds neg_elbo, reconstruction and kl (nats per example)
POSTERIOR = "posterior"            # encode(x, y) returns q(z|x) (or the exact p(z|x)) as a torch Distribution
FREE_ENERGY = "free_energy"        # free_energy(x): F(x) = −log Σ_h exp(−E(x, h)) (energy-based models)
SUBSPACE = "subspace"              # decoder_basis(): the (D, d) column space of a linear decoder
CODES = "codes"                    # codes(x): discrete code indices of x (vector-quantized models)
CORRUPTS_INPUT = "corrupts_input"  # .corruption: the model is trained to undo a corruption of its input
MISSING_DATA = "missing_data"      # trains and scores on data with NaN marking missing entries (they leave the likelihood)
CODE_PRIOR = "code_prior"          # sample_codes(n, y), log_prob(codes, y): a prior over a vq-vae's code maps

DESCRIPTIONS = {
    SAMPLE: "prior to sample from",
    LOG_LIKELIHOOD: "likelihood log p(x)",
    ELBO: "evidence lower bound",
    POSTERIOR: "posterior distribution q(z|x)",
    FREE_ENERGY: "free energy",
    SUBSPACE: "linear decoder subspace",
    CODES: "discrete codes",
    CORRUPTS_INPUT: "input corruption",
    MISSING_DATA: "support for missing entries (NaN)",
    CODE_PRIOR: "prior over code maps",
}


def capabilities_of(model) -> frozenset[str]:
    return frozenset(getattr(model, "capabilities", frozenset()))


def has(model, capability: str) -> bool:
    """Whether ``model`` declares ``capability`` (one of the names of this module)."""
    if capability not in DESCRIPTIONS:
        raise ValueError(f"unknown capability {capability!r}")
    return capability in capabilities_of(model)


def kind_of(model) -> str:
    config = getattr(model, "config", None)
    return config.model.kind if config is not None else type(model).__name__


def require(model, capability: str, purpose: str) -> None:
    """Raise a one-line AekitError unless ``model`` has ``capability``; ``purpose`` says what needed it."""
    if has(model, capability):
        return
    from .models import kinds_with

    others = ", ".join(kinds_with(capability)) or "none yet"
    raise AekitError(f"{kind_of(model)} has no {DESCRIPTIONS[capability]}, which {purpose} needs; "
                     f"models that have one: {others}")
