"""Image restoration on MNIST (denoising, inpainting, super-resolution) and photo patches (colorization).

For each degradation, models of aekit trained to undo it — ``ae`` (MLP), ``vae`` (MLP) and ``ae``
with the conv body — are scored on the test set degraded with one fixed seed, beside

* the trivial baseline: the degraded input itself (noise, masks); bicubic upsampling of the
  low-resolution image (downsample:F); the grey image with the training set's mean chroma (grayscale);
* PCA and PPCA reconstructions of the degraded input, both fitted on the clean training images with
  the models' code size (PCA: x̂ = μ + WWᵀ(x̃ − μ), scikit-learn; PPCA: the posterior-mean
  reconstruction μ + W E[z|x̃], aekit.PPCA).

Figures: mean PSNR (dB) and SSIM over the test images. A model passes when it beats its trivial
baseline by ``--margin`` dB (default 1) in mean PSNR.

    python benchmarks/restoration.py --data-dir /work/shared/data/mnist --epochs 10 --out bench-restoration.json
    python benchmarks/restoration.py --data-dir /work/shared/data/mnist --epochs 1 --train-size 10000 --test-size 1000   # quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from aekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from aekit.data.dataset import ArrayDataset, DataSplits
from aekit.regularizers import build_corruption
from aekit.restoration import EVAL_SEED, degrade, evaluate_restoration, score
from aekit.trainer import data_shape, fit, prepare_data

MNIST_TASKS = {"noise": ("gaussian", 0.5), "salt-pepper": ("salt-pepper", 0.25), "mask": ("masking", 0.5),
               "block": ("block", 0.25), "downsample:2": ("downsample:2", 0.0), "downsample:4": ("downsample:4", 0.0)}
PHOTO_TASKS = {"grayscale": ("grayscale", 0.0)}
MODELS = {  # label → ModelConfig changes
    "ae (mlp)": {"kind": "ae"},
    "vae (mlp)": {"kind": "vae"},
    "ae (conv)": {"kind": "ae", "body": "conv", "hidden_dims": (256,)},
}


def subset(splits: DataSplits, train_size: int | None, test_size: int | None) -> DataSplits:
    def cut(d: ArrayDataset, n):
        return d if n is None else dataclasses.replace(d, x=d.x[:n], y=None if d.y is None else d.y[:n])
    return dataclasses.replace(splits, train=cut(splits.train, train_size), test=cut(splits.test, test_size))


def linear_baselines(train_x: torch.Tensor, clean: torch.Tensor, degraded: torch.Tensor, k: int, image_shape):
    """PCA and PPCA reconstructions of the degraded images, fitted on clean training images with k components."""
    from sklearn.decomposition import PCA

    from aekit import PPCA

    pca = PCA(k, random_state=0).fit(train_x.numpy())
    pca_rec = torch.from_numpy(pca.inverse_transform(pca.transform(degraded.numpy()))).float()
    ppca = PPCA(k).fit(train_x.double())
    ppca_rec = ppca.reconstruct(degraded.double()).float()
    lo, hi = float(clean.min()), float(clean.max())
    return score(clean, {"pca": pca_rec.clamp(lo, hi), "ppca": ppca_rec.clamp(lo, hi)}, image_shape)


def run_tasks(data: str, tasks: dict, a, results: dict, tmp: Path) -> None:
    base = RunConfig(model=ModelConfig(kind="ae", latent_dim=a.latent_dim, hidden_dims=tuple(a.hidden_dims)),
                     data=DataConfig(name=data, data_dir=a.data_dir),
                     train=TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                                       figures="none", progress=False, device="cpu"))
    splits = subset(prepare_data(base), a.train_size, a.test_size)
    test, shape = splits.test, data_shape(splits)
    for task, (name, level) in tasks.items():
        corruption = build_corruption(name, level, shape)
        degraded = degrade(test.x, corruption, EVAL_SEED)
        changed = (degraded != test.x).any(1)  # averages over the images the degradation changed
        baseline = corruption.baseline(degraded, splits.train.x)
        psnrs, ssims = score(test.x, {"trivial": baseline, "degraded input": degraded}, test.image_shape)
        lin_psnr, lin_ssim = linear_baselines(splits.train.x, test.x, degraded, a.latent_dim, test.image_shape)
        psnrs.update(lin_psnr)
        if ssims is not None:
            ssims.update(lin_ssim)
        row = {"degradation": str(corruption), "data": data, "images_scored": int(changed.sum()), "baselines": {}}
        for label in ("trivial", "degraded input", "pca", "ppca"):
            row["baselines"][label] = {"psnr": float(psnrs[label][changed].mean()),
                                       "ssim": None if ssims is None else float(ssims[label][changed].mean())}
        row["models"] = {}
        for label, changes in MODELS.items():
            cfg = base.replace(model=dataclasses.replace(base.model, **changes, corruption=name, corruption_level=level))
            start = time.perf_counter()
            model = fit(cfg, tmp / f"{data}-{task}-{label}".replace(" ", "_").replace(":", "").replace("(", "")
                        .replace(")", ""), splits=splits).eval()
            seconds = time.perf_counter() - start
            r = evaluate_restoration(model, test.x, corruption, image_shape=test.image_shape,
                                     reference=splits.train.x).summary()
            gain = r["psnr"]["restored"] - row["baselines"]["trivial"]["psnr"]
            row["models"][label] = {"psnr": r["psnr"]["restored"], "ssim": r.get("ssim", {}).get("restored"),
                                    "gain_db": gain, "passes": gain >= a.margin, "train_seconds": seconds}
            print(f"{data} {task} {label}: PSNR {r['psnr']['restored']:.2f} dB (trivial "
                  f"{row['baselines']['trivial']['psnr']:.2f}, gain {gain:+.2f}) in {seconds:.0f}s", flush=True)
        results["tasks"][f"{data} {task}"] = row


def table(results: dict) -> str:
    lines = ["| data | degradation | trivial | PCA | PPCA | " + " | ".join(MODELS) + " | every model ≥ trivial + margin |",
             "|---|---|---:|---:|---:|" + "---:|" * len(MODELS) + "---|"]
    for row in results["tasks"].values():
        def cell(d):
            return f"{d['psnr']:.2f}" + (f" / {d['ssim']:.3f}" if d.get("ssim") is not None else "")
        models = [cell(row["models"][m]) for m in MODELS]
        verdict = "yes" if all(v["passes"] for v in row["models"].values()) else "no: " + ", ".join(
            m for m, v in row["models"].items() if not v["passes"])
        lines.append(f"| {row['data']} | {row['degradation']} | {cell(row['baselines']['trivial'])} | "
                     f"{cell(row['baselines']['pca'])} | {cell(row['baselines']['ppca'])} | " + " | ".join(models)
                     + f" | {verdict} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="folder with the MNIST IDX files")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--hidden-dims", type=lambda t: [int(v) for v in t.split(",")], default=[400, 200])
    p.add_argument("--latent-dim", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--train-size", type=int, default=None, help="use the first N training images (default all)")
    p.add_argument("--test-size", type=int, default=None, help="score the first N test images (default all)")
    p.add_argument("--margin", type=float, default=1.0, help="dB a model must gain over its trivial baseline")
    p.add_argument("--no-photos", action="store_true", help="skip colorization on photo patches")
    p.add_argument("--models", type=lambda t: t.split(","), default=list(MODELS),
                   help="comma-separated subset of: " + ", ".join(MODELS))
    p.add_argument("--tasks", type=lambda t: t.split(","), default=list(MNIST_TASKS) + list(PHOTO_TASKS),
                   help="comma-separated subset of: " + ", ".join([*MNIST_TASKS, *PHOTO_TASKS]))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    a = p.parse_args()
    unknown = sorted(set(a.models) - set(MODELS)) + sorted(set(a.tasks) - set(MNIST_TASKS) - set(PHOTO_TASKS))
    if unknown:
        p.error(f"unknown model(s) or task(s): {', '.join(unknown)}")
    for label in list(MODELS):
        if label not in a.models:
            del MODELS[label]
    torch.manual_seed(a.seed)
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                           "threads": torch.get_num_threads()},
               "settings": vars(a), "tasks": {}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        mnist = {k: v for k, v in MNIST_TASKS.items() if k in a.tasks}
        photos = {k: v for k, v in PHOTO_TASKS.items() if k in a.tasks and not a.no_photos}
        if mnist:
            run_tasks("mnist", mnist, a, results, Path(tmp))
        if photos:
            run_tasks("photos", photos, a, results, Path(tmp))
    results["seconds"] = time.perf_counter() - start
    print(f"\nMean PSNR (dB) / SSIM on the test images, {a.epochs} epochs per model, code size {a.latent_dim} "
          f"(PCA/PPCA with as many components); margin {a.margin} dB; {results['seconds']:.0f}s in all\n")
    print(table(results))
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))
        print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
