"""Probabilistic PCA: closed-form maximum likelihood, EM, and EM with missing entries.

This module holds PPCA's mathematics once: the posterior, the marginal and the observation model
(used by the scikit-learn style estimator :class:`PPCA` and by the run face
:class:`aekit.models.linear.PPCAModel`), and the fitting procedures.

Generative model (Tipping & Bishop 1999, "Probabilistic Principal Component Analysis", JRSS-B 61;
Bishop, PRML §12.2, eq. 12.31-12.33), for data x ∈ R^D and q < D latent dimensions:

    z ~ N(0, I_q),        x | z ~ N(W z + μ, σ² I_D),        W: (D, q)

Marginal, the density the model assigns to data (PRML eq. 12.35-12.36):

    x ~ N(μ, C),          C = W Wᵀ + σ² I_D

Posterior, the encoder derived by Bayes' rule (PRML eq. 12.41-12.42):

    z | x ~ N(M⁻¹ Wᵀ (x − μ), σ² M⁻¹),        M = Wᵀ W + σ² I_q   (q, q)

No D x D matrix is ever inverted. By Woodbury and the matrix determinant lemma (PRML eq. 12.40),

    C⁻¹ = σ⁻² (I − W M⁻¹ Wᵀ),        log|C| = (D − q) log σ² + log|M|,

so the log-likelihood of one sample costs O(Dq) after an O(Dq²) set-up.

Maximum likelihood in closed form (T&B eq. 7-8; PRML eq. 12.45-12.46). With λ_1 ≥ … ≥ λ_D the
eigenvalues of the sample covariance S and U_q its top-q eigenvectors:

    μ = x̄,     σ² = (1 / (D − q)) Σ_{i>q} λ_i,     W = U_q (Λ_q − σ² I)^{1/2} R,  R = I here.

Cost of the closed form (see :func:`aekit.linalg.pca_subspace`): for N ≥ D the D x D scatter matrix
is formed and eigendecomposed, O(N D² + D³) time and O(D²) memory (784² doubles = 4.9 MB for MNIST,
the same route as scikit-learn's ``covariance_eigh``); for N < D a thin SVD of the centred data,
O(N² D), and no D x D matrix.

EM on complete data reaches the same maximum without an eigendecomposition. The E- and M-steps
(PRML eq. 12.54-12.57) touch the data only through S W, so they combine into one update on the
sample covariance (T&B 1999, §3.2 and appendix B):

    W̃ = S W (σ² I + M⁻¹ Wᵀ S W)⁻¹,        σ̃² = (1/D) tr(S − S W M⁻¹ W̃ᵀ),

and the log-likelihood at (W, σ²) comes from the same product:

    L = −(N/2) [D log 2π + (D − q) log σ² + log|M| + (tr S − tr(M⁻¹ Wᵀ S W)) / σ²].

After one O(N D²) pass that forms S an iteration costs O(D² q); or, without S, O(N D q) with
S W = X̃ᵀ (X̃ W) / N. :func:`fit_em` picks the cheaper route (see :func:`_covariance_is_cheaper`).

Why plain EM is slow, and what is done about it. Linearising the update at the optimum, two modes
converge slowly: (i) the length of each column of W — how the variance λ_i is split between the
prior on z and W — shrinks its error only by 1 − 2σ²(λ_i − σ²)/λ_i² per iteration, ≈ 1 − 2σ²/λ_i
when σ² ≪ λ_i (on MNIST, q = 30: thousands of iterations); (ii) span(W̃) = span(S W) exactly, so
the subspace follows orthogonal (power) iteration and its error shrinks like λ_{q+1}/λ_q.

* Parameter-expanded EM (PX-EM; Liu, Rubin & Wu 1998, Biometrika 85, whose worked example is factor
  analysis) removes (i): the M-step is taken in the model with z ~ N(0, Γ), which gives the
  standard W̃ and σ̃² and Γ = (1/N) Σ_n E[z_n z_nᵀ], and is then mapped back to z ~ N(0, I) by
  W ← W̃ Γ^{1/2} (same marginal). It is an exact EM step of the expanded model, so it never lowers
  L. In one dimension the length error then shrinks by σ⁴/λ² per step instead of 1 − 2σ²/λ. The
  symmetric square root keeps the step equivariant under rotations of z (W R ↦ W_new R).
* SQUAREM (Varadhan & Roland 2008, Scand. J. Statist. 35, scheme S3) extrapolates the PX-EM map F
  along r = F(θ) − θ and v = F(F(θ)) − 2F(θ) + θ: θ' = θ − 2α r + α² v with α = −‖r‖/‖v‖ ≤ −1,
  which accelerates the remaining linear mode (ii). Safeguard: θ' is kept only if its likelihood is
  at least that of F(θ); otherwise the plain EM step is taken. The recorded likelihoods therefore
  never decrease.
* Stopping rule on L (Aitken acceleration; Böhning et al. 1994, Ann. Inst. Statist. Math. 46):
  with increments a = L_t − L_{t−k} over windows of k accepted points shrinking at rate
  ρ = a / (L_{t−k} − L_{t−2k}) < 1, the gap to the limit is estimated as a / (1 − ρ); EM stops when
  that is ≤ tol · |L_t|, or when an increment is ≤ 0 (no progress left above rounding). A small
  change of L alone would stop plain EM on a slow mode far from the maximum. The training gap
  shrinks like the square of the parameter error, a test log-likelihood only like its first power,
  hence the small default tol (measured on MNIST, q = 2..100: tol = 1e-12 leaves the training
  log-likelihood within 2e-12 and the test log-likelihood within 6e-8 relative of the closed form;
  see benchmarks/ppca_mnist.py).

EM with missing entries (Ilin & Raiko 2010, "Practical approaches to principal component analysis
in the presence of missing values", JMLR 11, the PPCA updates of their §3) keeps its per-row form:
every E-step uses only the observed coordinates of each sample and every M-step includes the
posterior covariances, O(N D q²) per iteration. It gets the same expansion (with a latent mean,
z ~ N(η, Γ), mapped back by μ ← μ + W η, W ← W Γ^{1/2}) and the same safeguarded extrapolation.

Conventions of the fitted attributes:

* ``W_`` (D, q) is put in canonical form: orthogonal columns sorted by decreasing norm (R = I in
  eq. 7), each column's largest-magnitude entry positive. The model depends on W only through
  W Wᵀ, so EM's arbitrary rotation is removed after fitting by an SVD of W; the latent z of
  :meth:`PPCA.transform` is expressed in this basis.
* ``components_`` (q, D) is ``W_.T``: row i is the i-th column of W, i.e. sqrt(λ_i − σ²) u_i. These
  are NOT unit vectors, unlike the rows of scikit-learn's ``PCA.components_`` (which are u_i).
* ``covariance="ml"`` (default) uses S with 1/N, the maximum-likelihood estimate of T&B. scikit-learn's
  PCA uses 1/(N − 1) for ``explained_variance_`` and ``noise_variance_``; ``covariance="unbiased"``
  reproduces that model exactly, so ``score_samples`` agrees with ``PCA.score_samples`` when N ≥ D.
  (For N < D scikit-learn averages the discarded eigenvalues over min(N, D) − q instead of D − q.)
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real
from typing import Callable, NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch.distributions import Independent, LowRankMultivariateNormal, MultivariateNormal, Normal

from ..errors import AekitError, unknown_choice
from ..linalg import canonical_signs, centred_scatter, column_mean, pca_subspace

_LOG_2PI = math.log(2.0 * math.pi)

# σ² is kept ≥ _NOISE_FLOOR x (mean per-feature variance). When the data lie (numerically) in a
# q-dimensional affine subspace the ML σ² is 0 and the likelihood is unbounded; the floor keeps
# log p(x) finite and C invertible while being far below any noise level met in practice.
_NOISE_FLOOR = 1e-12

# Parameter `covariance` -> the ddof of the sample covariance S it selects.
_COVARIANCE_DDOF = {"ml": 0, "unbiased": 1}

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

# Parameter `acceleration` of EM -> (parameter expansion, SQUAREM extrapolation).
_ACCELERATIONS = {"squarem": (True, True), "px": (True, False), "none": (False, False)}

# The route cost model of `_covariance_is_cheaper`. EM evaluations to tol = 1e-12 with PX-EM and
# SQUAREM, measured on MNIST (q = 2..50) and digits: 20 to 120.
_EXPECTED_EVALUATIONS = 50
# Products of the (N, D) data with a thin (D, q) matrix run far below the speed of the syrk that
# forms S (measured on 60000 x 784, one thread: 45 GFLOP/s for the syrk; 1.1, 4.1, 11 and 23 GFLOP/s
# for q = 2, 10, 30, 100), so a data pass is counted as if q were at least this wide, at 4x the cost.
_THIN_PRODUCT_WIDTH = 32
_THIN_PRODUCT_SLOWDOWN = 4
# S is formed only when it fits in this many bytes (float64).
_COVARIANCE_MAX_BYTES = 2 ** 31

# SQUAREM's step-length bound starts at 1 (a plain EM step) and is multiplied by this factor after
# each extrapolation that used the whole bound (divided by it after a rejected one): Varadhan &
# Roland's "mstep = 4".
_STEP_GROWTH = 4.0

# Accepted EM points per window of the Aitken stopping rule (see `aitken_gap`).
_AITKEN_WINDOW = 5


class EMResult(NamedTuple):
    """What :func:`fit_em` returns; ``W`` is in EM's own (arbitrary) rotation."""

    mean: torch.Tensor  # (D,)
    W: torch.Tensor  # (D, q)
    noise_variance: float
    loglik_history: list[float]  # total log-likelihood of each accepted parameter set, non-decreasing
    n_iter: int  # EM-map evaluations after the initial E-step (each is one pass over S or the data)
    converged: bool


