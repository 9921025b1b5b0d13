"""Restricted Boltzmann machines: the model, its training by contrastive divergence, and its likelihood.

The generative model is a bipartite Markov random field over visible units v (V of them) and hidden
units h (H of them) with energy

    E(v, h) = E_vis(v; b) + E_hid(h; c) - hᵀ W v,            W: (H, V), b: (V,), c: (H,)

and joint p(v, h) = exp(-E(v, h)) / Z.  Each layer is one of two unit types, each fixing its
self-energy E_u(s; a) for a layer of states s with bias a:

    bernoulli  s ∈ {0, 1}ⁿ   E_u(s; a) = -aᵀs                  (Hinton 2002)
    gaussian   s ∈ ℝⁿ        E_u(s; a) = ½‖s - a‖²             unit variance (Hinton 2010, §13.2)

Visible units may be "bernoulli" or "gaussian"; hidden units may be "bernoulli" or "linear" (a
Gaussian unit of unit variance, the top layer of the Hinton & Salakhutdinov 2006 deep autoencoder).
Gaussian units have unit variance, so real-valued data must be standardized (zero mean, unit
variance per dimension) before it is modelled with visible="gaussian".

Because the graph is bipartite both conditionals factorize (Hinton 2010, eqs. 7-8):

    p(h | v) = Π_j Bernoulli(σ(c_j + W_j v))      or  N(c + W v, I)     (linear)
    p(v | h) = Π_i Bernoulli(σ(b_i + W_iᵀ h))     or  N(b + Wᵀ h, I)    (gaussian)

and the free energy F(v) = -log Σ_h exp(-E(v, h)) (an integral for real-valued h) has a closed
form: F(v) = E_vis(v; b) - A_hid(c + W v; c), where A_u is the log-partition of one layer given its
total input x = a + (input from the other layer):

    bernoulli  A(x; a) = Σ_j softplus(x_j)
    gaussian   A(x; a) = ½‖x‖² - ½‖a‖² + (n/2) log 2π

so p(v) = exp(-F(v)) / Z.  Learning follows the log-likelihood gradient

    ∂ log p(v) / ∂W = ⟨h vᵀ⟩_data - ⟨h vᵀ⟩_model

whose model term contrastive divergence (CD-k, Hinton 2002) estimates with a k-step Gibbs chain
started at the data, and persistent contrastive divergence (PCD-k, Tieleman 2008) with chains kept
between updates.  The likelihood itself needs Z: exactly by enumerating the smaller binary layer
for small models, and by annealed importance sampling (Salakhutdinov & Murray 2008) otherwise.

`RBM` is the torch module; `RBMEstimator` is the scikit-learn face (BernoulliRBM's parameters,
``fit`` / ``transform`` / ``score_samples``), re-exported as ``aekit.RBM``.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import asdict, dataclass
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from aekit.capabilities import FREE_ENERGY, LOG_LIKELIHOOD, SAMPLE
from aekit.errors import AekitError, unknown_choice

LOG_2PI = math.log(2.0 * math.pi)
MAX_ENUMERATED_UNITS = 20  # 2^20 ≈ 10⁶ states: seconds on a CPU; beyond that use AIS
ENUMERATION_CHUNK = 2**14  # states scored at once during enumeration, bounds memory at (chunk, V)
BIAS_FROM_DATA_EPS = 1e-3  # clamps base rates so pixels that are never on get a finite bias


# ---------------------------------------------------------------------------------------------
# Unit types: each knows its self-energy, its layer log-partition, its conditional and how to
# set a bias from data.  A dict registry picks them; the model never branches on a unit name.
# ---------------------------------------------------------------------------------------------


class BernoulliUnits:
    """Binary units s ∈ {0, 1}ⁿ with self-energy E(s; a) = -aᵀs."""

    binary = True

    @staticmethod
    def self_energy(s: Tensor, bias: Tensor) -> Tensor:
        """-aᵀs per example, shape (B,)."""
        return -(s * bias).sum(-1)

    @staticmethod
    def log_partition(total_input: Tensor, bias: Tensor) -> Tensor:
        """log Σ_s exp(sᵀx) = Σ_j softplus(x_j) for total input x = a + (other layer); shape (B,)."""
        return F.softplus(total_input).sum(-1)

    @staticmethod
    def conditional(total_input: Tensor) -> Distribution:
        """Π_j Bernoulli(σ(x_j)) as one distribution over the layer (event dim = units)."""
        # validate_args=False: the logits are our own pre-activations, and validation would cost a
        # full pass over them.
        return Independent(Bernoulli(logits=total_input, validate_args=False), 1, validate_args=False)

    @staticmethod
    def mean(total_input: Tensor) -> Tensor:
        """E[s | x] = σ(x), the mean of `conditional`."""
        return torch.sigmoid(total_input)

    @staticmethod
    def sample_given_mean(mean: Tensor) -> Tensor:
        """A draw of `conditional` from its mean p: 1[u < p], u ~ U[0, 1).

        Gibbs chains sample through this rather than ``conditional(x).sample()``: on CPU
        ``torch.bernoulli`` is about three times slower than one uniform draw and an in-place
        compare, and a distribution object per half-step costs more than the step on small layers.
        """
        return torch.rand_like(mean).lt_(mean)

    @staticmethod
    def bias_from_data(x: Tensor) -> Tensor:
        """The bias making the unconnected layer match the data's base rates: log p/(1-p) (Hinton 2010, §8)."""
        p = x.mean(0).clamp(BIAS_FROM_DATA_EPS, 1.0 - BIAS_FROM_DATA_EPS)
        return torch.logit(p)

    @staticmethod
    def random_states(num: int, size: int, like: Tensor) -> Tensor:
        """Uniformly random binary states, shape (num, size)."""
        return torch.bernoulli(like.new_full((num, size), 0.5))


