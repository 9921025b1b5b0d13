"""Probabilistic PCA: closed-form maximum likelihood, EM, and EM with missing entries.

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

EM (T&B's EM appendix; PRML eq. 12.54-12.57) reaches the same maximum without an
eigendecomposition, in O(N D q) per iteration, and extends to data with missing entries
(Ilin & Raiko 2010, "Practical approaches to principal component analysis in the presence of missing
values", JMLR 11, the PPCA updates of their §3): every E-step uses only the observed coordinates of
each sample and every M-step includes the posterior covariances.

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
from typing import NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch.distributions import Independent, LowRankMultivariateNormal, MultivariateNormal, Normal

from ..errors import AekitError, unknown_choice
from ..linalg import canonical_signs, column_mean, pca_subspace

_LOG_2PI = math.log(2.0 * math.pi)

# σ² is kept ≥ _NOISE_FLOOR x (mean per-feature variance). When the data lie (numerically) in a
# q-dimensional affine subspace the ML σ² is 0 and the likelihood is unbounded; the floor keeps
# log p(x) finite and C invertible while being far below any noise level met in practice.
_NOISE_FLOOR = 1e-12

# Parameter `covariance` -> the ddof of the sample covariance S it selects.
_COVARIANCE_DDOF = {"ml": 0, "unbiased": 1}

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class EMResult(NamedTuple):
    """What :func:`fit_em` returns; ``W`` is in EM's own (arbitrary) rotation."""

    mean: torch.Tensor  # (D,)
    W: torch.Tensor  # (D, q)
    noise_variance: float
    loglik_history: list[float]  # total log-likelihood after each iteration, non-decreasing
    n_iter: int
    converged: bool


# --------------------------------------------------------------------------------------------------
# EM on complete data (PRML eq. 12.54-12.57)
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


def m_step(Xc: torch.Tensor, Ez: torch.Tensor, Sz: torch.Tensor, sq_norm: float, noise_floor: float):
    """New W and σ² from the posterior moments (PRML eq. 12.56-12.57).

        W_new  = [Σ_n x̃_n E[z_n]ᵀ] [Σ_n E[z_n z_nᵀ]]⁻¹,      E[z_n z_nᵀ] = Sz + E[z_n] E[z_n]ᵀ
        σ²_new = (1/(N D)) Σ_n { ‖x̃_n‖² − 2 E[z_n]ᵀ W_newᵀ x̃_n + tr(E[z_n z_nᵀ] W_newᵀ W_new) }

    with x̃_n = x_n − x̄ (μ stays at the sample mean, its ML value for complete data). Cost O(N D q).

    Args:
        Xc: (N, D) centred data.  Ez: (N, q).  Sz: (q, q).  sq_norm: Σ_n ‖x̃_n‖².
        noise_floor: lower bound on σ²; the update is concave in log σ², so clipping still
            increases the expected complete-data log-likelihood and EM stays monotone.

    Returns:
        W: (D, q), noise_variance: float.
    """
    N, D = Xc.shape
    sum_Ezz = N * Sz + Ez.T @ Ez  # (q, q)
    XtEz = Xc.T @ Ez  # (D, q)
    W = torch.linalg.solve(sum_Ezz, XtEz.T).T  # (D, q); sum_Ezz is symmetric
    noise_variance = (sq_norm - 2.0 * (W * XtEz).sum() + (sum_Ezz * (W.T @ W)).sum()) / (N * D)
    return W, max(float(noise_variance), noise_floor)


# --------------------------------------------------------------------------------------------------
# EM with missing entries (Ilin & Raiko 2010, PPCA with missing values)
# --------------------------------------------------------------------------------------------------


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
        noise_floor: lower bound on σ² (see :func:`m_step`).

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


# --------------------------------------------------------------------------------------------------
# The EM loop
# --------------------------------------------------------------------------------------------------


