"""Regularizers of the deterministic autoencoder: input corruptions and penalties on the code.

**Corruptions** q(x̃|x) for the denoising autoencoder (Vincent et al. 2008, §2.3; 2010, §4.2). The
encoder sees x̃, the decoder must reproduce the clean x: the loss is −log p(x | z = f(x̃)).

* ``gaussian``     x̃ = x + σε, ε ~ N(0, I)                       (level σ ≥ 0)
* ``salt-pepper``  a fraction ν of the entries, drawn at random, set to 0 or 1 with equal odds
* ``masking``      a fraction ν of the entries, drawn at random, set to 0        (level ν ∈ [0, 1])

Every draw comes from the global torch RNG, so the trainer's exact resume covers it. The draws go
through :func:`aekit.latents.standard_normal` (uniforms as Φ(ε)), which gives each process its slice
of the global batch's noise under DistributedDataParallel: a run corrupts the same entries whatever
the number of processes.

**Penalties** Ω(x, z) on the code z = f(x), each returning one value per example (B,); the model
adds weight·Ω to the per-example reconstruction term.

* ``l1``           Ω = ‖z‖₁ = Σ_j |z_j|.
* ``kl`` sparsity  Ω = Σ_j KL(ρ ‖ ρ̂_j), ρ̂_j = (1/B) Σ_b z_bj the batch-mean activation of unit j
  (Ng, "Sparse autoencoder", CS294A notes, §2.3), with KL between Bernoulli distributions. Needs
  codes in (0, 1) (a sigmoid code). This is a property of the batch, not of an example: each example
  carries the batch value, so the batch mean the trainer takes is exactly Σ_j KL(ρ ‖ ρ̂_j); a split's
  mean (validation) is the mean of its batches' values and depends on the batch size.
* ``contractive``  Ω = ‖J_f(x)‖²_F = Σ_ij (∂z_j/∂x_i)² (Rifai et al. 2011). For a single sigmoid layer
  z = σ(Wx + b), J = diag(z ⊙ (1 − z)) W, so Ω = Σ_j (z_j(1 − z_j))² Σ_i W_ji² in closed form
  (:func:`sigmoid_jacobian_norm`); for any other encoder the Jacobian comes from autograd
  (``torch.func.jacrev`` under ``vmap``, :func:`jacobian_frobenius_norm`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.distributions import Bernoulli, kl_divergence

from .errors import AekitError, unknown_choice
from .latents import standard_normal

# Batch-mean activations are kept this far from 0 and 1 so KL(ρ ‖ ρ̂) stays finite when a unit
# saturates in float32.
_RHO_HAT_FLOOR = 1e-6


def _uniform(x: torch.Tensor) -> torch.Tensor:
    """u ~ U(0, 1) shaped like x (float64), as Φ(ε) of the shared ε ~ N(0, I) (see module docstring).

    Float64 keeps Φ(ε) below 1 for every ε float32 produces, so ``u < 1`` always holds: level 1
    corrupts every entry.
    """
    return torch.special.ndtr(standard_normal(x.shape, x, batch_dim=0).double())


# ----------------------------------------------------------------------------- corruptions
@dataclass(frozen=True)
class GaussianNoise:
    """Additive isotropic Gaussian noise: x̃ = x + σε, ε ~ N(0, I); ``level`` is σ."""

    level: float
    name = "gaussian"

    def __post_init__(self):
        if not (math.isfinite(self.level) and self.level >= 0):
            raise AekitError(f"--corruption-level must be a finite σ >= 0 for gaussian (the noise std), got {self.level}")

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.level * standard_normal(x.shape, x, batch_dim=0)

    def __str__(self):
        return f"{self.name}({self.level:g})"


def _check_fraction(level: float, name: str, meaning: str) -> None:
    if not 0 <= level <= 1:
        raise AekitError(f"--corruption-level must be in [0, 1] for {name} ({meaning}), got {level}")


@dataclass(frozen=True)
class SaltAndPepperNoise:
    """A random fraction ν (``level``) of the entries set to 0 or 1 with equal odds, the rest kept.

    One uniform u per entry decides both: u < ν/2 → 0, ν/2 ≤ u < ν → 1.
    """

    level: float
    name = "salt-pepper"

    def __post_init__(self):
        _check_fraction(self.level, "salt-pepper", "the fraction of entries set to 0 or 1")

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        u = _uniform(x)
        x = torch.where(u < self.level, 1.0, x)
        return torch.where(u < self.level / 2, 0.0, x)

    def __str__(self):
        return f"{self.name}({self.level:g})"


@dataclass(frozen=True)
class MaskingNoise:
    """A random fraction ν (``level``) of the entries set to 0 (Vincent et al. 2008), the rest kept."""

    level: float
    name = "masking"

    def __post_init__(self):
        _check_fraction(self.level, "masking", "the fraction of entries set to 0")

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(_uniform(x) < self.level, 0.0, x)

    def __str__(self):
        return f"{self.name}({self.level:g})"


Corruption = GaussianNoise | SaltAndPepperNoise | MaskingNoise
CORRUPTIONS = {"none": None, "gaussian": GaussianNoise, "salt-pepper": SaltAndPepperNoise, "masking": MaskingNoise}


def build_corruption(name: str, level: float) -> Corruption | None:
    """The corruption ``name`` at ``level``; None for "none". Bad names and levels raise AekitError."""
    if name not in CORRUPTIONS:
        raise unknown_choice("corruption", name, CORRUPTIONS)
    cls = CORRUPTIONS[name]
    return None if cls is None else cls(level)


@torch.no_grad()
def corrupted_squared_error(model, data, corruption: Corruption, *, seed: int, batch_size: int = 500) -> float:
    """Σ_d (x_d − x̂(x̃)_d)² per example, averaged over ``data``: how well ``model`` restores x from x̃.

    x̃ is drawn with a fixed ``seed`` under ``fork_rng``, so every model is scored on the same
    corrupted inputs and the caller's RNG stream is left untouched.
    """
    device = data.x.device
    total = torch.zeros((), dtype=torch.float64, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(data), batch_size):
            x = data.x[start:start + batch_size]
            y = None if data.y is None or not getattr(model, "num_classes", None) else data.y[start:start + batch_size]
            x_hat = model.reconstruct(corruption.corrupt(x), y)
            total += ((x - x_hat) ** 2).sum(-1).double().sum()
    return float(total) / len(data)


# ----------------------------------------------------------------------------- penalties
Encode = Callable[[torch.Tensor], torch.Tensor]  # (B, D) → codes (B, J), row by row


def sigmoid_jacobian_norm(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """‖J_f(x)‖²_F for one sigmoid layer z = σ(Wx + b): Σ_j (z_j(1 − z_j))² Σ_i W_ji², shape (B,).

    ``z`` (B, J) are the layer's outputs, ``weight`` W (J, D).
    """
    return (z * (1 - z)).pow(2) @ weight.pow(2).sum(1)


def jacobian_frobenius_norm(encode: Encode, x: torch.Tensor) -> torch.Tensor:
    """‖J_f(x)‖²_F = Σ_ij (∂f_j/∂x_i)² per example (B,), by reverse-mode autograd.

    ``jacrev`` takes one vector-Jacobian product per code dimension (J of them; codes are small)
    and ``vmap`` runs them for every example at once. The result is differentiable with respect to
    the encoder's parameters (the penalty's gradient is a second derivative), and it is computed
    even under an outer ``torch.no_grad`` (validation), which function transforms ignore.
    """
    def one(xi: torch.Tensor) -> torch.Tensor:  # (D,) → (J,)
        return encode(xi[None])[0]

    jac = torch.func.vmap(torch.func.jacrev(one))(x)  # (B, J, D)
    return jac.pow(2).flatten(1).sum(1)


@dataclass(frozen=True)
class L1Penalty:
    """Ω = ‖z‖₁ per example; the loss adds λ‖z‖₁ with λ = ``weight``."""

    weight: float
    name = "l1"

    def __call__(self, x: torch.Tensor, z: torch.Tensor, encode: Encode) -> torch.Tensor:
        return z.abs().sum(-1)


@dataclass(frozen=True)
class KLSparsityPenalty:
    """Ω = Σ_j KL(Bern(ρ) ‖ Bern(ρ̂_j)), ρ̂_j the batch-mean activation; every example carries the batch value.

    KL(ρ ‖ ρ̂) = ρ log(ρ/ρ̂) + (1 − ρ) log((1 − ρ)/(1 − ρ̂)). ``target`` is ρ ∈ (0, 1), ``weight`` β.
    Under DistributedDataParallel ρ̂ is the mean over each process's share of the batch.
    """

    weight: float
    target: float
    name = "sparsity_kl"

    def __post_init__(self):
        if not 0 < self.target < 1:
            raise AekitError(f"--sparsity-target must be in (0, 1) (the target mean activation ρ), got {self.target}")

    def __call__(self, x: torch.Tensor, z: torch.Tensor, encode: Encode) -> torch.Tensor:
        rho_hat = z.mean(0).clamp(_RHO_HAT_FLOOR, 1 - _RHO_HAT_FLOOR)  # (J,)
        rho = torch.full_like(rho_hat, self.target)
        kl = kl_divergence(Bernoulli(probs=rho), Bernoulli(probs=rho_hat)).sum()  # scalar: the batch's penalty
        return kl.expand(z.shape[0])  # (B,)


@dataclass(frozen=True, eq=False)
class ContractivePenalty:
    """Ω = ‖J_f(x)‖²_F per example; the loss adds λ‖J_f(x)‖²_F with λ = ``weight``.

    ``sigmoid_layer``: when the whole encoder is z = σ(layer(x)), that layer, and the closed form is
    used; None: autograd through ``encode``. The layer is a reference to the encoder's own module
    (this object is not a module, so the layer's parameters are registered once, by the encoder).
    """

    weight: float
    sigmoid_layer: nn.Linear | None = None
    name = "contractive"

    def __call__(self, x: torch.Tensor, z: torch.Tensor, encode: Encode) -> torch.Tensor:
        if self.sigmoid_layer is not None:
            return sigmoid_jacobian_norm(z, self.sigmoid_layer.weight)
        return jacobian_frobenius_norm(encode, x)


Penalty = L1Penalty | KLSparsityPenalty | ContractivePenalty
# name → (weight, target) → penalty; the target ρ only concerns the KL penalty
SPARSITY_PENALTIES = {"none": None, "l1": lambda weight, target: L1Penalty(weight), "kl": KLSparsityPenalty}
CODE_ACTIVATIONS = {"identity": nn.Identity, "sigmoid": nn.Sigmoid}


def build_penalties(*, sparsity: str = "none", sparsity_weight: float = 1.0, sparsity_target: float = 0.05,
                    contractive_weight: float = 0.0, sigmoid_layer: nn.Linear | None = None) -> tuple[Penalty, ...]:
    """The penalties a configuration asks for (none when ``sparsity`` is "none" and the contractive weight is 0)."""
    if sparsity not in SPARSITY_PENALTIES:
        raise unknown_choice("sparsity", sparsity, SPARSITY_PENALTIES)
    penalties: list[Penalty] = []
    if SPARSITY_PENALTIES[sparsity] is not None:
        penalties.append(SPARSITY_PENALTIES[sparsity](sparsity_weight, sparsity_target))
    if contractive_weight > 0:
        penalties.append(ContractivePenalty(contractive_weight, sigmoid_layer))
    return tuple(penalties)