class GaussianUnits:
    """Real units s ∈ ℝⁿ of unit variance with self-energy E(s; a) = ½‖s - a‖²."""

    binary = False

    @staticmethod
    def self_energy(s: Tensor, bias: Tensor) -> Tensor:
        """½‖s - a‖² per example, shape (B,)."""
        return 0.5 * (s - bias).pow(2).sum(-1)

    @staticmethod
    def log_partition(total_input: Tensor, bias: Tensor) -> Tensor:
        """log ∫ exp(-½‖s - a‖² + sᵀu) ds = ½‖x‖² - ½‖a‖² + (n/2) log 2π, x = a + u; shape (B,).

        Completing the square: -½‖s - a‖² + sᵀu = -½‖s - x‖² + ½‖x‖² - ½‖a‖².
        """
        n = total_input.shape[-1]
        return 0.5 * total_input.pow(2).sum(-1) - 0.5 * bias.pow(2).sum(-1) + 0.5 * n * LOG_2PI

    @staticmethod
    def conditional(total_input: Tensor) -> Distribution:
        """Π_j N(x_j, 1) as one distribution over the layer (event dim = units)."""
        scale = total_input.new_ones(())
        return Independent(Normal(total_input, scale, validate_args=False), 1, validate_args=False)

    @staticmethod
    def mean(total_input: Tensor) -> Tensor:
        """E[s | x] = x, the mean of `conditional`."""
        return total_input

    @staticmethod
    def sample_given_mean(mean: Tensor) -> Tensor:
        """A draw of `conditional` from its mean: mean + ε, ε ~ N(0, I)."""
        return mean + torch.randn_like(mean)

    @staticmethod
    def bias_from_data(x: Tensor) -> Tensor:
        """The data mean: the maximum-likelihood bias of unconnected unit-variance units."""
        return x.mean(0)

    @staticmethod
    def random_states(num: int, size: int, like: Tensor) -> Tensor:
        """Standard normal states, shape (num, size)."""
        return torch.randn(num, size, dtype=like.dtype, device=like.device)


VISIBLE_UNITS = {"bernoulli": BernoulliUnits(), "gaussian": GaussianUnits()}
HIDDEN_UNITS = {"bernoulli": BernoulliUnits(), "linear": GaussianUnits()}


@dataclass(frozen=True)
class RBMConfig:
    """Everything needed to rebuild an `RBM` (its parameters live in the state dict)."""

    num_visible: int  # V, the data dimension
    num_hidden: int  # H, the number of feature detectors
    visible: str = "bernoulli"  # "bernoulli" for data in [0, 1]; "gaussian" for standardized data
    hidden: str = "bernoulli"  # "bernoulli"; "linear" (unit-variance Gaussian) for a code layer

    def __post_init__(self):
        for name in ("num_visible", "num_hidden"):
            value = getattr(self, name)
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
                raise AekitError(f"{name} must be an integer >= 1, got {value!r}")
        if self.visible not in VISIBLE_UNITS:
            raise unknown_choice("visible unit type", self.visible, VISIBLE_UNITS)
        if self.hidden not in HIDDEN_UNITS:
            raise unknown_choice("hidden unit type", self.hidden, HIDDEN_UNITS)


@dataclass(frozen=True)
class AISEstimate:
    """An annealed-importance-sampling estimate of log Z (Salakhutdinov & Murray 2008).

    ``log_z`` is log Ẑ = log Z_A + log mean(w); ``lower`` / ``upper`` are log(Ẑ ∓ 3σ̂) with σ̂ the
    standard error of Ẑ over chains (``lower`` is -inf when Ẑ - 3σ̂ ≤ 0); ``log_weights`` holds
    log w per chain, shape (num_chains,).  Ẑ is unbiased, so log Ẑ is biased low (Jensen).
    """

    log_z: float
    lower: float
    upper: float
    log_weights: Tensor


def ais_betas(num: int) -> Tensor:
    """Inverse temperatures 0 = β_0 < … < β_K = 1 (K ≈ num) spaced as in Salakhutdinov & Murray 2008.

    Their 14 500 temperatures step by 10⁻³ on [0, 0.5], 10⁻⁴ on [0.5, 0.9] and 10⁻⁵ on [0.9, 1]:
    the intermediate distributions change fastest near β = 1, where the weights take their size.
    ``num`` keeps those proportions; returns a float64 tensor of K + 1 values.
    """
    if not isinstance(num, Integral) or isinstance(num, bool) or num < 1:
        raise AekitError(f"betas must be a number of temperatures >= 1 or a 1-D tensor, got {num!r}")
    n1 = max(1, round(num * 500 / 14500))
    n2 = max(1, round(num * 4000 / 14500))
    n3 = max(1, num - n1 - n2)
    return torch.cat(
        [
            torch.linspace(0.0, 0.5, n1 + 1, dtype=torch.float64)[:-1],
            torch.linspace(0.5, 0.9, n2 + 1, dtype=torch.float64)[:-1],
            torch.linspace(0.9, 1.0, n3 + 1, dtype=torch.float64),
        ]
    )


def _binary_states(start: int, stop: int, n: int, like: Tensor) -> Tensor:
    """All n-bit states with integer codes in [start, stop) as rows, shape (stop - start, n)."""
    codes = torch.arange(start, stop, device=like.device)
    bits = torch.arange(n, device=like.device)
    return ((codes[:, None] >> bits) & 1).to(like.dtype)  # (count, n)


