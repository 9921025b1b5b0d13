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


IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}


def image_format(path: Path) -> str:
    """The image format a file name asks for; anything else is refused (never PNG bytes under .jpg)."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        from .errors import AekitError

        raise AekitError(f"cannot write an image as '{suffix or Path(path).name}'; name the file .png or .jpg "
                         f"(or .npy for the array)")
    return IMAGE_FORMATS[suffix]


def save_image_grid(x: torch.Tensor, image_shape, path: Path, nrow: int = 8, scale: int | None = None) -> None:
    """Rows of ``x`` (N, D) shown as images of ``image_shape`` in a grid, clipped to [0, 1].

    Written pixel for pixel (each image pixel a ``scale``×``scale`` block) with no axes or text:
    it costs milliseconds. The format follows the suffix (.png, .jpg).
    """
    fmt = image_format(path)
    if len(image_shape) != 3:  # sequences (C, L) and clips (C, T, H, W) are drawn their own way
        return save_signal_rows(x, image_shape, path, nrow=nrow, scale=scale)
    images = x.detach().float().cpu().clamp(0, 1).reshape(-1, *image_shape).numpy()
    grid = tile(images, nrow)
    scale = scale or max(1, 84 // image_shape[1])  # small images (8×8 digits) drawn larger
    grid = np.kron(grid, np.ones((scale, scale) + (() if grid.ndim == 2 else (1,)), dtype=grid.dtype))
    if fmt == "jpeg" and grid.ndim == 2:
        grid = np.repeat(grid[..., None], 3, axis=-1)  # JPEG via Pillow wants RGB
    atomic_write(Path(path), lambda f: plt.imsave(f, grid, cmap="gray" if grid.ndim == 2 else None,
                                                  vmin=0, vmax=1, format=fmt))


def save_labelled_grid(x: torch.Tensor, image_shape, path: Path, nrow: int, *, column_labels=None,
                       row_labels=None, title: str | None = None, xlabel: str | None = None,
                       ylabel: str | None = None) -> None:
    """An image grid with text: a label under each column and beside each row, a title (matplotlib)."""
    fmt = image_format(path)
    images = x.detach().float().cpu().clamp(0, 1).reshape(-1, *image_shape).numpy()
    grid = tile(images, nrow)
    c, h, w = images.shape[1:]
    rows = math.ceil(len(images) / nrow)
    fig, ax = plt.subplots(figsize=(min(14, 1.0 + 0.42 * nrow * max(1, w / 14)), 1.0 + 0.42 * rows * max(1, h / 14)))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([k * (w + 1) + w / 2 - 0.5 for k in range(nrow)] if column_labels is not None else [])
    if column_labels is not None:
        ax.set_xticklabels(column_labels, fontsize=7, rotation=90 if max(len(str(t)) for t in column_labels) > 4 else 0)
    ax.set_yticks([r * (h + 1) + h / 2 - 0.5 for r in range(rows)] if row_labels is not None else [])
    if row_labels is not None:
        ax.set_yticklabels(row_labels, fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    fig.tight_layout()
    atomic_write(Path(path), lambda f: fig.savefig(f, format=fmt, dpi=100))
    plt.close(fig)


def save_reconstructions(x: torch.Tensor, recon: torch.Tensor, image_shape, path: Path, pairs_per_row: int = 8) -> None:
    """Inputs and their reconstructions in alternating columns, each column labelled."""
    pairs = torch.stack([x, recon], 1).reshape(-1, x.shape[1])  # (2n, D): input, reconstruction, ...
    nrow = 2 * pairs_per_row
    save_labelled_grid(pairs, image_shape, path, nrow, column_labels=["input", "recon."] * pairs_per_row,
                       title="test inputs and their reconstructions")


def save_class_samples(samples: torch.Tensor, image_shape, path: Path, num_classes: int) -> None:
    """Conditional samples, one column per class (``samples`` in class-major columns: i % K is the class)."""
    save_labelled_grid(samples, image_shape, path, num_classes, column_labels=[f"y={k}" for k in range(num_classes)],
                       title="samples x ~ p(x | z, y), z ~ p(z)")


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
    axis = "x" if data.shape[1] <= 2 else "PC of the data"
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    ax.set_title(f"test data and {label}")
    fig.tight_layout()
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


MANIFOLD_QUANTILES = (0.05, 0.95)


def manifold_coordinates(n: int = 15) -> torch.Tensor:
    """The z values of the manifold grid: n Gaussian quantiles from 5% to 95%."""
    q = torch.linspace(*MANIFOLD_QUANTILES, n)
    return torch.distributions.Normal(0.0, 1.0).icdf(q)


def save_manifold(model, image_shape, path: Path, n: int = 15) -> None:
    """The decoded manifold with the z values of its columns (z₁) and rows (z₂)."""
    coords = [f"{v:.2f}" for v in manifold_coordinates(n).tolist()]
    given = " (label y = 0)" if getattr(model, "num_classes", None) else ""
    save_labelled_grid(decoded_manifold(model, n), image_shape, path, n, column_labels=coords,
                       row_labels=coords[::-1], xlabel="z1", ylabel="z2", title=f"decoder means on a grid of z{given}")


@torch.no_grad()
def decoded_manifold(model, n: int = 15) -> torch.Tensor:
    """For a 2-D latent: decoder means on an n×n grid of z at Gaussian quantiles (Kingma & Welling, fig. 4)."""
    coords = manifold_coordinates(n)
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
    fig.tight_layout()
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
        restored = model.reconstruct(noisy)
        if hasattr(corruption, "restore"):  # e.g. colorization: the model's chroma joined to the given luminance
            restored = corruption.restore(noisy, restored)
        rows = torch.cat([noisy, restored, clean])  # (3n, D): noisy / restored / clean
        save_image_grid(rows, image_shape, out / "denoising.png", nrow=len(clean))
    weights = model.encoder_filters()  # (H, D_in) or None
    data_dim = math.prod(image_shape)
    if weights is not None and weights.shape[1] >= data_dim:
        filters = _normalize_rows(weights[:max_filters, :data_dim].float())  # label columns (if any) dropped
        save_image_grid(filters, image_shape, out / "filters.png", nrow=min(10, len(filters)))


def _gaussian_prior(model) -> bool:
    """A manifold at Gaussian quantiles means something only for a Gaussian latent."""
    from .latents import DiagonalNormal

    return hasattr(model, "prior") and isinstance(model.prior(), DiagonalNormal)


@torch.no_grad()
def draw_run_figures(model, splits, out: Path, history: list[dict], n: int = 64, curves: bool = True) -> None:
    """The figures a run folder gets each epoch: samples, reconstructions, latent map, manifold
    (and the training curves when ``curves``: the trainer draws those at the end, as ``aekit plot`` does)."""
    out = Path(out)
    from .capabilities import CODE_PRIOR, CODES  # code models draw their own figures (draw_code_model_figures)

    if has(model, CODES) or has(model, CODE_PRIOR):
        return draw_code_model_figures(model, splits, out, history, curves=curves)
    was_training = model.training
    model.eval()
    test = splits.test
    if bool(torch.isnan(test.x).any()):  # missing entries (a MIWAE run): drawn as 0, not as NaN
        from dataclasses import replace

        test = replace(test, x=torch.nan_to_num(test.x, nan=0.0))
    device = test.x.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(FIGURE_SEED)
        x, y = test.x[:n], None if test.y is None else test.y[:n]
        recon = model.reconstruct(x, y)
        samples = None
        num_classes = getattr(model, "num_classes", None)
        if has(model, SAMPLE):
            labels = None
            if num_classes:  # whole rows of classes: n rounded up to a multiple of K
                labels = torch.arange(math.ceil(n / num_classes) * num_classes, device=device) % num_classes
            samples = model.sample(n if labels is None else len(labels), labels)
        if test.image_shape is not None:
            save_reconstructions(x[:32], recon[:32], test.image_shape, out / "reconstructions.png")
            if samples is not None:
                if num_classes:
                    save_class_samples(samples, test.image_shape, out / "samples.png", num_classes)
                else:
                    save_image_grid(samples, test.image_shape, out / "samples.png", nrow=8)
            latent_dim = model.embed(x[:1], None if y is None else y[:1]).shape[-1]
            if latent_dim == 2 and has(model, SAMPLE) and _gaussian_prior(model):
                save_manifold(model, test.image_shape, out / "manifold.png")
            if hasattr(model, "generative_filters"):
                save_generative_filters(model, test.image_shape, out / "generative_filters.png")
            prior = model.prior() if hasattr(model, "prior") else None
            if prior is not None and hasattr(prior, "groups"):
                save_categorical_codes(model, test.image_shape, out / "codes.png")
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


# ----------------------------------------------------------------------------- applications
def save_series_scores(series, scores: np.ndarray, path: Path, *, threshold: float | None = None,
                       title: str | None = None) -> None:
    """A series (each channel), its per-step anomaly score below, the labelled anomalies shaded in both,
    the top-scoring step marked, and the detection threshold when given."""
    t = np.arange(len(series))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for c, name in enumerate(series.channels):
        top.plot(t, series.values[:, c], lw=0.7, label=name)
    if len(series.channels) > 1:
        top.legend(loc="upper right", fontsize=8)
    bottom.plot(t, scores, lw=0.8, color="tab:purple")
    for i, (a, b) in enumerate(series.anomaly_regions()):
        for ax in (top, bottom):
            ax.axvspan(a - 0.5, b + 0.5, color="tab:red", alpha=0.25, lw=0, label="labelled anomaly" if i == 0 else None)
    peak = int(np.argmax(scores))
    bottom.axvline(peak, color="k", ls=":", lw=1, label=f"top step {peak}")
    if threshold is not None:
        bottom.axhline(threshold, color="tab:orange", ls="--", lw=1, label="threshold")
    bottom.legend(loc="upper right", fontsize=8)
    top.set_ylabel("value")
    bottom.set_ylabel("anomaly score")
    bottom.set_xlabel("time step")
    top.set_title(title or f"{series.origin}")
    fig.tight_layout()
    _save(fig, path)


def save_score_histogram(scores: np.ndarray, labels: np.ndarray | None, path: Path, *, threshold: float | None = None,
                         title: str = "anomaly scores") -> None:
    """Histograms of the scores of normal and anomalous rows (one histogram without labels)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    finite = np.isfinite(scores)
    bins = np.histogram_bin_edges(scores[finite], bins=60)
    if labels is None:
        ax.hist(scores[finite], bins=bins, color="tab:blue", alpha=0.8)
    else:
        for value, name, colour in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:red")):
            ax.hist(scores[finite & (labels == value)], bins=bins, alpha=0.6, color=colour, label=name, density=True)
        ax.legend()
    if threshold is not None:
        ax.axvline(threshold, color="tab:orange", ls="--", label="threshold")
    ax.set_xlabel("score (higher = more anomalous)")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def save_imputation_grid(observed: torch.Tensor, imputed: torch.Tensor, truth: torch.Tensor, image_shape,
                         path: Path, missing_value: float = 0.5) -> None:
    """Images in three rows: the observed pixels (missing ones drawn at ``missing_value``, mid grey), the
    imputation, the truth; one column per image."""
    shown = torch.where(torch.isnan(observed), torch.full_like(observed, missing_value), observed)
    save_image_grid(torch.cat([shown, imputed, truth]), image_shape, path, nrow=len(observed))