# --------------------------------------------------------------------------------------------------
# Posterior, marginal and observation model: shared by the estimator and the run face
# --------------------------------------------------------------------------------------------------


def e_step(Xc: torch.Tensor, W: torch.Tensor, noise_variance: float, row_sq: torch.Tensor):
    """Posterior moments of z for complete, centred data, and the log-likelihood of each sample.

    PRML eq. 12.54-12.55, with M = WᵀW + σ²I (q, q):

        E[z_n] = M⁻¹ Wᵀ (x_n − μ),        Cov[z_n | x_n] = σ² M⁻¹        (shared by all n)

    and, from the same product (x_n − μ)ᵀW, log p(x_n) by Woodbury (PRML eq. 12.40, 12.43):

        log p(x_n) = −½ [D log 2π + (D − q) log σ² + log|M| + (‖x̃_n‖² − x̃_nᵀ W M⁻¹ Wᵀ x̃_n) / σ²]

    Cost O(N D q); no D x D matrix.

    Args:
        Xc: (N, D) data minus μ.
        W: (D, q) loadings.
        noise_variance: σ².
        row_sq: (N,) squared norms ‖x_n − μ‖², computed once by the caller.

    Returns:
        Ez: (N, q) posterior means.
        Sz: (q, q) posterior covariance σ² M⁻¹.
        loglik: (N,) log p(x_n), nats per sample.
    """
    N, D = Xc.shape
    q = W.shape[1]
    eye = torch.eye(q, dtype=W.dtype, device=W.device)
    L = torch.linalg.cholesky(W.T @ W + noise_variance * eye)  # (q, q), M = L Lᵀ
    XW = Xc @ W  # (N, q): the one O(NDq) product of the E-step
    Ez = torch.cholesky_solve(XW.T, L).T  # (N, q)
    Sz = noise_variance * torch.cholesky_inverse(L)  # (q, q)
    logdet_M = 2.0 * L.diagonal().log().sum()
    quad = (row_sq - (XW * Ez).sum(dim=1)) / noise_variance  # (N,) Mahalanobis term
    loglik = -0.5 * (D * _LOG_2PI + (D - q) * math.log(noise_variance) + logdet_M + quad)
    return Ez, Sz, loglik


def _outer_rows(W: torch.Tensor) -> torch.Tensor:
    """(D, q) -> (D, q*q): row j is vec(w_j w_jᵀ), so O @ this sums w_j w_jᵀ over observed j."""
    D, q = W.shape
    return (W[:, :, None] * W[:, None, :]).reshape(D, q * q)


def e_step_missing(X0: torch.Tensor, observed: torch.Tensor, mean: torch.Tensor, W: torch.Tensor,
                   noise_variance: float):
    """Posterior moments of z given only the observed coordinates O_n of each sample.

    With w_j the j-th row of W, and W_O the rows of W in O_n:

        M_n = σ² I + Σ_{j∈O_n} w_j w_jᵀ,     E[z_n] = M_n⁻¹ Σ_{j∈O_n} w_j (x_nj − μ_j),     Σ_n = σ² M_n⁻¹
        log p(x_{n,O}) = −½ [|O_n| log 2π + (|O_n| − q) log σ² + log|M_n| + (‖r_n‖² − b_nᵀ E[z_n]) / σ²]

    where r_n are the observed residuals x_nj − μ_j and b_n = W_Oᵀ r_n (Woodbury on C_OO = W_O W_Oᵀ
    + σ² I). All samples are handled at once by batched q x q Cholesky factorisations (no loop over
    samples or missingness patterns). Cost O(N D q²) time, O(N q²) memory.

    Args:
        X0: (N, D) data with missing entries set to 0.
        observed: (N, D) 1.0 where observed, 0.0 where missing (working dtype).
        mean: (D,) μ.  W: (D, q).  noise_variance: σ².

    Returns:
        Ez: (N, q).  Sz: (N, q, q) posterior covariances.  loglik: (N,) log p(x_{n,O}), nats; 0 for
        a sample with nothing observed.
    """
    N, D = X0.shape
    q = W.shape[1]
    eye = torch.eye(q, dtype=W.dtype, device=W.device)
    M = (observed @ _outer_rows(W)).reshape(N, q, q) + noise_variance * eye  # (N, q, q)
    L = torch.linalg.cholesky(M)  # (N, q, q)
    R = observed * (X0 - mean)  # (N, D) residuals, 0 where missing
    b = R @ W  # (N, q)
    Ez = torch.cholesky_solve(b[:, :, None], L)[:, :, 0]  # (N, q)
    Sz = noise_variance * torch.cholesky_inverse(L)  # (N, q, q)
    n_obs = observed.sum(dim=1)  # (N,)
    logdet_M = 2.0 * L.diagonal(dim1=-2, dim2=-1).log().sum(dim=-1)  # (N,)
    quad = (R.square().sum(dim=1) - (b * Ez).sum(dim=1)) / noise_variance
    loglik = -0.5 * (n_obs * _LOG_2PI + (n_obs - q) * math.log(noise_variance) + logdet_M + quad)
    return Ez, Sz, loglik