class RBM(nn.Module):
    """A restricted Boltzmann machine (see the module docstring for the energy and conditionals).

    Parameters: ``weight`` W of shape (H, V) — row j holds hidden unit j's receptive field, the
    layout of ``torch.nn.Linear(V, H).weight`` and of scikit-learn's ``components_`` —,
    ``visible_bias`` b (V,) and ``hidden_bias`` c (H,).  W starts as 0.01·N(0, 1) and both biases
    at zero (Hinton 2010, §8); call `init_visible_bias` to start b at the data's base rates.

    Training state, kept as non-persistent buffers so that the state dict holds only W, b, c:
    ``persistent_chain`` (the PCD fantasy particles' hidden states, (B, H)) and one momentum velocity per
    parameter.  Nothing changes except in `cd_step`; `forward` is pure.
    """

    def __init__(
        self,
        num_visible: int,
        num_hidden: int,
        visible: str = "bernoulli",
        hidden: str = "bernoulli",
        *,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.rbm_config = RBMConfig(num_visible, num_hidden, visible, hidden)
        self.visible_units = VISIBLE_UNITS[visible]
        self.hidden_units = HIDDEN_UNITS[hidden]
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(0.01 * torch.randn(num_hidden, num_visible, **factory))  # (H, V)
        self.visible_bias = nn.Parameter(torch.zeros(num_visible, **factory))  # (V,)
        self.hidden_bias = nn.Parameter(torch.zeros(num_hidden, **factory))  # (H,)
        self.register_buffer("persistent_chain", torch.zeros(0, num_hidden, **factory), persistent=False)
        for name, param in self._named_members_for_update():
            self.register_buffer(f"{name}_velocity", torch.zeros_like(param), persistent=False)

    @classmethod
    def from_config(cls, config: RBMConfig | dict, **factory) -> "RBM":
        """Rebuild an untrained RBM from `RBMConfig` or its ``asdict`` form (e.g. a config.json)."""
        config = config if isinstance(config, RBMConfig) else RBMConfig(**config)
        return cls(**asdict(config), **factory)

    @property
    def num_visible(self) -> int:
        return self.rbm_config.num_visible

    @property
    def num_hidden(self) -> int:
        return self.rbm_config.num_hidden

    def extra_repr(self) -> str:
        c = self.rbm_config
        return f"num_visible={c.num_visible}, num_hidden={c.num_hidden}, visible={c.visible!r}, hidden={c.hidden!r}"

    def _named_members_for_update(self):
        return (("weight", self.weight), ("visible_bias", self.visible_bias), ("hidden_bias", self.hidden_bias))

    @torch.no_grad()
    def init_visible_bias(self, x: Tensor) -> "RBM":
        """Set b to the data's base rates: log p_i/(1 - p_i) for Bernoulli units (Hinton 2010, §8; p_i
        clamped to [1e-3, 1 - 1e-3]), the data mean for Gaussian units.  x: (N, V).  Returns self."""
        self.visible_bias.copy_(self.visible_units.bias_from_data(x.to(self.visible_bias)))
        return self

    # ----- energies and conditionals ---------------------------------------------------------

    def hidden_input(self, v: Tensor) -> Tensor:
        """Total input to the hidden units, c + W v, shape (B, H)."""
        return torch.addmm(self.hidden_bias, v, self.weight.t())

    def visible_input(self, h: Tensor) -> Tensor:
        """Total input to the visible units, b + Wᵀ h, shape (B, V)."""
        return torch.addmm(self.visible_bias, h, self.weight)

    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """E(v, h) = E_vis(v; b) + E_hid(h; c) - hᵀ W v per example; v: (B, V), h: (B, H) -> (B,)."""
        interaction = (h * (v @ self.weight.t())).sum(-1)
        return (
            self.visible_units.self_energy(v, self.visible_bias)
            + self.hidden_units.self_energy(h, self.hidden_bias)
            - interaction
        )

    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -log Σ_h exp(-E(v, h)) = E_vis(v; b) - A_hid(c + W v; c), per example, shape (B,).

        Bernoulli hidden: F(v) = E_vis(v; b) - Σ_j log(1 + exp(c_j + W_j v)).
        Linear hidden (∫ over h ∈ ℝᴴ): F(v) = E_vis(v; b) - ½‖c + W v‖² + ½‖c‖² - (H/2) log 2π.
        """
        return self._free_energy(v, self.hidden_input(v))

    def _free_energy(self, v: Tensor, hidden_input: Tensor) -> Tensor:
        # Split from free_energy so training can reuse the hidden input it has already computed.
        return self.visible_units.self_energy(v, self.visible_bias) - self.hidden_units.log_partition(
            hidden_input, self.hidden_bias
        )

    def hidden_free_energy(self, h: Tensor) -> Tensor:
        """F(h) = -log Σ_v exp(-E(v, h)) = E_hid(h; c) - A_vis(b + Wᵀ h; b), shape (B,): v summed out."""
        return self.hidden_units.self_energy(h, self.hidden_bias) - self.visible_units.log_partition(
            self.visible_input(h), self.visible_bias
        )

    def hidden_given_visible(self, v: Tensor) -> Distribution:
        """p(h | v): Π_j Bernoulli(logits = c_j + W_j v), or N(c + W v, I) for linear hidden units."""
        return self.hidden_units.conditional(self.hidden_input(v))

    def visible_given_hidden(self, h: Tensor) -> Distribution:
        """p(v | h): Π_i Bernoulli(logits = b_i + W_iᵀ h), or N(b + Wᵀ h, I) for Gaussian visible units."""
        return self.visible_units.conditional(self.visible_input(h))

    # The shared model face (DESIGN.md): encode is the recognition posterior, decode the likelihood.
    def encode(self, v: Tensor) -> Distribution:
        """q(h | v) = p(h | v), exact for an RBM."""
        return self.hidden_given_visible(v)

    def decode(self, h: Tensor) -> Distribution:
        """p(v | h)."""
        return self.visible_given_hidden(h)

    def forward(self, v: Tensor) -> Tensor:
        """E[h | v], shape (B, H): the deterministic up-pass used when RBMs are stacked or unrolled."""
        return self.hidden_given_visible(v).mean

    @torch.no_grad()
    def reconstruct(self, v: Tensor) -> Tensor:
        """Mean-field reconstruction E[v | h = E[h | v]], shape (B, V)."""
        return self.visible_given_hidden(self.forward(v)).mean

    # ----- sampling -------------------------------------------------------------------------

    @torch.no_grad()
    def gibbs(self, v: Tensor, k: int = 1) -> Tensor:
        """Run k steps of block Gibbs sampling h ~ p(h | v), v ~ p(v | h); returns the visible state (B, V)."""
        vis, hid = self.visible_units, self.hidden_units
        for _ in range(k):
            h = hid.sample_given_mean(hid.mean(self.hidden_input(v)))  # h ~ p(h | v)
            v = vis.sample_given_mean(vis.mean(self.visible_input(h)))  # v ~ p(v | h)
        return v

    @torch.no_grad()
    def sample(self, n: int, k: int = 1000, init: Tensor | None = None) -> Tensor:
        """n visible samples after k Gibbs steps from ``init`` (default: uniform random bits for
        Bernoulli units, N(0, I) for Gaussian units); shape (n, V).  Chains are independent."""
        if init is None:
            init = self.visible_units.random_states(n, self.num_visible, self.weight)
        return self.gibbs(init, k)

    # ----- contrastive divergence ---------------------------------------------------------------

    @torch.no_grad()
    def negative_phase(self, v: Tensor, k: int = 1, persistent: bool = False) -> Tensor:
        """The model samples v_model (B, V) that CD-k / PCD-k contrast with the data v (B, V).

        CD-k (Hinton 2002): k Gibbs steps v -> h -> v from the data.  PCD-k (Tieleman 2008): k steps
        from the fantasy particles in ``persistent_chain``, held as hidden states h (B, H) sampled
        from p(h | v_model) at the end of the previous update (as scikit-learn's BernoulliRBM does,
        which saves the up-pass a visible-state chain would repeat); they start as h_0 ~ p(h | v) of
        the data batch whenever their number differs from B, so the first PCD update is a CD update.
        """
        h_data = self.hidden_units.mean(self.hidden_input(v))
        return self._negative_phase(v, h_data, k, persistent)[0]

    def _negative_phase(
        self, v: Tensor, h_data: Tensor, k: int, persistent: bool, reconstruct: bool = True
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Returns (v_model, c + W v_model, E[v | h_0]) with h_0 ~ p(h | v) of the data.

        Takes E[h | v] of the data and hands back the model's hidden input, so that CD-k and PCD-k
        both cost 2k + 3 matrix products; the reconstruction E[v | h_0] reported by the statistics
        costs PCD one more, skipped (None) when ``reconstruct`` is False."""
        if not isinstance(k, Integral) or k < 1:
            raise AekitError(f"k (Gibbs steps per update) must be an integer >= 1, got {k!r}")
        vis, hid = self.visible_units, self.hidden_units
        restart = persistent and self.persistent_chain.shape != h_data.shape
        reconstruction = None
        if not persistent or restart or reconstruct:
            h0 = hid.sample_given_mean(h_data)  # (B, H)
        if not persistent or reconstruct:
            reconstruction = vis.mean(self.visible_input(h0))  # (B, V)
        if persistent:
            h = h0 if restart else self.persistent_chain
            v_mean = reconstruction if restart and reconstruction is not None else vis.mean(self.visible_input(h))
        else:
            v_mean = reconstruction  # the chain from the data starts with h_0: one product saved
        v_model = self.gibbs(vis.sample_given_mean(v_mean), k - 1)  # (B, V)
        x_model = self.hidden_input(v_model)  # (B, H)
        if persistent:
            self.persistent_chain = hid.sample_given_mean(hid.mean(x_model))
        return v_model, x_model, reconstruction

    @torch.no_grad()
    def cd_gradient(self, v: Tensor, v_model: Tensor) -> dict[str, Tensor]:
        """The contrastive-divergence estimate of ∂ log p / ∂θ (ascent direction), batch means:

            ΔW = ⟨E[h|v] vᵀ⟩_data - ⟨E[h|v] vᵀ⟩_model        (H, V)
            Δb = ⟨v⟩_data - ⟨v⟩_model                          (V,)
            Δc = ⟨E[h|v]⟩_data - ⟨E[h|v]⟩_model                (H,)

        with hidden probabilities (conditional means), not samples, in both statistics, as the
        Practical Guide (Hinton 2010, §3) recommends: it removes sampling noise at no cost.
        Equals minus the gradient of ``cd_surrogate_loss(v, v_model).mean()``.
        """
        mean = self.hidden_units.mean
        return self._cd_gradient(v, mean(self.hidden_input(v)), v_model, mean(self.hidden_input(v_model)))

    @staticmethod
    def _cd_gradient(v: Tensor, h_data: Tensor, v_model: Tensor, h_model: Tensor) -> dict[str, Tensor]:
        inv_b = 1.0 / v.shape[0]
        weight = torch.addmm(h_data.t() @ v, h_model.t(), v_model, beta=inv_b, alpha=-inv_b)  # (H, V)
        return {
            "weight": weight,
            "visible_bias": (v - v_model).mean(0),
            "hidden_bias": (h_data - h_model).mean(0),
        }

    def cd_surrogate_loss(self, v: Tensor, v_model: Tensor) -> Tensor:
        """F(v) - F(sg[v_model]) per example, shape (B,) (sg = stop gradient).

        Since ∂F(v)/∂θ = -E_{p(h|v)}[∂(-E(v, h))/∂θ], the autograd gradient of this loss's batch mean is
        exactly minus `cd_gradient(v, v_model)` (for every unit type), so a generic optimizer that
        minimizes it performs CD/PCD.  Its value is not a likelihood; monitor `free_energy` instead.
        """
        return self.free_energy(v) - self.free_energy(v_model.detach())

    @torch.no_grad()
    def cd_step(
        self,
        v: Tensor,
        k: int = 1,
        *,
        persistent: bool = False,
        learning_rate: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        monitor: bool = True,
    ) -> dict[str, Tensor]:
        """One CD-k (or PCD-k with ``persistent=True``) update on the batch v (B, V).

        With g the `cd_gradient` (batch means) the update is (Hinton 2010, §9-10)

            Δθ ← momentum · Δθ + learning_rate · (g - weight_decay · W [weights only])
            θ  ← θ + Δθ

        L2 decay is applied to W only, not to the biases.  The learning rate multiplies batch means,
        which is scikit-learn's BernoulliRBM convention (its lr / batch_size times sums); with
        momentum μ the effective step is learning_rate / (1 - μ).  Hyperparameters are per call so
        schedules (e.g. momentum 0.5 then 0.9) are the caller's loop.

        Returns detached scalars (no host sync): ``reconstruction_error`` = mean over the batch of
        ‖v - E[v | h_0]‖², h_0 ~ p(h|v) (Hinton 2010, §5: easy to watch, a poor measure of the
        likelihood), and ``free_energy_gap`` = mean F(v) - mean F(v_model), the value of
        `cd_surrogate_loss` whose gradient this update follows (negative: the data lie lower in free
        energy than the model's samples).  The overfitting monitor of Hinton 2010, §6 compares
        `free_energy` of training and held-out data instead.  ``monitor=False`` returns {} and saves
        their cost: two softplus passes, and under PCD one matrix product.
        """
        hid = self.hidden_units
        x_data = self.hidden_input(v)  # (B, H), shared by the chain start, the gradient and F(v)
        h_data = hid.mean(x_data)
        v_model, x_model, reconstruction = self._negative_phase(v, h_data, k, persistent, monitor)
        grads = self._cd_gradient(v, h_data, v_model, hid.mean(x_model))
        for name, param in self._named_members_for_update():
            step = grads[name]
            if weight_decay and name == "weight":
                step = step.add(param, alpha=-weight_decay)
            if momentum:
                velocity = getattr(self, f"{name}_velocity")
                step = velocity.mul_(momentum).add_(step, alpha=learning_rate)
                param.add_(step)
            else:
                param.add_(step, alpha=learning_rate)
        if not monitor:
            return {}
        return {
            "reconstruction_error": (v - reconstruction).pow(2).sum(-1).mean(),
            "free_energy_gap": self._free_energy(v, x_data).mean() - self._free_energy(v_model, x_model).mean(),
        }

    # ----- likelihood ---------------------------------------------------------------------------

    @torch.no_grad()
    def pseudo_likelihood(self, v: Tensor, flip_index: Tensor | None = None) -> Tensor:
        """Stochastic log pseudo-likelihood per example, shape (B,), as scikit-learn's BernoulliRBM:

            PL(v) ≈ V · log σ(F(ṽ) - F(v)),   ṽ = v with coordinate i flipped (v_i -> 1 - v_i)

        one uniformly random i per example (Besag's Σ_i log p(v_i | v_-i) with a one-term estimate of
        the sum).  ``flip_index`` (B,) fixes i, e.g. to reproduce scikit-learn's draw
        ``RandomState(random_state).randint(0, V, B)``.  Binary visible units only.
        """
        if not self.visible_units.binary:
            raise AekitError("pseudo_likelihood flips binary visible units; use visible='bernoulli' or log_prob")
        n, dim = v.shape
        if flip_index is None:
            flip_index = torch.randint(0, dim, (n,), device=v.device)
        rows = torch.arange(n, device=v.device)
        flipped = v.clone()
        flipped[rows, flip_index] = 1.0 - flipped[rows, flip_index]
        return dim * F.logsigmoid(self.free_energy(flipped) - self.free_energy(v))

    @torch.no_grad()
    def log_partition(self, over: str = "auto") -> Tensor:
        """Exact log Z, computed in float64 (0-dim tensor).

        ``over="visible"``: log Σ_v exp(-F(v)) over the 2^V binary visible states;
        ``over="hidden"``: log Σ_h exp(-F(h)) over the 2^H binary hidden states (v summed or
        integrated out in closed form); ``"auto"`` enumerates the smaller binary layer.  Both layers
        real (gaussian visible, linear hidden): the joint is Gaussian with precision P = [[I, -Wᵀ],
        [-W, I]] and log Z = ((V+H)/2) log 2π - ½ log det P + ½ mᵀP⁻¹m - ½‖m‖², m = (b, c); it is
        finite only while ‖W‖₂ < 1.  Enumeration is limited to 20 units.
        """
        sides = {"visible": self.visible_units.binary, "hidden": self.hidden_units.binary}
        if over not in ("auto", *sides):
            raise unknown_choice("layer to enumerate", over, ("auto", *sides))
        model = self._float64_copy()
        if over == "auto":
            sizes = {"visible": self.num_visible, "hidden": self.num_hidden}
            binary = [side for side in sides if sides[side]]
            if not binary:
                return model._gaussian_log_partition()
            over = min(binary, key=sizes.__getitem__)
        if not sides[over]:
            raise AekitError(f"cannot enumerate the {over} layer: its units are not binary; use over='auto'")
        n = self.num_visible if over == "visible" else self.num_hidden
        if n > MAX_ENUMERATED_UNITS:
            raise AekitError(
                f"exact log_partition enumerates 2^{n} {over} states (limit 2^{MAX_ENUMERATED_UNITS}); "
                "use ais_log_partition() for models this large"
            )
        free_energy = model.free_energy if over == "visible" else model.hidden_free_energy
        chunks = []
        for start in range(0, 2**n, ENUMERATION_CHUNK):
            states = _binary_states(start, min(start + ENUMERATION_CHUNK, 2**n), n, model.weight)  # (chunk, n)
            chunks.append(torch.logsumexp(-free_energy(states), 0))
        return torch.logsumexp(torch.stack(chunks), 0)

    def _float64_copy(self) -> "RBM":
        # Enumeration adds up to 2^20 terms; float64 keeps log Z exact to well below the AIS error.
        # (A deep copy, not a new RBM: construction would draw random weights from the global RNG.)
        return copy.deepcopy(self).to(torch.float64)

    def _gaussian_log_partition(self) -> Tensor:
        v_dim, h_dim = self.num_visible, self.num_hidden
        w = self.weight
        eye_v = torch.eye(v_dim, dtype=w.dtype, device=w.device)
        eye_h = torch.eye(h_dim, dtype=w.dtype, device=w.device)
        precision = torch.cat([torch.cat([eye_v, -w.t()], 1), torch.cat([-w, eye_h], 1)], 0)  # (V+H, V+H)
        chol, info = torch.linalg.cholesky_ex(precision)
        if info.item() != 0:
            raise AekitError(
                "this gaussian-visible, linear-hidden RBM has no finite partition function "
                "(largest singular value of weight >= 1); shrink the weights or use a binary layer"
            )
        m = torch.cat([self.visible_bias, self.hidden_bias])  # (V+H,)
        solved = torch.cholesky_solve(m[:, None], chol)[:, 0]  # P⁻¹ m
        log_det = 2.0 * chol.diagonal().log().sum()
        return 0.5 * (v_dim + h_dim) * LOG_2PI - 0.5 * log_det + 0.5 * (m @ solved) - 0.5 * (m @ m)

    @torch.no_grad()
    def log_prob(self, v: Tensor, log_z: Tensor | float | None = None) -> Tensor:
        """log p(v) = -F(v) - log Z per example, shape (B,) (a log density for Gaussian visible units).

        Uses the exact `log_partition` unless ``log_z`` is given (e.g. from `ais_log_partition`)."""
        if log_z is None:
            log_z = self.log_partition()
        return -self.free_energy(v) - torch.as_tensor(log_z, dtype=v.dtype, device=v.device)

    @torch.no_grad()
    def ais_log_partition(
        self,
        num_chains: int = 100,
        betas: int | Tensor = 10_000,
        data: Tensor | None = None,
    ) -> AISEstimate:
        """Annealed importance sampling estimate of log Z (Salakhutdinov & Murray 2008).

        Anneals from a base-rate model A (W = 0, c = 0, visible bias b_A = `bias_from_data(data)`, or
        0 without data) to this model B through the RBMs θ_β = (βW, (1-β) b_A + β b, βc), whose
        unnormalized marginals p*_β(v) = exp(-F_β(v)) equal A at β = 0 and B at β = 1.  For
        Bernoulli hidden units this is their path (β scales the hidden units' energy); for linear
        hidden units it keeps p_β(h | v) proper.  Each of ``num_chains`` chains (run as one batch)
        starts from an exact sample v_1 ~ p_A and accumulates

            log w = Σ_{k=1}^{K} [F_{β_{k-1}}(v_k) - F_{β_k}(v_k)],   v_{k+1} ~ T_k(v_k)

        where T_k is one Gibbs sweep at β_k.  Then Ẑ_B = Z_A · mean(w), computed with logsumexp, and
        log Z_A = A_vis(b_A; b_A) + A_hid(0; 0) in closed form (e.g. Σ_i softplus(b_A,i) + H log 2
        for Bernoulli units), because A's layers do not interact.  ``betas``: a number of
        temperatures for `ais_betas` (10 000 for reported figures) or a float tensor from 0 to 1.
        The chains run in the model's dtype; the weights accumulate in float64 so that ten
        thousand small increments do not lose precision.
        """
        if not isinstance(num_chains, Integral) or num_chains < 1:
            raise AekitError(f"num_chains must be an integer >= 1, got {num_chains!r}")
        betas = betas if isinstance(betas, Tensor) else ais_betas(betas)
        betas = betas.to(torch.float64)
        if betas.dim() != 1 or betas.numel() < 2 or betas[0] != 0 or betas[-1] != 1 or (betas.diff() < 0).any():
            raise AekitError("betas must increase from 0 to 1 (a 1-D tensor), or be a number of temperatures")
        vis, hid = self.visible_units, self.hidden_units
        w, c = self.weight, self.hidden_bias
        b_target = self.visible_bias
        if data is None:
            b_base = torch.zeros_like(b_target)
        else:
            b_base = vis.bias_from_data(data.to(b_target))
        b_base64, b_target64, c64 = b_base.double(), b_target.double(), c.double()
        zeros_h = torch.zeros_like(c64)
        log_z_base = vis.log_partition(b_base64, b_base64) + hid.log_partition(zeros_h, zeros_h)

        def free_energy(v64: Tensor, x64: Tensor, beta: float) -> Tensor:
            # F_β(v) for θ_β: hidden total input β(c + W v) and hidden bias βc.
            b_beta = (1.0 - beta) * b_base64 + beta * b_target64
            return vis.self_energy(v64, b_beta) - hid.log_partition(beta * x64, beta * c64)

        v = vis.sample_given_mean(vis.mean(b_base.expand(num_chains, -1)))  # (M, V): exact samples of p_A
        log_w = torch.zeros(num_chains, dtype=torch.float64, device=v.device)
        schedule = betas.tolist()
        for k in range(1, len(schedule)):
            beta_prev, beta = schedule[k - 1], schedule[k]
            x = torch.addmm(c, v, w.t())  # (M, H), c + W v at β = 1; scaled below
            v64, x64 = v.double(), x.double()
            log_w += free_energy(v64, x64, beta_prev) - free_energy(v64, x64, beta)
            if k == len(schedule) - 1:
                break  # no transition after the last weight
            h = hid.sample_given_mean(hid.mean(beta * x))  # h ~ p_β(h | v)
            b_beta = (1.0 - beta) * b_base + beta * b_target
            v = vis.sample_given_mean(vis.mean(torch.addmm(b_beta, h, w, alpha=beta)))  # v ~ p_β(v | h)

        log_mean_w = torch.logsumexp(log_w, 0) - math.log(num_chains)
        # ±3 standard errors of mean(w), in the scale of the largest weight to stay finite.
        shift = log_w.max()
        scaled = (log_w - shift).exp()
        std_error = scaled.std(correction=0) / math.sqrt(num_chains) if num_chains > 1 else scaled.new_zeros(())
        mean = scaled.mean()
        base = (log_z_base + shift).item()
        lower = (mean - 3 * std_error).log().item() + base if mean > 3 * std_error else -math.inf
        return AISEstimate(
            log_z=(log_z_base + log_mean_w).item(),
            lower=lower,
            upper=(mean + 3 * std_error).log().item() + base,
            log_weights=log_w,
        )

    @torch.no_grad()
    def estimate_log_likelihood(
        self, v: Tensor, log_z: float | AISEstimate | None = None, data: Tensor | None = None, **ais_kwargs
    ) -> Tensor:
        """log p(v) ≈ -F(v) - log Ẑ per example, shape (B,).

        ``log_z`` reuses an estimate (run AIS once, evaluate many sets); otherwise AIS runs here with
        ``ais_kwargs``, its base rates from ``data`` (the training set; v itself when omitted)."""
        if log_z is None:
            log_z = self.ais_log_partition(data=v if data is None else data, **ais_kwargs)
        if isinstance(log_z, AISEstimate):
            log_z = log_z.log_z
        return -self.free_energy(v) - float(log_z)


# ---------------------------------------------------------------------------------------------
# scikit-learn face
# ---------------------------------------------------------------------------------------------


def _check_int(name, value, low):
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
        raise AekitError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_real(name, value, low, high, *, low_open=False, high_open=False):
    bad = not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value)
    if not bad:
        bad = value < low or value > high or (low_open and value == low) or (high_open and value == high)
    if bad:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise AekitError(f"{name} must be a number in {left}{low}, {high}{right}, got {value!r}")


