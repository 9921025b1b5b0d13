"""Vector quantization: the VQ-VAE's latent head (van den Oord, Vinyals & Kavukcuoglu 2017).

A codebook of K vectors e_1..e_K ∈ R^D. Every position of an encoder output map z_e (B, D, *S) is
snapped to its nearest code,

    k(z) = argmin_k ‖z − e_k‖² = argmin_k (‖z‖² − 2 z·e_k + ‖e_k‖²)                  (eq. 1–2)

computed as one matrix product per chunk of rows (‖z‖² is the same for every k, so the argmin drops
it), chunked so that the (rows × K) distance block never exceeds ``CHUNK_ELEMENTS``. The decoder sees
z_q = z + sg(e_k − z) (straight-through: the value of e_k, the gradient of z), written here as
sg(e_k) + (z − sg(z)) so that its value is e_k exactly, not z + (e_k − z) rounded. Losses (eq. 3):

    codebook   ‖sg(z) − e_k‖²     moves the codes towards the encoder outputs (not with EMA updates)
    commitment ‖z − sg(e_k)‖²     keeps the encoder near its codes, weighted by β (0.25 in the paper)

Both are **summed over the positions of the code map and over D, per example** (shape (B,)), like the
reconstruction term −log p(x|z_q), which is summed over data dimensions: no term is a batch mean, so
their relative weight does not depend on the batch size.

State that is not a gradient step lives in buffers (so checkpoints and exact resume carry it) and is
changed only in :meth:`VectorQuantizer.apply_statistics`, which the model's ``after_step`` calls after
every optimizer step. In training mode :meth:`forward` stashes the batch statistics that update needs
(per-code counts n_k, per-code sums of encoder outputs, and the encoder outputs themselves); nothing
persistent changes inside ``forward``.

* EMA codebook (§A.1 of the paper; Laplace smoothing as in sonnet): with decay γ,
      N_k ← γ N_k + (1 − γ) n_k,     m_k ← γ m_k + (1 − γ) Σ_{i: k(z_i) = k} z_i,
      Ñ_k = (N_k + ε) / (Σ_j N_j + K ε) · Σ_j N_j,     e_k = m_k / Ñ_k.
  N starts at 1 and m at the initial codebook (so e starts where it was initialized).
* Code usage: u_k ← n_k at the first update, then u_k ← γ_u u_k + (1 − γ_u) n_k: the running number
  of assignments of code k per batch.
* Dead-code restart: codes with u_k < ``restart_threshold`` are re-seeded from encoder outputs of the
  current batch, drawn without replacement; their usage restarts at twice the threshold, so a
  re-seeded code that attracts nothing is re-seeded again after log 2 / −log γ_u ≈ 7 updates (codes
  stranded by the moving encoder early in training are recycled quickly).
* k-means initialization (:meth:`VectorQuantizer.kmeans_init`): Lloyd's algorithm from a k-means++
  start on encoder outputs of the first training batches, before the first step.

Under ``torch.distributed`` the counts and sums are all-reduced before they are used, and the vectors
that restart dead codes are drawn from the all-gathered global batch with the same seed on every rank,
so every rank holds the same codebook, the one a single process would hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import AekitError, unknown_choice

# Largest (rows × K) block of distances computed at once: 2^22 float32 = 16 MB, whatever N and K are.
CHUNK_ELEMENTS = 1 << 22
USAGE_DECAY = 0.9           # γ_u of the usage average (about the last 10 batches)
RESTART_USAGE = 2.0         # a re-seeded code starts at this many times the restart threshold
LIVE_USAGE = 1.0            # a code is "live" while its running usage is at least one assignment per batch
UPDATES = ("loss", "ema")
INITS = ("uniform", "kmeans")


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor, chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """Index of the nearest code for every row of ``z`` (N, D) among ``codebook`` (K, D): (N,) int64.

    argmin_k ‖e_k‖² − 2 z·e_k, one ``addmm`` per chunk of rows. Ties go to the lowest index (``argmin``).
    """
    num_codes = codebook.shape[0]
    e_sq = codebook.pow(2).sum(1)  # (K,)
    rows = max(1, chunk_elements // num_codes)
    if z.shape[0] <= rows:
        return torch.addmm(e_sq, z, codebook.T, alpha=-2.0).argmin(1)
    out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
    for start in range(0, z.shape[0], rows):
        out[start:start + rows] = torch.addmm(e_sq, z[start:start + rows], codebook.T, alpha=-2.0).argmin(1)
    return out


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(H(p)) of the code histogram p = counts / Σ counts: K when all codes are equally used, 1 for one code."""
    p = counts / counts.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum())