def posterior_moments(X: torch.Tensor, mean: torch.Tensor, W: torch.Tensor, noise_variance: float):
    """E[z|x] (N, q), Cov[z|x] and log p(x_obs) (N,) for X (N, D) whose NaN entries are missing.

    Complete data: :func:`e_step`, one (q, q) covariance shared by every row. With NaN:
    :func:`e_step_missing`, an (N, q, q) covariance per row conditioned on its observed coordinates.
    """
    noise_variance = float(noise_variance)
    observed = ~torch.isnan(X)
    if bool(observed.all()):
        Xc = X - mean
        return e_step(Xc, W, noise_variance, Xc.square().sum(dim=1))
    X0 = torch.where(observed, X, torch.zeros((), dtype=X.dtype, device=X.device))
    return e_step_missing(X0, observed.to(X.dtype), mean, W, noise_variance)


def marginal(mean: torch.Tensor, W: torch.Tensor, noise_variance) -> LowRankMultivariateNormal:
    """p(x) = N(μ, W Wᵀ + σ² I) (PRML eq. 12.35-12.36) as a LowRankMultivariateNormal.

    Its ``log_prob`` uses the capacitance matrix I + Wᵀ W / σ² (Woodbury and the determinant lemma),
    never a D x D inverse. ``noise_variance`` may be a float or a 0-d tensor.
    """
    cov_diag = torch.as_tensor(noise_variance, dtype=mean.dtype, device=mean.device).expand_as(mean)
    return LowRankMultivariateNormal(mean, cov_factor=W, cov_diag=cov_diag)


def log_marginal(X: torch.Tensor, mean: torch.Tensor, W: torch.Tensor, noise_variance) -> torch.Tensor:
    """log p(x_n) (N,), nats; a row with NaN is scored under the marginal of its observed
    coordinates, N(μ_O, W_O W_Oᵀ + σ² I) (0 for a row with nothing observed)."""
    if bool(torch.isnan(X).any()):
        return posterior_moments(X, mean, W, noise_variance)[2]
    return marginal(mean, W, noise_variance).log_prob(X)


def posterior(X: torch.Tensor, mean: torch.Tensor, W: torch.Tensor, noise_variance) -> MultivariateNormal:
    """p(z | x) = N(M⁻¹ Wᵀ (x − μ), σ² M⁻¹) (PRML eq. 12.42), batch shape (N,), event shape (q,).

    NaN entries of X are treated as missing: the posterior then conditions on the observed
    coordinates only (M_n = W_Oᵀ W_O + σ² I per sample).
    """
    Ez, Sz, _ = posterior_moments(X, mean, W, noise_variance)
    return MultivariateNormal(Ez, covariance_matrix=Sz)


def observation_model(Z: torch.Tensor, mean: torch.Tensor, W: torch.Tensor, noise_variance) -> Independent:
    """p(x | z) = N(W z + μ, σ² I) (PRML eq. 12.32), batch shape (N,), event shape (D,)."""
    loc = Z @ W.T + mean  # (N, D)
    scale = torch.as_tensor(noise_variance, dtype=loc.dtype, device=loc.device).sqrt().expand_as(loc)
    return Independent(Normal(loc, scale), 1)


def sample_marginal(n: int, mean: torch.Tensor, W: torch.Tensor, noise_variance, noise: torch.Tensor) -> torch.Tensor:
    """x = W z + μ + σ ε (PRML eq. 12.33) from standard normal ``noise`` (n, q + D): z then ε."""
    q = W.shape[1]
    z, eps = noise[:, :q], noise[:, q:]
    return z @ W.T + mean + math.sqrt(float(noise_variance)) * eps


# --------------------------------------------------------------------------------------------------
# EM on complete data, from the sample covariance (T&B 1999 §3.2) with parameter expansion
# --------------------------------------------------------------------------------------------------


def _symmetric_sqrt(G: torch.Tensor) -> torch.Tensor:
    """G^{1/2} for a symmetric positive definite (q, q) G, by eigendecomposition."""
    eigenvalues, V = torch.linalg.eigh(G)
    return (V * eigenvalues.clamp_min(0.0).sqrt()) @ V.T


def em_step_covariance(S_times: Callable[[torch.Tensor], torch.Tensor], trace_S: float, n_samples: int,
                       W: torch.Tensor, noise_variance: float, *, noise_floor: float = 0.0, expand: bool = True):
    """Log-likelihood at (W, σ²) and one (PX-)EM step, from S W alone (module docstring).

    With M = WᵀW + σ²I, the E-step's averages are (1/N) Σ_n x̃_n E[z_n]ᵀ = S W M⁻¹ =: B and
    (1/N) Σ_n E[z_n z_nᵀ] = σ² M⁻¹ + M⁻¹ WᵀSW M⁻¹ =: G; the M-step (PRML eq. 12.56-12.57) is

        W̃ = B G⁻¹ = S W (σ² I + M⁻¹ Wᵀ S W)⁻¹,        σ̃² = (tr S − tr(B W̃ᵀ)) / D,

    and parameter expansion (``expand``) maps the M-step of the model z ~ N(0, G) back to
    z ~ N(0, I): W_new = W̃ G^{1/2} (same marginal, so the same likelihood, and σ̃² unchanged).

    Cost: one ``S_times`` product plus O(D q²).

    Args:
        S_times: W ↦ S W, (D, q) -> (D, q), S the ML (1/N) sample covariance.
        trace_S: tr S.  n_samples: N (the likelihood is a total over samples).
        W: (D, q).  noise_variance: σ² > 0.
        noise_floor: lower bound on σ̃² (the update is concave in log σ², so clipping still increases
            the expected complete-data log-likelihood and EM stays monotone).
        expand: take the PX-EM step instead of the plain one.

    Returns:
        loglik: float, total log-likelihood of the N samples at (W, σ²).
        (W_new, σ²_new): the parameters after the step.
    """
    D, q = W.shape
    SW = S_times(W)  # (D, q): the only product with S (or with the data)
    eye = torch.eye(q, dtype=W.dtype, device=W.device)
    L = torch.linalg.cholesky(W.T @ W + noise_variance * eye)  # (q, q), M = L Lᵀ
    M_inv = torch.cholesky_inverse(L)
    WSW = W.T @ SW  # (q, q)
    explained = float((M_inv * WSW).sum())  # tr(M⁻¹ Wᵀ S W), both symmetric
    loglik = -0.5 * n_samples * (D * _LOG_2PI + (D - q) * math.log(noise_variance)
                                 + 2.0 * float(L.diagonal().log().sum()) + (trace_S - explained) / noise_variance)
    B = SW @ M_inv  # (D, q)
    G = noise_variance * M_inv + M_inv @ WSW @ M_inv  # (q, q)
    G = 0.5 * (G + G.T)  # symmetric up to rounding; keep it exactly so for Cholesky and eigh
    W_tilde = torch.cholesky_solve(B.T, torch.linalg.cholesky(G)).T  # (D, q) = B G⁻¹
    noise_variance_new = max((trace_S - float((B * W_tilde).sum())) / D, noise_floor)
    W_new = W_tilde @ _symmetric_sqrt(G) if expand else W_tilde
    return loglik, (W_new, noise_variance_new)