class RBMEstimator(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """A restricted Boltzmann machine with scikit-learn's ``BernoulliRBM`` interface (``aekit.RBM``).

    Trains an `RBM` by CD-k (``persistent=False``) or PCD-k (``persistent=True``; scikit-learn's
    BernoulliRBM is PCD-1) on shuffled mini-batches of ``batch_size`` drawn by index from the data
    held as one tensor on ``device``.  Every batch is full: an epoch covers each example at least once,
    the last batch topped up with examples from the start of that epoch's permutation (PCD chains
    stay the same size).  Differences from BernoulliRBM, all from the Practical Guide (Hinton 2010):
    the visible biases start at the data's base rates, the hidden statistics use probabilities, and
    ``momentum`` / ``weight_decay`` are available.

    Parameters: n_components (H), learning_rate (on batch means), batch_size, n_iter (epochs),
    random_state (int, RandomState or None; seeds torch inside fit without touching its global
    stream), verbose (tqdm progress bar with the reconstruction error), k (Gibbs steps per update),
    persistent, momentum in [0, 1), weight_decay (L2 on the weights), visible ("bernoulli" for data
    in [0, 1], "gaussian" for standardized data), device (None: CUDA when available, else CPU).

    Learned attributes: ``components_`` (H, V), ``intercept_hidden_`` (H,), ``intercept_visible_``
    (V,), ``n_features_in_``, ``module_`` (the `RBM`).  Methods return numpy arrays, or tensors when
    given tensors.
    """

    def __init__(
        self,
        n_components=256,
        *,
        learning_rate=0.1,
        batch_size=10,
        n_iter=10,
        random_state=None,
        verbose=0,
        k=1,
        persistent=False,
        momentum=0.0,
        weight_decay=0.0,
        visible="bernoulli",
        device=None,
    ):
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.random_state = random_state
        self.verbose = verbose
        self.k = k
        self.persistent = persistent
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.visible = visible
        self.device = device

    # ----- validation ---------------------------------------------------------------------------

    def _check_params(self):
        _check_int("n_components", self.n_components, 1)
        _check_real("learning_rate", self.learning_rate, 0.0, math.inf, low_open=True, high_open=True)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("n_iter", self.n_iter, 0)
        _check_int("k", self.k, 1)
        _check_real("momentum", self.momentum, 0.0, 1.0, high_open=True)
        _check_real("weight_decay", self.weight_decay, 0.0, math.inf, high_open=True)
        if not isinstance(self.persistent, (bool, np.bool_)):
            raise AekitError(f"persistent must be True or False, got {self.persistent!r}")
        if self.visible not in VISIBLE_UNITS:
            raise unknown_choice("visible unit type", self.visible, VISIBLE_UNITS)

    def _device(self) -> torch.device:
        if self.device is None:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            message = f"device {self.device!r} is not a torch device ('cpu', 'cuda', 'cuda:1'): {error}"
            raise AekitError(message) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise AekitError(f"device {self.device!r} asked for, but CUDA is not available here; use device='cpu'")
        return device

    def _as_tensor(self, X, *, fitting: bool) -> Tensor:
        """X -> float32 tensor (N, V) on the device, checked; one line of AekitError when it is unusable."""
        if isinstance(X, Tensor):
            x = X.detach()
        else:
            if hasattr(X, "toarray"):  # scipy.sparse: densify, the batches are dense anyway
                X = X.toarray()
            try:
                X = np.asarray(X, dtype=np.float32)
            except (TypeError, ValueError) as error:
                raise AekitError(f"X must be a 2-D array of numbers: {error}") from None
            x = torch.from_numpy(X)
        if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            raise AekitError(f"X must be a non-empty 2-D array (n_samples, n_features), got shape {tuple(x.shape)}")
        x = x.to(device=self.device_, dtype=torch.float32)
        if not fitting and x.shape[1] != self.n_features_in_:
            raise AekitError(f"X has {x.shape[1]} features but this RBM was fitted with {self.n_features_in_}")
        if not torch.isfinite(x).all():
            raise AekitError("X contains NaN or infinite values; remove or impute them first")
        if self.visible == "bernoulli":
            low, high = x.min().item(), x.max().item()
            if low < 0.0 or high > 1.0:
                raise AekitError(
                    f"visible='bernoulli' needs data in [0, 1] but X spans [{low:g}, {high:g}]; "
                    "scale it to [0, 1] or standardize it and use visible='gaussian'"
                )
        return x

    @staticmethod
    def _like_input(X, result: Tensor):
        return result if isinstance(X, Tensor) else result.cpu().numpy()

    @contextlib.contextmanager
    def _seeded_torch(self):
        """Run the block on a forked torch RNG seeded from ``random_state_``: reproducible for an int
        ``random_state``, and the caller's global torch stream is left as it was."""
        seed = int(self.random_state_.randint(np.iinfo(np.int32).max))
        devices = [self.device_.index or 0] if self.device_.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    # ----- fitting ------------------------------------------------------------------------------

    def _start(self, x: Tensor):
        self.n_features_in_ = x.shape[1]
        with self._seeded_torch():
            module = RBM(x.shape[1], self.n_components, self.visible, "bernoulli", device=self.device_)
        self.module_ = module.init_visible_bias(x)

    def fit(self, X, y=None):
        """Fit the RBM to X (n_samples, n_features) from a fresh start; returns self."""
        self._check_params()
        self.device_ = self._device()
        self.random_state_ = check_random_state(self.random_state)
        x = self._as_tensor(X, fitting=True)
        self._start(x)
        with self._seeded_torch():
            self._run_epochs(x)
        return self

    def partial_fit(self, X, y=None):
        """One CD update with X as the mini-batch (as BernoulliRBM.partial_fit); returns self."""
        first = not hasattr(self, "module_")
        if first:
            self._check_params()
            self.device_ = self._device()
            self.random_state_ = check_random_state(self.random_state)
        x = self._as_tensor(X, fitting=first)
        if first:
            self._start(x)
        with self._seeded_torch():
            self.module_.cd_step(x, self.k, **self._step_kwargs())
        return self

    def _step_kwargs(self) -> dict:
        return {
            "monitor": bool(self.verbose),  # only the progress bar shows the statistics
            "persistent": bool(self.persistent),
            "learning_rate": float(self.learning_rate),
            "momentum": float(self.momentum),
            "weight_decay": float(self.weight_decay),
        }

    def _run_epochs(self, x: Tensor):
        n = x.shape[0]
        batch = min(self.batch_size, n)
        num_batches = -(-n // batch)
        step_kwargs = self._step_kwargs()
        epochs = range(self.n_iter)
        if self.verbose:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc=type(self).__name__, unit="epoch")
        for _ in epochs:
            order = torch.randperm(n, device=x.device)
            # Top up the last batch from the start of the permutation so every batch has `batch` rows.
            order = torch.cat([order, order[: num_batches * batch - n]]).view(num_batches, batch)
            total = x.new_zeros(())
            for index in order:
                stats = self.module_.cd_step(x[index], self.k, **step_kwargs)
                if self.verbose:
                    total += stats["reconstruction_error"]
            if self.verbose:
                epochs.set_postfix(reconstruction_error=f"{(total / num_batches).item():.4g}")

    # ----- using the fitted model ---------------------------------------------------------------

    def transform(self, X):
        """Hidden probabilities E[h | v = X], shape (n_samples, n_components)."""
        check_is_fitted(self, "module_")
        x = self._as_tensor(X, fitting=False)
        with torch.no_grad():
            return self._like_input(X, self.module_(x))

    def score_samples(self, X):
        """Stochastic log pseudo-likelihood per sample, as BernoulliRBM.score_samples (same definition
        and, for an int ``random_state``, the same flipped coordinates)."""
        check_is_fitted(self, "module_")
        x = self._as_tensor(X, fitting=False)
        rng = check_random_state(self.random_state)
        flip = torch.from_numpy(rng.randint(0, x.shape[1], x.shape[0])).to(x.device)
        return self._like_input(X, self.module_.pseudo_likelihood(x, flip_index=flip))

    def gibbs(self, v):
        """One Gibbs step v -> h -> v', returning the sampled visible states (n_samples, n_features)."""
        check_is_fitted(self, "module_")
        x = self._as_tensor(v, fitting=False)
        with self._seeded_torch():
            return self._like_input(v, self.module_.gibbs(x, 1))

    @property
    def components_(self) -> np.ndarray:
        return self.module_.weight.detach().cpu().numpy()

    @property
    def intercept_hidden_(self) -> np.ndarray:
        return self.module_.hidden_bias.detach().cpu().numpy()

    @property
    def intercept_visible_(self) -> np.ndarray:
        return self.module_.visible_bias.detach().cpu().numpy()

    @property
    def _n_features_out(self) -> int:
        return self.n_components


# ---------------------------------------------------------------------------------------------
# the run face: `aekit train rbm`, `aekit evaluate`, figures
# ---------------------------------------------------------------------------------------------


class RBMRunModel(RBM):
    """An RBM answering the face every aekit run model answers (encode, decode, sample, reconstruct,
    embed, log_likelihood, evaluation_terms), so the CLI, evaluation and figures need no special case.

    ``log_likelihood`` is −F(v) − log Ẑ with log Ẑ from AIS (``ais_temperatures`` temperatures,
    100 chains, base rates from the training data given to ``prepare_likelihood``); the estimate is
    computed once and reused for every batch.
    """

    capabilities = frozenset({SAMPLE, LOG_LIKELIHOOD, FREE_ENERGY})
    likelihood_method = "-F(v) - log Z, log Z by AIS (100 chains, 10000 temperatures)"
    num_classes = None
    selection_metric = "reconstruction"
    ais_temperatures = 10_000

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log_z_estimate: AISEstimate | None = None

    @property
    def discrete_likelihood(self) -> bool:
        """Bernoulli visible units: p(v) is a distribution over binary v (a density for Gaussian units)."""
        return self.visible_units.binary

    def embed(self, v: Tensor, y=None) -> Tensor:
        return self.forward(v)

    def encode(self, v: Tensor, y=None) -> Distribution:
        return super().encode(v)

    def decode(self, h: Tensor, y=None) -> Distribution:
        return super().decode(h)

    def reconstruct(self, v: Tensor, y=None) -> Tensor:
        return super().reconstruct(v)

    @torch.no_grad()
    def sample(self, n: int, y=None, k: int = 1000) -> Tensor:
        """Visible means after k Gibbs sweeps from random starts."""
        v = super().sample(n, k=k)
        return self.visible_given_hidden(self.forward(v)).mean

    @torch.no_grad()
    def prepare_likelihood(self, train_x: Tensor) -> AISEstimate:
        self.log_z_estimate = self.ais_log_partition(num_chains=100, betas=self.ais_temperatures, data=train_x)
        return self.log_z_estimate

    @torch.no_grad()
    def log_likelihood(self, v: Tensor, y=None, num_samples: int = 0) -> Tensor:
        if self.log_z_estimate is None:
            self.prepare_likelihood(v)
        return -self.free_energy(v) - self.log_z_estimate.log_z

    @torch.no_grad()
    def evaluation_terms(self, v: Tensor, y=None) -> dict[str, Tensor]:
        """Squared error of the mean-field up-down pass, and the free energy F(v) (nats)."""
        return {"reconstruction": ((v - self.reconstruct(v)) ** 2).sum(-1), "free_energy": self.free_energy(v)}

    def encoder_filters(self) -> Tensor:
        """The weights into each hidden unit (H, V), for the filters figure."""
        return self.weight.detach()


VISIBLE_FOR_LIKELIHOOD = {"bernoulli": "bernoulli", "gaussian": "gaussian"}


def build_rbm(cfg, shape) -> RBMRunModel:
    """The visible units' conditional p(v|h) is the RBM's decoder likelihood, so ``--likelihood``
    chooses them: bernoulli (data in [0, 1]) or gaussian (unit variance: standardize the data)."""
    if cfg.likelihood not in VISIBLE_FOR_LIKELIHOOD:
        raise unknown_choice("rbm visible units (--likelihood)", cfg.likelihood, VISIBLE_FOR_LIKELIHOOD)
    return RBMRunModel(shape.data_dim, cfg.latent_dim, visible=VISIBLE_FOR_LIKELIHOOD[cfg.likelihood])


def fit_rbm(model: RBMRunModel, x: Tensor, run_cfg, progress: bool = True) -> RBMRunModel:
    """CD-k / PCD-k on shuffled mini-batches of the data tensor (the trainer's BatchLoader: full batches,
    the order a pure function of the seed and the epoch); epochs, batch size, learning rate and weight
    decay from the training settings, k, persistence and momentum from the model settings.

    Under ``--binarize dynamic`` every batch is a fresh Bernoulli sample of the grey pixels, drawn
    anew each epoch — the RBM then models binary data, the data its test likelihood is measured on.
    """
    from tqdm.auto import tqdm

    from ..data import ArrayDataset, BatchLoader

    cfg, train_cfg = run_cfg.model, run_cfg.train
    if model.rbm_config.visible == "bernoulli":
        model.init_visible_bias(x)
    if len(x) < train_cfg.batch_size:
        raise AekitError(f"--batch-size {train_cfg.batch_size} exceeds the {len(x)} training rows; lower it")
    loader = BatchLoader(ArrayDataset(x, None, None, None, "train"), train_cfg.batch_size, drop_last=True,
                         dynamic_binarize=run_cfg.data.binarize == "dynamic", seed=train_cfg.seed)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(train_cfg.seed)  # the Gibbs chains' noise
        bar = tqdm(range(train_cfg.epochs), desc="CD" if not cfg.persistent else "PCD", disable=not progress,
                   leave=False)
        for epoch in bar:
            loader.set_epoch(epoch)
            error = torch.zeros((), device=x.device)
            for v, _ in loader:
                stats = model.cd_step(v, cfg.cd_steps, persistent=cfg.persistent, learning_rate=train_cfg.lr,
                                      momentum=train_cfg.momentum, weight_decay=train_cfg.weight_decay)
                error += stats["reconstruction_error"]
            bar.set_postfix(reconstruction_error=f"{float(error) / len(loader):.2f}")
    return model