def save_embedding(points: np.ndarray, labels: np.ndarray | None, path: Path, title: str) -> None:
    """A 2-D embedding coloured by label."""
    fig, ax = plt.subplots(figsize=(5, 5))
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels, s=3, cmap="tab10" if labels is not None else None, alpha=0.7)
    if labels is not None:
        fig.colorbar(sc, ax=ax)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])

# ----------------------------------------------------------------------------- discrete latents (issue 9)
@torch.no_grad()
def save_generative_filters(model, image_shape, path: Path, max_filters: int = 100) -> None:
    """The generative weights onto x of a Helmholtz machine / sigmoid belief net, one image per unit of
    h_1 (``model.generative_filters()``, (H_1, D)), each scaled to [0, 1] on its own (grey 0.5 = 0):
    on shifter, 4×8 filters that show which pair of shifted pixels a unit draws (Hinton et al. 1995, Fig. 3)."""
    filters = _normalize_rows(model.generative_filters()[:max_filters].float().cpu())
    save_image_grid(filters, image_shape, path, nrow=min(10, len(filters)))


@torch.no_grad()
def categorical_codes(prior, seed: int = FIGURE_SEED) -> torch.Tensor:
    """Codes (N·K, N·K) of a categorical prior of N groups × K classes: row n·K + k is a fixed draw from
    the prior with group n set to class k (the other groups held at that draw)."""
    groups, classes = prior.groups, prior.classes
    device = prior.logits.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        base = prior.sample().reshape(groups, classes)  # (N, K) one-hot rows
    codes = base.expand(groups, classes, groups, classes).clone()  # (n, k, N, K)
    index = torch.arange(groups)
    codes[index, :, index, :] = torch.eye(classes, dtype=base.dtype, device=base.device)  # group n ← class k
    return codes.reshape(groups * classes, groups * classes)