class SecondMoments(NamedTuple):
    """What EM on complete data needs from X: μ = x̄, the product W ↦ S W, tr S (S with 1/N)."""

    mean: torch.Tensor  # (D,)
    S_times: Callable[[torch.Tensor], torch.Tensor]
    trace: float
    dtype: torch.dtype  # of the products (float64 when S is formed)
    route: str  # "covariance" | "data"


def second_moments(X: torch.Tensor, q: int, route: str = "auto") -> SecondMoments:
    """The sample covariance of complete X (N, D) as EM uses it, in one pass over X.

    ``route``: "covariance" forms S = (1/N) Σ_n (x_n − x̄)(x_n − x̄)ᵀ once (O(N D²), accumulated in
    float64 by :func:`aekit.linalg.centred_scatter`), after which S W costs O(D² q); "data" keeps a
    centred copy X̃ (working dtype) and computes S W = X̃ᵀ (X̃ W) / N, O(N D q) per product; "auto"
    takes the cheaper one for a q-dimensional fit (:func:`_covariance_is_cheaper`).
    """
    routes = ("auto", "covariance", "data")
    if route not in routes:
        raise unknown_choice("route", route, routes)
    N, D = X.shape
    mean = column_mean(X)  # (D,) float64, the ML μ for complete data
    if route == "covariance" or (route == "auto" and _covariance_is_cheaper(N, D, q)):
        S = centred_scatter(X, mean) / N  # (D, D) float64: the one pass over the data
        return SecondMoments(mean, lambda W: S @ W, float(S.diagonal().sum()), torch.float64, "covariance")
    mean = mean.to(X.dtype)
    Xc = X - mean  # (N, D): the one centred copy every product reuses
    trace = float(torch.linalg.vector_norm(Xc, dtype=torch.float64).square()) / N
    return SecondMoments(mean, lambda W: Xc.T @ (Xc @ W) / N, trace, X.dtype, "data")  # two O(NDq) products


def _covariance_is_cheaper(n_samples: int, n_features: int, q: int) -> bool:
    """Whether forming S (one O(N D²) syrk) beats products with the data in every EM evaluation.

    Estimated cost in syrk-speed flops over a typical run of K = _EXPECTED_EVALUATIONS evaluations:
    with S, N D² + K · 2 D² q; without, K · 4 N D · max(q, _THIN_PRODUCT_WIDTH) · _THIN_PRODUCT_SLOWDOWN
    (two thin products per evaluation, slower per flop than the syrk). For N < D S costs more per
    evaluation than the data do, and S must fit in _COVARIANCE_MAX_BYTES.
    """
    N, D, K = n_samples, n_features, _EXPECTED_EVALUATIONS
    if N < D or 8 * D * D > _COVARIANCE_MAX_BYTES:
        return False
    with_S = N * D * D + K * 2 * D * D * q
    with_data = K * 4 * N * D * max(q, _THIN_PRODUCT_WIDTH) * _THIN_PRODUCT_SLOWDOWN
    return with_S <= with_data


# --------------------------------------------------------------------------------------------------
# EM with missing entries (Ilin & Raiko 2010, PPCA with missing values)
# --------------------------------------------------------------------------------------------------


def m_step_missing(X0: torch.Tensor, observed: torch.Tensor, Ez: torch.Tensor, Sz: torch.Tensor,
                   noise_floor: float):
    """New μ, W, σ² from the posterior moments, using each entry only where it is observed.

    For each feature j, (w_j, μ_j) is the regression of the observed x_nj on z̃_n = [z_n; 1] under
    the posterior (Ilin & Raiko 2010, PPCA updates; μ and W are solved jointly here so the M-step is
    exact and the likelihood cannot decrease):

        [w_j; μ_j] = [Σ_{n∈O_j} E[z̃_n z̃_nᵀ]]⁻¹ Σ_{n∈O_j} E[z̃_n] x_nj,
        E[z̃ z̃ᵀ] = [[Σ_n + E z E zᵀ, E z], [E zᵀ, 1]]

        σ² = (1/|O|) Σ_{(n,j)∈O} [ (x_nj − w_jᵀ E[z_n] − μ_j)² + w_jᵀ Σ_n w_j ]

    With nothing missing and μ at the sample mean, Σ_n E[z_n] = 0, so this reduces to PRML eq.
    12.56-12.57 with μ unchanged. Cost O(N D q²).

    Args:
        X0: (N, D) data, 0 where missing.  observed: (N, D) 1.0/0.0.  Ez: (N, q).  Sz: (N, q, q).
        noise_floor: lower bound on σ² (see :func:`em_step_covariance`).

    Returns:
        mean: (D,), W: (D, q), noise_variance: float.
    """
    N, D = X0.shape
    q = Ez.shape[1]
    Zt = torch.cat([Ez, torch.ones(N, 1, dtype=Ez.dtype, device=Ez.device)], dim=1)  # (N, q+1)
    EZZt = Zt[:, :, None] * Zt[:, None, :]  # (N, q+1, q+1)
    EZZt[:, :q, :q] += Sz
    A = (observed.T @ EZZt.reshape(N, -1)).reshape(D, q + 1, q + 1)  # Σ_{n∈O_j} E[z̃ z̃ᵀ]
    c = X0.T @ Zt  # (D, q+1); X0 is 0 where missing, so only observed x_nj contribute
    theta = torch.linalg.solve(A, c[:, :, None])[:, :, 0]  # (D, q+1) = [w_j, μ_j] per row
    W, mean = theta[:, :q].contiguous(), theta[:, q].contiguous()
    resid = observed * (X0 - Ez @ W.T - mean)  # (N, D)
    # Σ_n Σ_{j∈O_n} w_jᵀ Σ_n w_j = Σ_n <Σ_{j∈O_n} w_j w_jᵀ, Σ_n>: one (N, D) @ (D, q²) product.
    posterior_term = ((observed @ _outer_rows(W)) * Sz.reshape(N, q * q)).sum()
    noise_variance = (resid.square().sum() + posterior_term) / observed.sum()
    return mean, W, max(float(noise_variance), noise_floor)



