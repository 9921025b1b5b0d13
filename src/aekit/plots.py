"""Figures: sample grids, reconstructions beside inputs, latent maps, the decoded manifold,
interpolations and training curves. Written as PNG with matplotlib's Agg backend (no display).

Every figure is drawn under ``fork_rng`` with a fixed seed: the same prior draws are shown each
epoch (so the figures of successive epochs are comparable) and training's RNG stream is untouched.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .capabilities import SAMPLE, has  # noqa: E402

from .runs import atomic_write  # noqa: E402

FIGURE_SEED = 2024


def _save(fig, path: Path) -> None:
    atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def tile(images: np.ndarray, nrow: int) -> np.ndarray:
    """(N, C, H, W) → one (rows·(H+1)−1, nrow·(W+1)−1[, C]) mosaic with 1-pixel gaps."""
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    canvas = np.ones((rows * (h + 1) - 1, nrow * (w + 1) - 1, c), dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, nrow)
        canvas[r * (h + 1):r * (h + 1) + h, k * (w + 1):k * (w + 1) + w] = images[i].transpose(1, 2, 0)
    return canvas[..., 0] if c == 1 else canvas


def save_image_grid(x: torch.Tensor, image_shape, path: Path, nrow: int = 8, scale: int | None = None) -> None:
    """Rows of ``x`` (N, D) shown as images of ``image_shape`` in a grid, clipped to [0, 1].

    Written pixel for pixel (each image pixel a ``scale``×``scale`` block) with no axes or text:
    it costs milliseconds, so runs can afford it every epoch.
    """
    images = x.detach().float().cpu().clamp(0, 1).reshape(-1, *image_shape).numpy()
    grid = tile(images, nrow)
    scale = scale or max(1, 84 // image_shape[1])  # small images (8×8 digits) drawn larger
    grid = np.kron(grid, np.ones((scale, scale) + (() if grid.ndim == 2 else (1,)), dtype=grid.dtype))
    atomic_write(Path(path), lambda f: plt.imsave(f, grid, cmap="gray" if grid.ndim == 2 else None,
                                                  vmin=0, vmax=1, format="png"))


def _project_2d(points: np.ndarray, basis: np.ndarray | None = None):
    """First two principal axes (or the points themselves when already 2-D)."""
    if points.shape[1] <= 2:
        return points if points.shape[1] == 2 else np.c_[points, np.zeros(len(points))], None
    if basis is None:
        centred = points - points.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        basis = (points.mean(0), vt[:2].T)
    mean, axes = basis
    return (points - mean) @ axes, basis


def save_point_comparison(data: torch.Tensor, other: torch.Tensor, path: Path, label: str) -> None:
    """Vector data: the data and generated/reconstructed points, in the data's first two PCs."""
    d, basis = _project_2d(data.detach().cpu().numpy())
    o, _ = _project_2d(other.detach().cpu().numpy(), basis)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(d[:, 0], d[:, 1], s=3, alpha=0.4, label="data")
    ax.scatter(o[:, 0], o[:, 1], s=3, alpha=0.6, label=label)
    ax.legend(markerscale=4)
    ax.set_aspect("equal", "datalim")
    _save(fig, path)


def save_latent_scatter(z: np.ndarray, labels: np.ndarray | None, path: Path) -> None:
    """Posterior means in 2-D (PCA of the means when latent_dim > 2), coloured by label."""
    points, _ = _project_2d(z)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels, s=4, cmap="tab10" if labels is not None else None, alpha=0.7)
    if labels is not None:
        fig.colorbar(sc, ax=ax, label="label")
    axis = "z" if z.shape[1] <= 2 else "PC of z"
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    ax.set_title("latent means (test set)")
    _save(fig, path)


