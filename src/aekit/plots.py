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
    if len(image_shape) != 3:  # vqvae helper: sequences (C, L) and clips (C, T, H, W) are drawn their own way
        return save_signal_rows(x, image_shape, path, nrow=nrow, scale=scale)
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
    from .capabilities import CODE_PRIOR, CODES  # vqvae helper: code models draw their own figures (end of file)

    if has(model, CODES) or has(model, CODE_PRIOR):
        return draw_code_model_figures(model, splits, out, history, curves=curves)
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



# ============================================================================= vqvae helper: signals and code models
def save_signal_rows(x: torch.Tensor, shape, path: Path, nrow: int = 8, scale: int | None = None) -> None:
    """Rows of ``x`` (N, D) as signals of ``shape``: sequences (C, L) as small line plots, ``nrow`` per
    row of the figure; clips (C, T, H, W) as one row of T frames per clip (``nrow`` is ignored)."""
    x = x.detach().float().cpu()
    if len(shape) == 4:
        c, t, h, w = shape
        frames = x.clamp(0, 1).reshape(-1, c, t, h, w).transpose(1, 2).reshape(-1, c, h, w).numpy()  # (N·T, C, H, W)
        grid = tile(frames, t)
        scale = scale or max(1, 56 // h)
        grid = np.kron(grid, np.ones((scale, scale) + (() if grid.ndim == 2 else (1,)), dtype=grid.dtype))
        atomic_write(Path(path), lambda f: plt.imsave(f, grid, cmap="gray" if grid.ndim == 2 else None,
                                                      vmin=0, vmax=1, format="png"))
        return
    if len(shape) != 2:
        raise ValueError(f"signal shape must be (C, L) or (C, T, H, W), got {shape}")
    c, length = shape
    series = x.reshape(-1, c, length).numpy()
    rows = math.ceil(len(series) / nrow)
    fig, axes = plt.subplots(rows, nrow, figsize=(1.6 * nrow, 0.9 * rows), squeeze=False, sharex=True, sharey=True)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(series):
            for ch in range(c):
                ax.plot(series[i, ch], lw=0.8)
        else:
            ax.axis("off")
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.01, right=0.99, top=0.99, bottom=0.01)
    _save(fig, path)