def em_step_missing(X0: torch.Tensor, observed: torch.Tensor, mean: torch.Tensor, W: torch.Tensor,
                    noise_variance: float, *, noise_floor: float = 0.0, expand: bool = True):
    """Log-likelihood of the observed entries at (μ, W, σ²) and one (PX-)EM step with missing data.

    :func:`e_step_missing` then :func:`m_step_missing`. With ``expand`` the M-step is that of the
    model z ~ N(η, Γ), whose prior parameters are η = (1/N) Σ_n E[z_n] and
    Γ = (1/N) Σ_n (Σ_n + (E[z_n] − η)(E[z_n] − η)ᵀ); mapping it back to z ~ N(0, I) gives
    μ_new = μ̃ + W̃ η and W_new = W̃ Γ^{1/2} (Liu, Rubin & Wu 1998). Cost O(N D q²).

    Args:
        X0: (N, D) data, 0 where missing.  observed: (N, D) 1.0/0.0.  mean: (D,).  W: (D, q).
        noise_variance: σ².  noise_floor: lower bound on σ².  expand: PX-EM instead of plain EM.

    Returns:
        loglik: float, Σ_n log p(x_{n,O}).  (mean_new, W_new, σ²_new).
    """
    Ez, Sz, loglik = e_step_missing(X0, observed, mean, W, noise_variance)
    mean_new, W_new, noise_variance_new = m_step_missing(X0, observed, Ez, Sz, noise_floor)
    if expand:
        eta = Ez.mean(dim=0)  # (q,)
        Ez_centred = Ez - eta  # (N, q)
        Gamma = Sz.mean(dim=0) + Ez_centred.T @ Ez_centred / len(Ez)  # (q, q)
        mean_new = mean_new + W_new @ eta
        W_new = W_new @ _symmetric_sqrt(0.5 * (Gamma + Gamma.T))
    return float(loglik.sum(dtype=torch.float64)), (mean_new, W_new, noise_variance_new)


# --------------------------------------------------------------------------------------------------
# The EM loop: SQUAREM extrapolation with a monotonicity safeguard, Aitken stopping rule
# --------------------------------------------------------------------------------------------------

# Parameters as a tuple of tensors and floats (σ² is a float); the extrapolation treats them as one vector.
Params = tuple


def _combine(coefficients: tuple[float, ...], points: tuple[Params, ...]) -> Params:
    """Σ_k c_k θ_k, part by part."""
    return tuple(sum(c * p[i] for c, p in zip(coefficients, points)) for i in range(len(points[0])))


def _squared_norm(theta: Params) -> float:
    return sum(float(torch.as_tensor(part).double().square().sum()) for part in theta)


def aitken_gap(history: list[float], window: int = _AITKEN_WINDOW) -> float:
    """Estimated L_∞ − L_{t−k} from log-likelihoods k = ``window`` apart (Aitken's δ², Böhning et al. 1994).

    With a = L_t − L_{t−k}, b = L_{t−k} − L_{t−2k} and ρ = a / b: a / (1 − ρ), the sum of a geometric
    series of window increments from L_{t−k} on (an estimate of the gap at L_{t−k}, hence also a
    bound for the gap at L_t). Windows rather than consecutive values: SQUAREM alternates long
    extrapolations with short EM steps, so consecutive increments do not shrink geometrically
    (measured on MNIST, q = 2..100, and digits, q = 2..30: the true gap when the rule stopped was up
    to 840x the consecutive estimate, at most 4.4x the 5-wide one, and below it at tol ≥ 1e-8).

    Returns 0 when the last increment is ≤ 0 (EM cannot decrease L, so what changes is rounding), and
    inf before 2k + 1 values or while the window increments are not shrinking (ρ ≥ 1).
    """
    if len(history) >= 2 and history[-1] - history[-2] <= 0.0:
        return 0.0
    if len(history) < 2 * window + 1:
        return math.inf
    a, b = history[-1] - history[-1 - window], history[-1 - window] - history[-1 - 2 * window]
    if b <= 0.0 or a >= b:
        return math.inf
    return a / (1.0 - a / b)


def _em_loop(evaluate: Callable[[Params], tuple[float, Params]], theta0: Params, *, max_iter: int, tol: float,
             extrapolate: bool, noise_floor: float) -> tuple[Params, list[float], int, bool]:
    """Iterate the EM map F from θ0 until :func:`aitken_gap` ≤ tol · |L| or ``max_iter`` evaluations.

    ``evaluate(θ)`` returns (L(θ), F(θ)) in one pass. Without ``extrapolate``: θ_{t+1} = F(θ_t). With
    it, each cycle takes the EM point θ1 = F(θ) and then tries the SQUAREM point
    θ' = θ − 2α r + α² v (r = θ1 − θ, v = F(θ1) − 2θ1 + θ, α = −‖r‖/‖v‖ clipped to [−α_max, −1]);
    θ' is kept if L(θ') ≥ L(θ1), otherwise the cycle falls back to θ1 and the next evaluation is the
    EM point F(θ1). σ² at θ' is clipped at ``noise_floor``; a θ' with σ² ≤ 0 or a failing
    factorisation counts as rejected.

    Returns (θ, history, evaluations, converged): θ is the last accepted point, whose L is history[-1].
    """
    loglik, mapped = evaluate(theta0)  # the initial E-step
    theta, history, evaluations, step_max = theta0, [], 0, 1.0
    while evaluations < max_iter:
        theta1 = mapped
        loglik1, mapped1 = evaluate(theta1)
        evaluations += 1
        history.append(loglik1)
        if aitken_gap(history) <= tol * abs(loglik1):
            return theta1, history, evaluations, True
        if not extrapolate or evaluations >= max_iter:
            theta, mapped = theta1, mapped1
            continue
        r = _combine((1.0, -1.0), (theta1, theta))
        v = _combine((1.0, -2.0, 1.0), (mapped1, theta1, theta))
        v_norm = math.sqrt(_squared_norm(v))
        alpha_raw = -math.sqrt(_squared_norm(r)) / v_norm if v_norm > 0 else -1.0
        alpha = min(max(alpha_raw, -step_max), -1.0)
        start, (theta, mapped) = theta, (theta1, mapped1)  # the fallback: continue from the EM point
        if alpha == -1.0:  # θ' would be F(θ1), the next EM point: take it plainly
            step_max = step_max * _STEP_GROWTH if alpha_raw < -step_max else step_max
            continue
        candidate = _combine((1.0, -2.0 * alpha, alpha * alpha), (start, r, v))
        candidate = (*candidate[:-1], max(float(candidate[-1]), noise_floor))  # σ² is the last part
        accepted = False
        if candidate[-1] > 0.0:
            try:
                loglik_c, mapped_c = evaluate(candidate)
                accepted = math.isfinite(loglik_c) and loglik_c >= loglik1
            except torch.linalg.LinAlgError:  # an extrapolated W far off: M or G not positive definite
                pass
            evaluations += 1
        if accepted:
            theta, mapped = candidate, mapped_c
            history.append(loglik_c)
            step_max = step_max * _STEP_GROWTH if alpha_raw <= -step_max else step_max
            if aitken_gap(history) <= tol * abs(loglik_c):
                return theta, history, evaluations, True
        else:
            step_max = max(1.0, step_max / _STEP_GROWTH)
    return theta, history, evaluations, False