def save_curves(history: list[dict], path: Path) -> None:
    """Training curves: the objective, and its reconstruction and KL terms in their own panels."""
    if not history:
        return
    steps = [h["step"] for h in history]
    panels = [("loss", "objective"), ("reconstruction", "reconstruction"), ("kl", "KL")]
    panels = [(k, t) for k, t in panels if any(f"train/{k}" in h or f"val/{k}" in h for h in history)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for split, style in (("train", "-"), ("val", "--")):
            name = f"{split}/{key}"
            values = [h.get(name) for h in history]
            if any(v is not None for v in values):
                ax.plot(steps, values, style, marker=".", label=split)
        ax.set_title(f"{title} (nats / example)")
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    _save(fig, path)


@torch.no_grad()
def decoded_manifold(model, n: int = 15) -> torch.Tensor:
    """For a 2-D latent: decoder means on an n×n grid of z at Gaussian quantiles (Kingma & Welling, fig. 4)."""
    q = torch.linspace(0.05, 0.95, n)
    coords = torch.distributions.Normal(0.0, 1.0).icdf(q)
    zz = torch.stack(torch.meshgrid(coords.flip(0), coords, indexing="ij"), -1).reshape(-1, 2)  # (n², 2)
    device = next(model.parameters()).device
    y = None
    if model.num_classes:
        y = torch.zeros(len(zz), dtype=torch.long, device=device)
    return model.decode(zz[:, [1, 0]].to(device), y).mean


@torch.no_grad()
def interpolate(model, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10, y_a=None, y_b=None) -> torch.Tensor:
    """Decoder means along the straight line between the codes of x_a and x_b: (pairs·steps, D)."""
    z_a, z_b = model.embed(x_a, y_a), model.embed(x_b, y_b)  # (P, J)
    t = torch.linspace(0, 1, steps, device=z_a.device)[None, :, None]  # (1, S, 1)
    z = (1 - t) * z_a[:, None] + t * z_b[:, None]  # (P, S, J)
    y = None if y_a is None else y_a[:, None].expand(-1, steps).reshape(-1)
    return model.decode(z.reshape(-1, z.shape[-1]), y).mean


def _normalize_rows(v: torch.Tensor) -> torch.Tensor:
    """Each row scaled to [0, 1] so signed basis vectors can be shown as images (0.5 = zero)."""
    m = v.abs().amax(-1, keepdim=True).clamp_min(1e-12)
    return 0.5 + 0.5 * v / m


@torch.no_grad()
def draw_linear_figures(model, x_train: torch.Tensor, out: Path, image_shape) -> None:
    """Eigenvalue spectrum, and the decoder basis beside the principal components.

    ``basis.png`` rows: the top-d principal components; the decoder's columns as learned; the
    projection of each principal component onto the decoder's column space (equal to the first row
    when the model has found the PCA subspace, whatever basis it uses).
    """
    from .linalg import pca_subspace

    basis = model.decoder_basis().double().cpu()  # (D, d)
    d = basis.shape[1]
    pcs, eigenvalues = pca_subspace(x_train.cpu(), d)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    k = min(len(eigenvalues), max(4 * d, 50))
    ax.semilogy(range(1, k + 1), eigenvalues[:k].clamp_min(1e-12).numpy(), ".-")
    ax.axvline(d + 0.5, color="tab:red", ls="--", label=f"d = {d}")
    ax.set_xlabel("component")
    ax.set_ylabel("eigenvalue of the data covariance")
    ax.legend()
    _save(fig, Path(out) / "spectrum.png")
    if image_shape is None:
        return
    q, _ = torch.linalg.qr(basis)
    projected = q @ (q.T @ pcs)  # (D, d): each principal component projected on the learned subspace
    rows = torch.cat([pcs.T, basis.T, projected.T])  # (3d, D)
    save_image_grid(_normalize_rows(rows).float(), image_shape, Path(out) / "basis.png", nrow=d)


@torch.no_grad()
def draw_autoencoder_figures(model, x: torch.Tensor, image_shape, out: Path, n: int = 16, max_filters: int = 100) -> None:
    """Deterministic autoencoders on images: ``denoising.png`` and ``filters.png``.

    ``denoising.png`` (models that corrupt their input), rows: corrupted test images x̃, their
    reconstructions x̂(x̃), the clean images x. ``filters.png`` (encoders that begin with a fully
    connected layer): the first ``max_filters`` rows of that layer's weights as images, each scaled
    to [0, 1] on its own (grey 0.5 = zero weight). The corruption draws from the global RNG: call
    under a fixed seed (``draw_run_figures`` does).
    """
    out = Path(out)
    corruption = getattr(model, "corruption", None)
    if corruption is not None:
        clean = x[:n]
        noisy = corruption.corrupt(clean)
        rows = torch.cat([noisy, model.reconstruct(noisy), clean])  # (3n, D): noisy / denoised / clean
        save_image_grid(rows, image_shape, out / "denoising.png", nrow=len(clean))
    weights = model.encoder_filters()  # (H, D_in) or None
    data_dim = math.prod(image_shape)
    if weights is not None and weights.shape[1] >= data_dim:
        filters = _normalize_rows(weights[:max_filters, :data_dim].float())  # label columns (if any) dropped
        save_image_grid(filters, image_shape, out / "filters.png", nrow=min(10, len(filters)))


@torch.no_grad()
def draw_run_figures(model, splits, out: Path, history: list[dict], n: int = 64, curves: bool = True) -> None:
    """The figures a run folder gets each epoch: samples, reconstructions, latent map, manifold
    (and the training curves when ``curves``: the trainer draws those at the end, as ``aekit plot`` does)."""
    out = Path(out)
    was_training = model.training
    model.eval()
    test = splits.test
    device = test.x.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(FIGURE_SEED)
        x, y = test.x[:n], None if test.y is None else test.y[:n]
        recon = model.reconstruct(x, y)
        samples = None
        if has(model, SAMPLE):
            labels = None
            if model.num_classes:
                labels = torch.arange(n, device=device) % model.num_classes
            samples = model.sample(n, labels)
        if test.image_shape is not None:
            half = x[:32]
            pairs = torch.stack([half, recon[:32]], 1).reshape(-1, x.shape[1])  # input, reconstruction, ...
            # columns alternate: test input, its reconstruction
            save_image_grid(pairs, test.image_shape, out / "reconstructions.png", nrow=16)
            if samples is not None:
                nrow = model.num_classes if model.num_classes else 8
                save_image_grid(samples, test.image_shape, out / "samples.png", nrow=nrow)
            latent_dim = model.embed(x[:1], None if y is None else y[:1]).shape[-1]
            if latent_dim == 2 and has(model, SAMPLE):
                save_image_grid(decoded_manifold(model), test.image_shape, out / "manifold.png", nrow=15)
            if hasattr(model, "encoder_filters"):  # the autoencoders, the VAEs, the RBM
                draw_autoencoder_figures(model, x, test.image_shape, out)
        else:
            save_point_comparison(test.x[:2000], model.reconstruct(test.x[:2000], None if test.y is None else test.y[:2000]),
                                  out / "reconstructions.png", "reconstructions")
            if samples is not None:
                save_point_comparison(test.x[:2000], model.sample(2000, None), out / "samples.png", "samples")
        limit = 5000
        z = model.embed(test.x[:limit], None if test.y is None else test.y[:limit]).float().cpu().numpy()
        save_latent_scatter(z, None if test.y is None else test.y[:limit].cpu().numpy(), out / "latent.png")
    if hasattr(model, "decoder_basis"):
        draw_linear_figures(model, splits.train.x, out, test.image_shape)
    if curves:
        save_curves(history, out / "curves.png")
    model.train(was_training)


# ----------------------------------------------------------------------------- applications: restoration,
# compression, disentanglement (figures of aekit restore / compress / traverse and their benchmarks)
def save_image_rows(rows: list[tuple[str, torch.Tensor]], image_shape, path: Path, scale: int | None = None) -> None:
    """Labelled rows of images, e.g. degraded / restored / clean: each entry (label, (n, D) tensor), clipped to [0, 1]."""
    n = max(len(x) for _, x in rows)
    mosaics = [tile(x.detach().float().cpu().clamp(0, 1).reshape(-1, *image_shape).numpy(), n) for _, x in rows]
    height, width = mosaics[0].shape[:2]
    scale = scale or max(1, 84 // image_shape[1])
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(4.0, width * scale / 60 + 1.4), len(rows) * (height * scale / 60 + 0.3)),
                             squeeze=False)
    for ax, (label, _), mosaic in zip(axes[:, 0], rows, mosaics):
        ax.imshow(mosaic, cmap="gray" if mosaic.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
    fig.tight_layout()
    _save(fig, path)


def save_rate_distortion(curves: dict[str, list[tuple[float, float]]], path: Path,
                         xlabel: str = "bits per pixel", ylabel: str = "PSNR (dB)", title: str | None = None) -> None:
    """Rate–distortion curves: label → [(rate, quality), ...], one line per codec (log rate axis)."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for label, points in curves.items():
        points = sorted(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=4, label=label)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


@torch.no_grad()
def latent_traversal(model, x: torch.Tensor, values: torch.Tensor, dims=None, y=None) -> torch.Tensor:
    """Decoder means as each latent dimension of the code of ``x`` (1, D) is swept over ``values`` — (S,) for
    every dimension, or (J, S) one sweep per dimension — the others held at the code (posterior mean):
    (len(dims), S, D)."""
    z0 = model.embed(x[:1], y)  # (1, J)
    dims = range(z0.shape[1]) if dims is None else dims
    rows = []
    for j in dims:
        sweep = values if values.ndim == 1 else values[j]
        z = z0.repeat(len(sweep), 1)  # (S, J)
        z[:, j] = sweep.to(z)
        rows.append(model.decode(z, None if y is None else y[:1].expand(len(sweep))).mean)
    return torch.stack(rows)


def save_traversals(grid: torch.Tensor, image_shape, path: Path, row_labels: list[str], values=None) -> None:
    """A traversal figure: ``grid`` (rows, S, D), one latent dimension per row, labelled (e.g. 'z3  KL 1.92')."""
    rows = [(label, grid[i]) for i, label in enumerate(row_labels)]
    save_image_rows(rows, image_shape, path)