def save_code_usage(counts: torch.Tensor, path: Path, title: str = "") -> None:
    """Code-usage histogram: assignments of each code over a split, codes sorted by use (log scale)."""
    counts = counts.detach().double().cpu()
    k = counts.numel()
    order = counts.sort(descending=True).values.numpy()
    p = counts / counts.sum().clamp_min(1)
    used = int((counts > 0).sum())
    ppl = float(torch.exp(-(p * p.clamp_min(1e-30).log()).sum()))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(np.arange(k), np.where(order > 0, order, np.nan), width=1.0, color="tab:blue")  # unused codes: no bar
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.8)
    ax.set_xlim(-0.5, k - 0.5)
    ax.set_xlabel("code (sorted by use)")
    ax.set_ylabel("assignments")
    ax.set_title(f"{title}codes used {used}/{k}, usage perplexity {ppl:.1f}", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def save_code_curves(history: list[dict], path: Path) -> None:
    """Codebook health during training: batch perplexity, codes in a batch, live codes (running usage)."""
    if not history:
        return
    steps = [h["step"] for h in history]
    panels = [("perplexity", "batch perplexity"), ("codes_in_batch", "codes used in a batch"),
              ("live_codes", "live codes (running usage)"), ("nll", "prior NLL (nats / map)")]
    panels = [(k, t) for k, t in panels if any(f"train/{k}" in h or f"val/{k}" in h for h in history)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for split, style in (("train", "-"), ("val", "--")):
            values = [h.get(f"{split}/{key}") for h in history]
            if any(v is not None for v in values):
                ax.plot(steps, values, style, marker=".", label=split)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    _save(fig, path)


def save_code_maps(x: torch.Tensor, codes: torch.Tensor, image_shape, num_codes: int, path: Path) -> None:
    """Inputs above their code maps (each code index a colour): 2-D maps as images, 1-D maps as strips,
    3-D maps as their frames side by side."""
    n = min(len(x), 8)
    codes = codes[:n].detach().cpu()
    if codes.dim() == 2:
        maps = codes[:, None, :].numpy()  # (n, 1, L)
    elif codes.dim() == 3:
        maps = codes.numpy()
    else:  # (n, T', H', W') → frames side by side
        maps = np.concatenate([np.pad(codes[:, t].numpy().astype(float), ((0, 0), (0, 0), (0, 1)),
                                      constant_values=np.nan) for t in range(codes.shape[1])], axis=2)
    fig, axes = plt.subplots(2, n, figsize=(1.7 * n, 3.6), squeeze=False)
    for i in range(n):
        top, bottom = axes[0, i], axes[1, i]
        signal = x[i].detach().float().cpu()
        if image_shape is not None and len(image_shape) == 3:
            img = signal.reshape(image_shape).clamp(0, 1).permute(1, 2, 0).numpy()
            top.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        elif image_shape is not None and len(image_shape) == 4:
            c, t, h, w = image_shape
            frames = signal.reshape(c, t, h, w)[0].clamp(0, 1).numpy()  # first channel, (T, H, W)
            top.imshow(np.concatenate(list(frames), axis=1), cmap="gray", vmin=0, vmax=1)
        else:
            top.plot(signal.numpy().reshape(-1), lw=0.8)
        bottom.imshow(maps[i], cmap="nipy_spectral", vmin=0, vmax=num_codes - 1, interpolation="nearest",
                      aspect="auto" if maps[i].shape[0] == 1 else "equal")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[1, 0].set_ylabel("codes")
    fig.tight_layout()
    _save(fig, path)


def save_prior_samples(prior_x: torch.Tensor, uniform_x: torch.Tensor, image_shape, path: Path,
                       nrow: int = 8) -> None:
    """Samples decoded from prior code maps beside samples decoded from uniformly random codes."""
    def panel(x):
        x = x.detach().float().cpu().clamp(0, 1)
        if len(image_shape) == 3:
            return tile(x.reshape(-1, *image_shape).numpy(), nrow)
        if len(image_shape) == 4:
            c, t, h, w = image_shape
            return tile(x[:nrow].reshape(-1, c, t, h, w).transpose(1, 2).reshape(-1, c, h, w).numpy(), t)
        return None

    left, right = panel(prior_x), panel(uniform_x)
    if left is None:  # sequences: line plots, one file each side
        save_signal_rows(torch.cat([prior_x[:16], uniform_x[:16]]), image_shape, path, nrow=8)
        return
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    for ax, grid, title in ((axes[0], left, "codes from the prior"), (axes[1], right, "uniformly random codes")):
        ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    _save(fig, path)


@torch.no_grad()
def draw_code_model_figures(model, splits, out: Path, history: list[dict], n: int = 64, curves: bool = True) -> None:
    """Figures of a vq-vae run (reconstructions, code usage, code maps) or of a prior run (its samples
    through the vq-vae beside uniform codes), and the codebook / NLL curves."""
    from .capabilities import CODE_PRIOR

    out = Path(out)
    was_training = model.training
    model.eval()
    test = splits.test
    device = test.x.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(FIGURE_SEED)
        if has(model, CODE_PRIOR):
            _draw_prior_figures(model, out, n, device)
        else:
            from .models.vqvae import code_counts

            x = test.x[:n]
            recon = model.reconstruct(x)
            shape = test.image_shape
            if shape is not None:
                half = min(len(x), 32 if len(shape) != 4 else 8)
                pairs = torch.stack([x[:half], recon[:half]], 1).reshape(-1, x.shape[1])  # input, reconstruction, ...
                save_image_grid(pairs, shape, out / "reconstructions.png", nrow=16)
            else:
                save_point_comparison(test.x[:2000], model.reconstruct(test.x[:2000]), out / "reconstructions.png",
                                      "reconstructions")
            # The whole split at the end; during training the first 2000 images keep figures cheap.
            rows = test.x if curves else test.x[:2000]
            save_code_usage(code_counts(model, rows), out / "code_usage.png",
                            "test split: " if len(rows) == len(test.x) else f"{len(rows)} test images: ")
            save_code_maps(x, model.codes(x[:8]), shape, model.num_codes, out / "code_map.png")
    if curves:
        save_curves(history, out / "curves.png")
        save_code_curves(history, out / "code_curves.png")
    model.train(was_training)


def _draw_prior_figures(prior, out: Path, n: int, device) -> None:
    from . import runs
    from .models.vqvae import _load_vqvae, check_prior_fits

    cfg = runs.load_config(out)
    vq = _load_vqvae(cfg.data.data_dir).to(device)
    check_prior_fits(vq, prior)
    y = torch.arange(n, device=device) % prior.num_classes if prior.num_classes else None
    codes = prior.sample_codes(n, y)
    uniform = torch.randint(prior.num_codes, codes.shape, device=device)
    shape = vq.config.shape.image_shape
    prior_x, uniform_x = vq.decode_codes(codes).mean, vq.decode_codes(uniform).mean
    if shape is not None:
        save_prior_samples(prior_x, uniform_x, shape, out / "samples.png")
    save_code_maps(prior_x, codes, shape, prior.num_codes, out / "sample_codes.png")