def fit_em(X: torch.Tensor, W0: torch.Tensor, noise_variance0: float, *, observed: torch.Tensor | None = None,
           max_iter: int = 1000, tol: float = 1e-12, noise_floor: float = 0.0, acceleration: str = "squarem",
           route: str = "auto", moments: SecondMoments | None = None) -> EMResult:
    """Maximum-likelihood PPCA by EM, from the initial W0 and σ²_0 (see the module docstring).

    Every evaluation of the EM map also yields the log-likelihood of the point it starts from, which
    is recorded in ``loglik_history`` (accepted points only) and drives the stopping rule: EM stops
    when the Aitken estimate of the remaining gap is ≤ tol · |L| (:func:`aitken_gap`).

    Args:
        X: (N, D) data in the working dtype; NaN allowed only where ``observed`` is False.
        W0: (D, q) initial loadings.  noise_variance0: initial σ².
        observed: None for complete data (μ = x̄, the update on S), or an (N, D) bool mask for the
            missing-data updates (O(NDq²) per iteration, μ re-estimated).
        max_iter: at most this many evaluations.  tol: relative gap that counts as converged.
        noise_floor: lower bound on σ².
        acceleration: "squarem" (PX-EM steps with SQUAREM extrapolation), "px" (PX-EM steps) or
            "none" (plain EM, PRML eq. 12.54-12.57).
        route: complete data only, see :func:`second_moments`.
        moments: complete data only: the :func:`second_moments` of X if the caller has them already.

    Returns:
        :class:`EMResult`; ``converged`` is False if ``max_iter`` ran out first.
    """
    if max_iter < 1:
        raise AekitError(f"max_iter={max_iter} is out of range; it must be an integer >= 1")
    if acceleration not in _ACCELERATIONS:
        raise unknown_choice("acceleration", acceleration, _ACCELERATIONS)
    expand, extrapolate = _ACCELERATIONS[acceleration]
    N, D = X.shape
    q = W0.shape[1]
    if observed is None:
        moments = second_moments(X, q, route) if moments is None else moments
        mean = moments.mean
        W0 = W0.to(moments.dtype)

        def evaluate(theta):
            return em_step_covariance(moments.S_times, moments.trace, N, *theta, noise_floor=noise_floor,
                                      expand=expand)

        theta, history, n_iter, converged = _em_loop(evaluate, (W0, float(noise_variance0)), max_iter=max_iter,
                                                     tol=tol, extrapolate=extrapolate, noise_floor=noise_floor)
        W, noise_variance = theta
    else:
        obs = observed.to(X.dtype)  # (N, D) 1.0/0.0
        X0 = torch.where(observed, X, torch.zeros((), dtype=X.dtype, device=X.device))
        mean0 = X0.sum(dim=0) / obs.sum(dim=0)  # observed-entry means start the iteration

        def evaluate(theta):
            return em_step_missing(X0, obs, *theta, noise_floor=noise_floor, expand=expand)

        theta, history, n_iter, converged = _em_loop(evaluate, (mean0, W0, float(noise_variance0)),
                                                     max_iter=max_iter, tol=tol, extrapolate=extrapolate,
                                                     noise_floor=noise_floor)
        mean, W, noise_variance = theta
    return EMResult(mean, W, float(noise_variance), history, n_iter, converged)


def _canonical_loadings(W: torch.Tensor) -> torch.Tensor:
    """W R with orthogonal columns sorted by decreasing norm and a fixed sign (same W Wᵀ).

    W = U S Vᵀ (thin SVD) gives W V = U S; the largest-magnitude entry of each column is made positive.
    """
    U, S, _ = torch.linalg.svd(W, full_matrices=False)  # (D, q), (q,)
    return canonical_signs(U * S)