def fit_em(X: torch.Tensor, W0: torch.Tensor, noise_variance0: float, *, observed: torch.Tensor | None = None,
           max_iter: int = 1000, tol: float = 1e-6, noise_floor: float = 0.0) -> EMResult:
    """Maximum-likelihood PPCA by EM, from the initial W0 and σ²_0.

    Each iteration is one M-step followed by one E-step; the E-step of the new parameters also
    yields their log-likelihood (same products), which is recorded in ``loglik_history`` and used for
    the stopping rule |L_t − L_{t−1}| ≤ tol · |L_{t−1}|. EM never decreases L (up to rounding).

    Why EM can be slow: the subspace converges at a rate governed by the eigengap, but the length of
    each column of W (how the variance λ_i is split between the prior on z and W) has its error
    shrunk only by a factor ≈ 1 − 2σ²/λ_i per iteration (linearising the update at the optimum; as
    σ² → 0 every length is a fixed point). When σ² ≪ λ_i EM needs thousands of iterations to pin
    those lengths although L is already flat there, and the relative-change stopping rule stops on
    the flat L, not on the parameters.

    Args:
        X: (N, D) data in the working dtype; NaN allowed only where ``observed`` is False.
        W0: (D, q) initial loadings.  noise_variance0: initial σ².
        observed: None for complete data (PRML eq. 12.54-12.57, O(NDq) per iteration, μ = x̄), or an
            (N, D) bool mask for the missing-data updates (O(NDq²) per iteration, μ re-estimated).
        max_iter: at most this many iterations.  tol: relative change of L that counts as converged.
        noise_floor: lower bound on σ².

    Returns:
        :class:`EMResult`; ``converged`` is False if ``max_iter`` ran out first.
    """
    if max_iter < 1:
        raise AekitError(f"max_iter={max_iter} is out of range; it must be an integer >= 1")
    if observed is None:
        mean = X.mean(dim=0)  # (D,), the ML μ for complete data, fixed throughout
        Xc = X - mean  # (N, D): the one centred copy every iteration reuses
        row_sq = torch.linalg.vector_norm(Xc, dim=1).square()  # (N,), without an (N, D) temporary
        sq_norm = float(row_sq.sum())

        def step(stats):
            W, noise_variance = m_step(Xc, *stats, sq_norm, noise_floor)
            Ez, Sz, loglik = e_step(Xc, W, noise_variance, row_sq)
            return mean, W, noise_variance, (Ez, Sz), float(loglik.sum(dtype=torch.float64))

        Ez, Sz, loglik = e_step(Xc, W0, noise_variance0, row_sq)
    else:
        obs = observed.to(X.dtype)  # (N, D) 1.0/0.0
        X0 = torch.where(observed, X, torch.zeros((), dtype=X.dtype, device=X.device))

        def step(stats):
            mean, W, noise_variance = m_step_missing(X0, obs, *stats, noise_floor)
            Ez, Sz, loglik = e_step_missing(X0, obs, mean, W, noise_variance)
            return mean, W, noise_variance, (Ez, Sz), float(loglik.sum(dtype=torch.float64))

        mean = X0.sum(dim=0) / obs.sum(dim=0)  # observed-entry means start the iteration
        Ez, Sz, loglik = e_step_missing(X0, obs, mean, W0, noise_variance0)

    stats, previous = (Ez, Sz), float(loglik.sum(dtype=torch.float64))
    history: list[float] = []
    converged = False
    for _ in range(max_iter):
        mean, W, noise_variance, stats, loglik_total = step(stats)
        history.append(loglik_total)
        if abs(loglik_total - previous) <= tol * abs(previous):
            converged = True
            break
        previous = loglik_total
    return EMResult(mean, W, noise_variance, history, len(history), converged)


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
        method: "closed-form" — eigendecomposition of S (T&B eq. 7-8); "em" — EM (PRML eq.
            12.54-12.57), which also accepts NaN for missing entries.
        covariance: "ml" — S with 1/N, the maximum-likelihood solution; "unbiased" — S with 1/(N − 1),
            the convention of scikit-learn's PCA (closed form only).
        max_iter: EM iteration cap (≥ 1). A :class:`~sklearn.exceptions.ConvergenceWarning` is issued
            when it is reached before ``tol``.
        tol: EM stops when the relative change of the total log-likelihood is ≤ tol (≥ 0).
        random_state: seed (None, int or numpy RandomState) for EM's random initial W.
        dtype: working precision of EM and of the fitted tensors, torch.float64 (default) or
            torch.float32 (or the strings "float64" / "float32"). The closed form always accumulates
            the covariance in float64. In float32 the log-likelihood is resolved to ~1e-7 relative,
            so EM cannot meet a ``tol`` much below 1e-6.

    Attributes (torch tensors on the device of the training data, in ``dtype``):
        mean_: (D,) μ.
        W_: (D, q) loadings in canonical form (orthogonal columns, decreasing norm).
        components_: (q, D) ``W_.T`` (rows NOT normalised; see the module docstring).
        noise_variance_: float σ².
        explained_variance_: (q,) variance of the model along each principal direction,
            ‖w_i‖² + σ² (= λ_i for the closed form).
        n_components_, n_features_in_: ints.
        n_iter_: EM iterations run (0 for the closed form).
        loglik_history_: list of total log-likelihoods (nats, summed over samples) after each EM
            iteration, non-decreasing; empty for the closed form.
        converged_: whether EM met ``tol`` (True for the closed form).

    Inputs may be numpy arrays or torch tensors; methods returning data return the same kind they
    were given (numpy in, numpy out), distributions are always torch.
    """

    def __init__(self, n_components, *, method="closed-form", covariance="ml", max_iter=1000, tol=1e-6,
                 random_state=None, dtype=torch.float64):
        self.n_components = n_components
        self.method = method
        self.covariance = covariance
        self.max_iter = max_iter
        self.tol = tol
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
        observed = ~torch.isnan(X)
        complete = bool(observed.all())
        n_obs_per_feature = observed.sum(dim=0)
        if not bool((n_obs_per_feature > 0).all()):
            j = int(torch.nonzero(n_obs_per_feature == 0)[0])
            raise AekitError(f"feature {j} of X has no observed value; drop that column or fill it before fitting")

        # σ²_0 = mean per-feature variance (over observed entries) and W_0 with the same scale per
        # column, so the initial model is within a factor of 2 of the data's variance. Complete data
        # take the one-pass route: the masked one allocates several (N, D) temporaries.
        if complete:
            avg_variance = float(X.var(dim=0, unbiased=False).mean())
        else:
            X0 = torch.where(observed, X, torch.zeros((), dtype=X.dtype, device=X.device))
            mean0 = X0.sum(dim=0) / n_obs_per_feature
            avg_variance = float((observed * (X0 - mean0)).square().sum() / observed.sum())
        noise_floor = self._noise_floor(avg_variance)  # also rejects constant data
        rng = check_random_state(self.random_state)
        W0 = torch.as_tensor(rng.standard_normal((D, q)) * math.sqrt(avg_variance / q),
                             dtype=X.dtype, device=X.device)

        result = fit_em(X, W0, avg_variance, observed=None if complete else observed, max_iter=self.max_iter,
                        tol=self.tol, noise_floor=noise_floor)
        if not result.converged:
            change = abs(result.loglik_history[-1] - result.loglik_history[-2]) / abs(result.loglik_history[-2]) \
                if result.n_iter > 1 else float("nan")
            warnings.warn(f"PPCA EM stopped at max_iter={self.max_iter} before converging (last relative "
                          f"log-likelihood change {change:.2e} > tol={self.tol}); raise max_iter or tol",
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
        cov_diag = torch.full_like(self.mean_, self.noise_variance_)
        return LowRankMultivariateNormal(self.mean_, cov_factor=self.W_, cov_diag=cov_diag)

    def prior(self) -> MultivariateNormal:
        """p(z) = N(0, I_q)."""
        check_is_fitted(self)
        zeros = torch.zeros(self.n_components_, dtype=self.mean_.dtype, device=self.mean_.device)
        return MultivariateNormal(zeros, covariance_matrix=torch.diag(torch.ones_like(zeros)))

    def _posterior_moments(self, X: torch.Tensor):
        """E[z|x] (N, q), Cov[z|x] ((q, q) shared, or (N, q, q) when X has NaN) and log p(x_obs) (N,)."""
        observed = ~torch.isnan(X)
        if bool(observed.all()):
            Xc = X - self.mean_
            return e_step(Xc, self.W_, self.noise_variance_, Xc.square().sum(dim=1))
        X0 = torch.where(observed, X, torch.zeros((), dtype=X.dtype, device=X.device))
        return e_step_missing(X0, observed.to(X.dtype), self.mean_, self.W_, self.noise_variance_)

    def posterior(self, X) -> MultivariateNormal:
        """p(z | x) = N(M⁻¹ Wᵀ (x − μ), σ² M⁻¹) (PRML eq. 12.42), batch shape (N,), event shape (q,).

        NaN entries of X are treated as missing: the posterior then conditions on the observed
        coordinates only (M_n = W_Oᵀ W_O + σ² I per sample).
        """
        check_is_fitted(self)
        X, _ = self._as_tensor(X, allow_nan=True, reset=False)
        Ez, Sz, _ = self._posterior_moments(X)
        return MultivariateNormal(Ez, covariance_matrix=Sz)

    encode = posterior

    def decode(self, Z) -> Independent:
        """p(x | z) = N(W z + μ, σ² I) (PRML eq. 12.32), batch shape (N,), event shape (D,)."""
        loc = self.inverse_transform(torch.as_tensor(Z, dtype=self.mean_.dtype, device=self.mean_.device))
        return Independent(Normal(loc, math.sqrt(self.noise_variance_)), 1)

    # ---------------------------------------------------------------- scikit-learn face

    def score_samples(self, X):
        """log p(x_n) per sample, in nats (PRML eq. 12.43-12.44 for one sample); shape (N,).

        Complete rows use :meth:`marginal`'s ``log_prob`` (Woodbury, no D x D inverse). If X has NaN,
        each row is scored under the marginal of its observed coordinates, N(μ_O, W_O W_Oᵀ + σ² I).
        """
        check_is_fitted(self)
        X, was_numpy = self._as_tensor(X, allow_nan=True, reset=False)
        if bool(torch.isnan(X).any()):
            loglik = self._posterior_moments(X)[2]
        else:
            loglik = self.marginal().log_prob(X)
        return self._like_input(loglik, was_numpy)

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
        was_numpy = not isinstance(Z, torch.Tensor)
        Z = np.ascontiguousarray(Z) if was_numpy else Z
        Z = torch.as_tensor(Z, dtype=self.mean_.dtype, device=self.mean_.device)
        if Z.ndim != 2 or Z.shape[1] != self.n_components_:
            raise AekitError(f"Z must have shape (n_samples, {self.n_components_}); got {tuple(Z.shape)}")
        return self._like_input(Z @ self.W_.T + self.mean_, was_numpy)

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
        z, eps = noise[:, :q], noise[:, q:]
        return z @ self.W_.T + self.mean_ + math.sqrt(self.noise_variance_) * eps

    def get_covariance(self) -> torch.Tensor:
        """C = W Wᵀ + σ² I, a dense (D, D) tensor: O(D²) memory, meant for tests and small D only."""
        check_is_fitted(self)
        C = self.W_ @ self.W_.T
        C.diagonal().add_(self.noise_variance_)
        return C