@dataclass
class Quantized:
    """What the quantizer returns for an encoder output map z_e (B, D, *S)."""

    z_q: torch.Tensor          # (B, D, *S) straight-through quantized map: value e_k, gradient to z_e
    indices: torch.Tensor      # (B, *S) int64 code indices
    commitment: torch.Tensor   # (B,) Σ over positions of ‖z − sg(e)‖²
    codebook: torch.Tensor     # (B,) Σ over positions of ‖sg(z) − e‖² (zeros with EMA updates)
    counts: torch.Tensor       # (K,) assignments per code in this batch (float)

    @property
    def perplexity(self) -> torch.Tensor:
        """exp(H) of this batch's code histogram (depends on the batch size; see ``codebook_usage``)."""
        return perplexity(self.counts)

    @property
    def codes_in_batch(self) -> torch.Tensor:
        return (self.counts > 0).sum()


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """The rows of every rank's ``x`` (n_r, D), concatenated in rank order (ranks may hold different n_r)."""
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    most = int(max(int(s) for s in sizes))
    padded = torch.zeros(most, *x.shape[1:], dtype=x.dtype, device=x.device)
    padded[:x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:int(size)] for part, size in zip(parts, sizes)])


class VectorQuantizer(nn.Module):
    """Codebook K×D with nearest-code lookup, straight-through gradient, and the losses and updates above.

    ``update="loss"``: the codebook is a parameter trained by the codebook loss. ``update="ema"``: the
    codebook is a buffer set from moving averages in :meth:`apply_statistics` (decay ``decay``, Laplace
    smoothing ``epsilon``); the codebook loss is then zero. ``restart_threshold`` > 0 re-seeds dead codes.
    """

    def __init__(self, num_codes: int, code_dim: int, *, commitment_weight: float = 0.25, update: str = "loss",
                 decay: float = 0.99, epsilon: float = 1e-5, restart_threshold: float = 0.0,
                 chunk_elements: int = CHUNK_ELEMENTS):
        super().__init__()
        if num_codes < 2:
            raise AekitError(f"--codebook-size must be >= 2 (one code carries no information), got {num_codes}")
        if code_dim < 1:
            raise AekitError(f"--code-dim must be >= 1, got {code_dim}")
        if update not in UPDATES:
            raise unknown_choice("codebook update", update, UPDATES)
        if not 0 < decay < 1:
            raise AekitError(f"--ema-decay must be in (0, 1), got {decay}")
        self.num_codes, self.code_dim = num_codes, code_dim
        self.commitment_weight = commitment_weight
        self.update = update
        self.decay, self.epsilon = decay, epsilon
        self.restart_threshold = restart_threshold
        self.chunk_elements = chunk_elements
        # U(−1/K, 1/K), the initialization of the common PyTorch VQ-VAE implementations
        init = torch.empty(num_codes, code_dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        if update == "ema":
            self.register_buffer("codebook", init)
            self.register_buffer("ema_count", torch.ones(num_codes))
            self.register_buffer("ema_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("usage", torch.zeros(num_codes))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))  # codes re-seeded so far
        self._stash: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor] | None = None

    def extra_repr(self) -> str:
        return (f"num_codes={self.num_codes}, code_dim={self.code_dim}, update={self.update}, "
                f"commitment_weight={self.commitment_weight}, restart_threshold={self.restart_threshold}")

    # ------------------------------------------------------------------ lookup
    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The code map e[indices]: indices (B, *S) → (B, D, *S) (what the decoder sees for those codes)."""
        return self.codebook.detach()[indices].movedim(-1, 1)

    def forward(self, z: torch.Tensor) -> Quantized:
        """Quantize z_e (B, D, *S). In training mode the batch statistics are stashed for ``apply_statistics``."""
        b, d = z.shape[:2]
        if d != self.code_dim:
            raise AekitError(f"the encoder gives {d}-dimensional vectors but the codebook holds {self.code_dim}")
        # float32 whatever the autocast: bfloat16 distances would pick wrong codes and round the EMA sums.
        with torch.autocast(z.device.type, enabled=False):
            return self._quantize(z.float(), b, d)

    def _quantize(self, z: torch.Tensor, b: int, d: int) -> Quantized:
        flat = z.movedim(1, -1).reshape(-1, d)  # (B·∏S, D)
        indices = nearest_codes(flat.detach(), self.codebook.detach(), self.chunk_elements)  # (B·∏S,)
        e = self.codebook[indices]  # (B·∏S, D); carries the codebook gradient only with update="loss"
        e_sg = e.detach()
        commitment = (flat - e_sg).pow(2).reshape(b, -1).sum(1)  # (B,)
        if self.update == "loss":
            codebook_loss = (flat.detach() - e).pow(2).reshape(b, -1).sum(1)  # (B,)
        else:
            codebook_loss = torch.zeros_like(commitment)
        # Straight-through: value e (exactly), gradient dz_q/dz = I.
        z_q = (e_sg + (flat - flat.detach())).reshape(b, *z.shape[2:], d).movedim(-1, 1)  # (B, D, *S)
        counts = torch.bincount(indices, minlength=self.num_codes).to(flat.dtype)  # (K,)
        if self.training:
            sums = None
            if self.update == "ema":
                sums = torch.zeros(self.num_codes, d, device=flat.device, dtype=flat.dtype)
                sums.index_add_(0, indices, flat.detach())
            self._stash = (counts, sums, flat.detach())
        return Quantized(z_q, indices.reshape(b, *z.shape[2:]), commitment, codebook_loss, counts)

    # ------------------------------------------------------------------ updates after an optimizer step
    def usage_estimate(self) -> torch.Tensor:
        """u (K,): the running assignments of each code per batch (zeros before the first update)."""
        return self.usage

    @torch.no_grad()
    def apply_statistics(self) -> dict[str, int]:
        """Consume the statistics of the last training batch: usage, EMA codebook, dead-code restarts.

        Called once per optimizer step (by the model's ``after_step``). Returns {"restarted": n}.
        """
        if self._stash is None:
            return {"restarted": 0}
        counts, sums, vectors = self._stash
        self._stash = None
        if _distributed():  # every rank must apply the same update: sum the statistics of all ranks
            packed = counts[:, None] if sums is None else torch.cat([counts[:, None], sums], 1)  # (K, 1[+D])
            dist.all_reduce(packed)
            counts, sums = packed[:, 0], None if sums is None else packed[:, 1:]
        if int(self.updates) == 0:
            self.usage.copy_(counts)
        else:
            self.usage.mul_(USAGE_DECAY).add_(counts, alpha=1 - USAGE_DECAY)
        self.updates += 1
        if self.update == "ema":
            self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            self._codebook_from_ema()
        restarted = self._restart_dead_codes(vectors) if self.restart_threshold > 0 else 0
        return {"restarted": restarted}

    def _codebook_from_ema(self) -> None:
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.epsilon) / (n + self.num_codes * self.epsilon) * n  # Ñ (K,)
        self.codebook.copy_(self.ema_sum / smoothed[:, None])

    def _restart_dead_codes(self, vectors: torch.Tensor) -> int:
        usage = self.usage_estimate()
        dead = (usage < self.restart_threshold).nonzero().flatten()  # the same on every rank
        n = len(dead)
        if n == 0:
            return 0
        # Drawn from a generator seeded by the update count (a buffer): exact resume, and the global
        # RNG stream (reparameterization noise elsewhere) is left untouched.
        from .data.transforms import derive_seed, seeded_generator

        if _distributed():  # the global batch, in rank order: what one process would have seen
            vectors = _all_gather_rows(vectors)
        g = seeded_generator(derive_seed("vq-restart", int(self.updates)))
        rows = vectors.shape[0]
        pick = torch.randperm(rows, generator=g)[:n] if rows >= n else torch.randint(rows, (n,), generator=g)
        chosen = vectors[pick.to(vectors.device)].to(self.codebook.dtype)  # (n, D), the same on every rank
        self.codebook.data[dead] = chosen
        if self.update == "ema":
            self.ema_count[dead] = 1.0
            self.ema_sum[dead] = chosen
        # A re-seeded code has log(RESTART_USAGE)/−log γ_u ≈ 7 updates to attract vectors before the next restart.
        self.usage[dead] = RESTART_USAGE * self.restart_threshold
        self.restarts += n
        return n

    # ------------------------------------------------------------------ initialization
    @torch.no_grad()
    def set_codebook(self, codes: torch.Tensor) -> None:
        """Replace the codebook (and reset the EMA state to it)."""
        self.codebook.data.copy_(codes)
        if self.update == "ema":
            self.ema_count.fill_(1.0)
            self.ema_sum.copy_(codes)

    @torch.no_grad()
    def kmeans_init(self, vectors: torch.Tensor, iterations: int = 20, seed: int = 0) -> dict[str, float]:
        """Set the codebook to k-means centroids of ``vectors`` (N, D) (k-means++ start, Lloyd iterations).

        Returns the mean squared distance to the nearest centroid before and after.
        """
        centroids = kmeans(vectors, self.num_codes, iterations, seed, self.chunk_elements)
        before = _mean_sq_distance(vectors, self.codebook.detach(), self.chunk_elements)
        self.set_codebook(centroids)
        return {"distortion_before": before, "distortion_after": _mean_sq_distance(vectors, centroids,
                                                                                     self.chunk_elements)}


def _mean_sq_distance(vectors, codebook, chunk_elements) -> float:
    idx = nearest_codes(vectors, codebook, chunk_elements)
    return float((vectors - codebook[idx]).pow(2).sum(1).mean())


def kmeans(vectors: torch.Tensor, k: int, iterations: int = 20, seed: int = 0,
           chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """k centroids of ``vectors`` (N, D): k-means++ seeding (Arthur & Vassilvitskii 2007), then Lloyd steps.

    Clusters that lose all their points are re-seeded at the point farthest from its centroid. With
    fewer distinct points than k, the remaining centroids are copies of points (k-means needs N ≥ 1).
    """
    from .data.transforms import seeded_generator

    g = seeded_generator(seed)
    x = vectors.detach().float()
    n = x.shape[0]
    if n == 0:
        raise AekitError("k-means initialization needs at least one encoder output")
    # k-means++: each next centroid drawn with probability ∝ squared distance to the nearest chosen one.
    centroids = torch.empty(k, x.shape[1], device=x.device)
    centroids[0] = x[torch.randint(n, (1,), generator=g).item()]
    nearest_sq = (x - centroids[0]).pow(2).sum(1)
    for j in range(1, k):
        total = nearest_sq.sum()
        if float(total) <= 0:  # every point coincides with a centroid: copy random points
            idx = torch.randint(n, (1,), generator=g).item()
        else:
            idx = torch.multinomial((nearest_sq / total).cpu(), 1, generator=g).item()
        centroids[j] = x[idx]
        nearest_sq = torch.minimum(nearest_sq, (x - centroids[j]).pow(2).sum(1))
    for _ in range(iterations):
        assign = nearest_codes(x, centroids, chunk_elements)
        counts = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        empty = counts == 0
        moved = sums / counts.clamp_min(1)[:, None]
        new = torch.where(empty[:, None], centroids, moved)
        if bool(empty.any()):
            dist_sq = (x - new[assign]).pow(2).sum(1)
            far = dist_sq.topk(min(int(empty.sum()), n)).indices
            slots = empty.nonzero().flatten()[:len(far)]
            new[slots] = x[far]
        shift = float((new - centroids).pow(2).sum())
        centroids = new
        if shift <= 1e-12 * max(1.0, float(centroids.pow(2).sum())):
            break
    return centroids


def codebook_perplexity_and_usage(counts: torch.Tensor) -> dict[str, float]:
    """From code counts over a whole data set: codes used, dead codes, usage perplexity exp(H)."""
    k = counts.numel()
    used = int((counts > 0).sum())
    return {"codes_used": used, "codes_used_fraction": used / k, "dead_codes": k - used,
            "usage_perplexity": float(perplexity(counts.double())), "codebook_size": k,
            "usage_entropy_bits": float(torch.log2(perplexity(counts.double())))}


__all__ = ["VectorQuantizer", "Quantized", "nearest_codes", "perplexity", "kmeans", "codebook_perplexity_and_usage",
           "CHUNK_ELEMENTS", "UPDATES", "INITS"]