@torch.no_grad()
def categorical_code_grid(model, seed: int = FIGURE_SEED) -> torch.Tensor:
    """Decoder means (N·K, D) of :func:`categorical_codes`: one row of the grid per group, one column per class."""
    z = categorical_codes(model.prior(), seed)
    y = None
    if getattr(model, "num_classes", None):
        y = torch.zeros(len(z), dtype=torch.long, device=z.device)
    return model.decode(z, y).mean


def save_categorical_codes(model, image_shape, path: Path, seed: int = FIGURE_SEED) -> None:
    """``categorical_code_grid`` as an image: one row per group, one column per class."""
    save_image_grid(categorical_code_grid(model, seed), image_shape, path, nrow=model.prior().classes)


def save_estimator_comparison(curves: dict, path: Path, title: str = "") -> None:
    """Gradient estimators side by side: log-variance of the encoder's gradient against steps (left)
    and the validation −ELBO of the same runs (right).

    ``curves[name]`` = {"steps": [...], "log_variance": [...], "neg_elbo": [...]} (nats per example).
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, c in curves.items():
        left.plot(c["steps"], c["log_variance"], marker=".", label=name)
        right.plot(c["steps"], c["neg_elbo"], marker=".", label=name)
    left.set_xlabel("step")
    left.set_ylabel("log mean per-coordinate variance")
    left.set_title("encoder gradient variance")
    right.set_xlabel("step")
    right.set_ylabel("-ELBO (nats / example)")
    right.set_title("validation -ELBO")
    right.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


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


# ============================================================================= signals (1-D, 3-D) and code models (vq-vae, priors)
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