def _is_integer(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------------------


class PPCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Probabilistic PCA (Tipping & Bishop 1999), a scikit-learn estimator on torch tensors.

    x = W z + μ + ε,  z ~ N(0, I_q),  ε ~ N(0, σ² I_D); see the module docstring for the formulas.

    Parameters:
        n_components: q, the latent dimension, 1 ≤ q < n_features.
        method: "closed-form" — eigendecomposition of S (T&B eq. 7-8); "em" — EM on S (T&B §3.2,
            PRML eq. 12.54-12.57), which also accepts NaN for missing entries.
        covariance: "ml" — S with 1/N, the maximum-likelihood solution; "unbiased" — S with 1/(N − 1),
            the convention of scikit-learn's PCA (closed form only).
        max_iter: cap on EM evaluations (≥ 1; each is one pass over S or the data). A
            :class:`~sklearn.exceptions.ConvergenceWarning` is issued when it is reached before ``tol``.
        tol: EM stops when the Aitken estimate of the remaining gap of the total log-likelihood to its
            maximum, relative to it, is ≤ tol (≥ 0; see :func:`aitken_gap`). The default 1e-12 leaves
            training and test log-likelihoods within 6e-8 relative of the closed form on MNIST.
        acceleration: EM's steps: "squarem" (default) — parameter-expanded EM steps extrapolated by
            SQUAREM under a monotonicity safeguard; "px" — PX-EM steps only; "none" — plain EM.
        random_state: seed (None, int or numpy RandomState) for EM's random initial W.
        dtype: working precision of EM and of the fitted tensors, torch.float64 (default) or
            torch.float32 (or the strings "float64" / "float32"). The closed form always accumulates
            the covariance in float64, and EM on complete data iterates on it in float64 when it forms
            S (see :func:`_covariance_is_cheaper`); EM without S and EM with missing entries run in
            ``dtype``, where float32 resolves the log-likelihood only to ~1e-7 relative (EM then stops
            when its increments reach rounding).

    Attributes (torch tensors on the device of the training data, in ``dtype``):
        mean_: (D,) μ.
        W_: (D, q) loadings in canonical form (orthogonal columns, decreasing norm).
        components_: (q, D) ``W_.T`` (rows NOT normalised; see the module docstring).
        noise_variance_: float σ².
        explained_variance_: (q,) variance of the model along each principal direction,
            ‖w_i‖² + σ² (= λ_i for the closed form).
        n_components_, n_features_in_: ints.
        n_iter_: EM evaluations run (0 for the closed form).
        loglik_history_: list of total log-likelihoods (nats, summed over samples) of each parameter
            set EM accepted, non-decreasing; as long as ``n_iter_`` without extrapolation, shorter
            with it (a rejected SQUAREM point costs an evaluation and is not recorded); empty for the
            closed form.
        converged_: whether EM met ``tol`` (True for the closed form).

    Inputs may be numpy arrays or torch tensors; methods returning data return the same kind they
    were given (numpy in, numpy out), distributions are always torch.
    """

    def __init__(self, n_components, *, method="closed-form", covariance="ml", max_iter=1000, tol=1e-12,
                 acceleration="squarem", random_state=None, dtype=torch.float64):
        self.n_components = n_components
        self.method = method
        self.covariance = covariance
        self.max_iter = max_iter
        self.tol = tol
        self.acceleration = acceleration
        self.random_state = random_state
        self.dtype = dtype

    # ---------------------------------------------------------------- validation

    def _working_dtype(self) -> torch.dtype:
        dtype = _DTYPES.get(self.dtype, self.dtype)
        if dtype not in _DTYPES.values():
            raise AekitError(f"dtype={self.dtype!r} is not supported; use torch.float64 (default) or torch.float32")
        return dtype

    def _check_params(self) -> None:
        """Checks that need no data, with one-line messages naming the parameter and its allowed range."""
        if self.method not in self._SOLVERS:
            raise unknown_choice("method", self.method, self._SOLVERS)
        if self.covariance not in _COVARIANCE_DDOF:
            raise unknown_choice("covariance", self.covariance, _COVARIANCE_DDOF)
        if self.covariance == "unbiased" and self.method != "closed-form":
            raise AekitError("covariance='unbiased' is only defined for method='closed-form' (it matches "
                             "scikit-learn's PCA); use covariance='ml' with method='em'")
        if not _is_integer(self.max_iter) or self.max_iter < 1:
            raise AekitError(f"max_iter={self.max_iter!r} is out of range; it must be an integer >= 1")
        if not isinstance(self.tol, Real) or isinstance(self.tol, bool) or not self.tol >= 0:
            raise AekitError(f"tol={self.tol!r} is out of range; it must be a real number >= 0")
        if self.acceleration not in _ACCELERATIONS:
            raise unknown_choice("acceleration", self.acceleration, _ACCELERATIONS)
        self._working_dtype()

    def _check_n_components(self, n_samples: int, n_features: int) -> None:
        q = self.n_components
        if not _is_integer(q) or not 1 <= q < n_features:
            raise AekitError(f"n_components={q!r} is out of range; it must be an integer with "
                             f"1 <= n_components < n_features = {n_features}")
        if n_samples <= q:
            raise AekitError(f"n_components={q} needs more than {q} samples to estimate the noise; "
                             f"got n_samples={n_samples}: pass more samples or lower n_components")

    def _as_tensor(self, X, *, allow_nan: bool, reset: bool) -> tuple[torch.Tensor, bool]:
        """(N, D) tensor from X, and whether X was numpy (so outputs can be given back as numpy).

        When fitting (reset=True) X keeps its float dtype, so the closed form can read float32 data
        without a float64 copy; otherwise X is cast to the fitted model's dtype and device.
        """
        was_numpy = not isinstance(X, torch.Tensor)
        if was_numpy:
            # ascontiguousarray: torch cannot wrap numpy views with negative strides (e.g. a[:, ::-1]).
            X = np.ascontiguousarray(X)
            if X.dtype.kind not in "fiub":
                raise AekitError(f"X must be numeric; got an array of dtype {X.dtype}")
        X = torch.as_tensor(X).detach()
        if X.ndim != 2:
            raise AekitError(f"X must be 2-D (n_samples, n_features); got shape {tuple(X.shape)}; "
                             "reshape a single sample with X.reshape(1, -1)")
        if not X.is_floating_point():
            X = X.to(torch.float64)
        if not reset:
            if X.shape[1] != self.n_features_in_:
                raise AekitError(f"X has {X.shape[1]} features but this PPCA was fitted on {self.n_features_in_}; "
                                 "pass data with the training features")
            X = X.to(dtype=self.mean_.dtype, device=self.mean_.device)
        # A finite sum proves every entry finite in one cheap pass (NaN and ±inf propagate); only
        # when it is not (or overflowed) is the elementwise check run. torch.isfinite(X).all() on
        # MNIST costs 0.5 s, half the whole closed-form fit.
        if not bool(torch.isfinite(X.sum())) and not bool(torch.isfinite(X).all()):
            if bool(torch.isinf(X).any()):
                raise AekitError("X contains infinite values; remove or replace them (NaN marks a missing entry)")
            if not allow_nan:
                raise AekitError("X contains NaN; method='closed-form' needs complete data: use "
                                 "PPCA(method='em') to fit with missing entries")
        return X, was_numpy

    @staticmethod
    def _like_input(T: torch.Tensor, was_numpy: bool):
        return T.cpu().numpy() if was_numpy else T

    # ---------------------------------------------------------------- fitting

    def fit(self, X, y=None):
        """Fit μ, W and σ² by maximum likelihood; returns self.

        Args:
            X: (N, D) array or tensor. NaN marks a missing entry (``method="em"`` only).
            y: ignored (scikit-learn API).
        """
        self._check_params()
        X, _ = self._as_tensor(X, allow_nan=self.method == "em", reset=True)
        N, D = X.shape
        self._check_n_components(N, D)
        mean, W, noise_variance, history, converged = self._SOLVERS[self.method](self, X)

        dtype = self._working_dtype()
        self.mean_ = mean.to(dtype)
        self.W_ = W.to(dtype)
        self.components_ = self.W_.T
        self.noise_variance_ = float(noise_variance)
        self.explained_variance_ = self.W_.square().sum(dim=0) + self.noise_variance_
        self.n_components_ = self.n_components
        self.n_features_in_ = D
        self.n_iter_ = len(history)
        self.loglik_history_ = history
        self.converged_ = converged
        return self

    def _fit_closed_form(self, X: torch.Tensor):
        """T&B eq. 7-8 from the top-q eigenpairs of S (cost: see the module docstring)."""
        q = self.n_components
        mean = column_mean(X)  # (D,) float64
        U, eigenvalues = pca_subspace(X, q, ddof=_COVARIANCE_DDOF[self.covariance], mean=mean)
        noise_variance = float(eigenvalues[q:].mean())  # eq. 8: mean of the D − q discarded eigenvalues
        noise_variance = max(noise_variance, self._noise_floor(float(eigenvalues.mean())))
        # eq. 7 with R = I; the clip only matters when σ² sits at its floor and λ_i ≈ 0.
        W = U * (eigenvalues[:q] - noise_variance).clamp_min(0.0).sqrt()  # (D, q)
        return mean, W, noise_variance, [], True

    def _fit_em(self, X: torch.Tensor):
        """EM from a random W (seeded by random_state); missing-data updates only if X has NaN."""
        N, D = X.shape
        q = self.n_components
        X = X.to(self._working_dtype())
        # _as_tensor has refused ±inf, so a finite sum proves there is no NaN without an (N, D) mask.
        complete = bool(torch.isfinite(X.sum()))
        observed = None if complete else ~torch.isnan(X)

        # σ²_0 = mean per-feature variance (over observed entries) and W_0 with the same scale per
        # column, so the initial model is within a factor of 2 of the data's variance. For complete
        # data it is tr S / D from the statistics EM iterates on (no extra pass over X); the masked
        # route allocates several (N, D) temporaries.
        moments = None
        if complete:
            moments = second_moments(X, q)  # the one pass over X (S, or a centred copy)
            avg_variance = moments.trace / D
        else:
            n_obs_per_feature = observed.sum(dim=0)
            if not bool((n_obs_per_feature > 0).all()):
                j = int(torch.nonzero(n_obs_per_feature == 0)[0])
                raise AekitError(f"feature {j} of X has no observed value; drop that column or fill it before fitting")
            X0 = torch.where(observed, X, torch.zeros((), dtype=X.dtype, device=X.device))
            mean0 = X0.sum(dim=0) / n_obs_per_feature
            avg_variance = float((observed * (X0 - mean0)).square().sum() / observed.sum())
        noise_floor = self._noise_floor(avg_variance)  # also rejects constant data
        rng = check_random_state(self.random_state)
        W0 = torch.as_tensor(rng.standard_normal((D, q)) * math.sqrt(avg_variance / q),
                             dtype=X.dtype, device=X.device)

        result = fit_em(X, W0, avg_variance, observed=observed, max_iter=self.max_iter, tol=self.tol,
                        noise_floor=noise_floor, acceleration=self.acceleration, moments=moments)
        if not result.converged:
            gap = aitken_gap(result.loglik_history) / abs(result.loglik_history[-1])
            warnings.warn(f"PPCA EM stopped at max_iter={self.max_iter} before converging (estimated remaining "
                          f"relative log-likelihood gap {gap:.2e} > tol={self.tol}); raise max_iter or tol",
                          ConvergenceWarning, stacklevel=3)
        return (result.mean, _canonical_loadings(result.W), result.noise_variance, result.loglik_history,
                result.converged)

    @staticmethod
    def _noise_floor(avg_variance: float) -> float:
        if avg_variance <= 0.0:
            raise AekitError("X has zero variance in every feature; PPCA needs data that varies")
        return _NOISE_FLOOR * avg_variance

    # Solver registry: parameter `method` -> fitting routine.
    _SOLVERS = {"closed-form": _fit_closed_form, "em": _fit_em}

    @property
    def _n_features_out(self):
        return self.n_components_

    # ---------------------------------------------------------------- distributions

    def marginal(self) -> LowRankMultivariateNormal:
        """p(x) = N(μ, W Wᵀ + σ² I) (PRML eq. 12.35-12.36) as a LowRankMultivariateNormal.

        Its ``log_prob`` uses the capacitance matrix I + Wᵀ W / σ² (Woodbury and the determinant
        lemma), never a D x D inverse.
        """
        check_is_fitted(self)
        return marginal(self.mean_, self.W_, self.noise_variance_)

    def prior(self) -> MultivariateNormal:
        """p(z) = N(0, I_q)."""
        check_is_fitted(self)
        zeros = torch.zeros(self.n_components_, dtype=self.mean_.dtype, device=self.mean_.device)
        return MultivariateNormal(zeros, covariance_matrix=torch.diag(torch.ones_like(zeros)))

    def _posterior_moments(self, X: torch.Tensor):
        """E[z|x] (N, q), Cov[z|x] ((q, q) shared, or (N, q, q) when X has NaN) and log p(x_obs) (N,)."""
        return posterior_moments(X, self.mean_, self.W_, self.noise_variance_)

    def posterior(self, X) -> MultivariateNormal:
        """p(z | x) = N(M⁻¹ Wᵀ (x − μ), σ² M⁻¹) (PRML eq. 12.42), batch shape (N,), event shape (q,).

        NaN entries of X are treated as missing: the posterior then conditions on the observed
        coordinates only (M_n = W_Oᵀ W_O + σ² I per sample).
        """
        check_is_fitted(self)
        X, _ = self._as_tensor(X, allow_nan=True, reset=False)
        return posterior(X, self.mean_, self.W_, self.noise_variance_)

    encode = posterior

    def decode(self, Z) -> Independent:
        """p(x | z) = N(W z + μ, σ² I) (PRML eq. 12.32), batch shape (N,), event shape (D,)."""
        check_is_fitted(self)
        return observation_model(self._as_latent(Z), self.mean_, self.W_, self.noise_variance_)

    # ---------------------------------------------------------------- scikit-learn face

    def score_samples(self, X):
        """log p(x_n) per sample, in nats (PRML eq. 12.43-12.44 for one sample); shape (N,).

        Complete rows use :meth:`marginal`'s ``log_prob`` (Woodbury, no D x D inverse). If X has NaN,
        each row is scored under the marginal of its observed coordinates, N(μ_O, W_O W_Oᵀ + σ² I).
        """
        check_is_fitted(self)
        X, was_numpy = self._as_tensor(X, allow_nan=True, reset=False)
        return self._like_input(log_marginal(X, self.mean_, self.W_, self.noise_variance_), was_numpy)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample, in nats."""
        return float(torch.as_tensor(self.score_samples(X)).mean())

    def log_likelihood(self, X) -> torch.Tensor:
        """log p(x_n) per sample (N,), nats, always a tensor (the model face shared with the neural models)."""
        return torch.as_tensor(self.score_samples(X))

    def transform(self, X):
        """Posterior mean E[z | x] = M⁻¹ Wᵀ (x − μ), shape (N, q); NaN entries are treated as missing."""
        check_is_fitted(self)
        X, was_numpy = self._as_tensor(X, allow_nan=True, reset=False)
        return self._like_input(self._posterior_moments(X)[0], was_numpy)

    def inverse_transform(self, Z):
        """W z + μ, shape (N, D): the mean of p(x | z)."""
        check_is_fitted(self)
        return self._like_input(self.decode(Z).mean, not isinstance(Z, torch.Tensor))

    def _as_latent(self, Z) -> torch.Tensor:
        """(N, q) tensor in the fitted dtype and device from an array or tensor."""
        Z = torch.as_tensor(np.ascontiguousarray(Z) if not isinstance(Z, torch.Tensor) else Z,
                            dtype=self.mean_.dtype, device=self.mean_.device)
        if Z.ndim != 2 or Z.shape[1] != self.n_components_:
            raise AekitError(f"Z must have shape (n_samples, {self.n_components_}); got {tuple(Z.shape)}")
        return Z

    def reconstruct(self, X):
        """W E[z | x] + μ. Not the orthogonal projection onto span(W): the posterior mean is shrunk
        towards 0 by σ² (Tipping & Bishop discuss this), so reconstructions are pulled towards μ."""
        return self.inverse_transform(self.transform(X))

    def impute(self, X):
        """X with each NaN replaced by E[x_j | x_obs] = μ_j + w_jᵀ E[z | x_obs]; observed entries unchanged."""
        check_is_fitted(self)
        X, was_numpy = self._as_tensor(X, allow_nan=True, reset=False)
        missing = torch.isnan(X)
        Ez = self._posterior_moments(X)[0]  # (N, q)
        filled = torch.where(missing, Ez @ self.W_.T + self.mean_, X)
        return self._like_input(filled, was_numpy)

    def sample(self, n_samples: int = 1, random_state=None) -> torch.Tensor:
        """Draw (n_samples, D) from p(x) by ancestral sampling: x = W z + μ + σ ε (PRML eq. 12.33)."""
        check_is_fitted(self)
        if not _is_integer(n_samples) or n_samples < 1:
            raise AekitError(f"n_samples={n_samples!r} is out of range; it must be an integer >= 1")
        rng = check_random_state(random_state)
        D, q = self.W_.shape
        noise = torch.as_tensor(rng.standard_normal((n_samples, q + D)), dtype=self.mean_.dtype,
                                device=self.mean_.device)  # (n, q + D): z then ε
        return sample_marginal(n_samples, self.mean_, self.W_, self.noise_variance_, noise)

    def get_covariance(self) -> torch.Tensor:
        """C = W Wᵀ + σ² I, a dense (D, D) tensor: O(D²) memory, meant for tests and small D only."""
        check_is_fitted(self)
        C = self.W_ @ self.W_.T
        C.diagonal().add_(self.noise_variance_)
        return C
