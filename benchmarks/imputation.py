"""Imputation: MIWAE against mean imputation, PPCA, IterativeImputer and KNNImputer; MNIST with missing blocks.

Part 1, the MIWAE demo set-up (Mattei & Frellsen, ``pamattei/miwae``, ``MIWAE_demo_breast.ipynb``):
scikit-learn's breast-cancer data (569 × 30), standardized with the population standard deviation,
50% of the entries removed completely at random with ``np.random.seed(1234)`` and
``np.random.choice(n·p, ⌊n·p/2⌋, replace=False)`` exactly as the notebook does. The score is the mean
squared error on the removed entries. The notebook's model: encoder and decoder 30-128-128 (tanh),
latent 10, K = 20 importance samples, batch 64, Adam 1e-3, 600 epochs, a Student-t decoder, imputation
by K = 1000 weighted decoder samples; it prints an imputation MSE of 0.300 after 601 epochs. aekit's
``miwae`` here: the same sizes, optimizer, K and epochs, a Gaussian decoder with learned σ
(``gaussian-learned``; aekit has no Student-t likelihood), trained on all 569 rows as the notebook
does (the run's validation and test splits are the same rows), imputation by K = 1000 importance
samples of the decoder means (eq. 15 of the paper). Peers: column means; PPCA fitted by EM on the
incomplete data (``aekit.PPCA``, q = 10) and its exact conditional; ``IterativeImputer`` (BayesianRidge,
the notebook's "iterative ridge"); ``KNNImputer`` (k = 5).

Part 2 (``--data-dir``): MNIST with one missing 12 × 12 block per image at a random place. ``miwae``
(784-400-200, latent 32, Bernoulli decoder on grey pixels, K = 5) trains on the incomplete training
images; test images get their own blocks; MSE per missing pixel for MIWAE (importance, K = 500),
PPCA (EM, q = 32, on the same incomplete training images) and pixel means. Figure: observed
(missing pixels grey), MIWAE's imputation, PPCA's, the truth.

    python benchmarks/imputation.py --epochs 20 --out imp.json                                    # smoke
    python benchmarks/imputation.py --epochs 600 --data-dir ../shared/data/mnist --mnist-epochs 20 \\
        --out imp.json --markdown imp.md --figures figs/                      # full: about 30 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from aekit.api import build_config
from aekit.data import ArrayDataset, DataSplits
from aekit.data.incomplete import breast_cancer_problem, imputation_mse as mse
from aekit.impute import impute
from aekit.models.ppca import PPCA
from aekit.run_data import fit_run


def part_breast(epochs: int, seed: int, tmp: Path, miss_samples: int) -> dict:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    xfull, xmiss = breast_cancer_problem()
    missing = np.isnan(xmiss)
    out = {}
    start = time.perf_counter()
    np.save(tmp / "breast.npy", xmiss.astype(np.float32))
    cfg = build_config("miwae", str(tmp / "breast.npy"), likelihood="gaussian-learned", hidden_dims=(128, 128),
                       activation="tanh", latent_dim=10, iw_samples=20, batch_size=64, lr=1e-3, epochs=epochs,
                       figures="none", progress=False, seed=seed)
    rows = ArrayDataset(torch.from_numpy(xmiss.astype(np.float32)), None, None, None, "breast")
    model = fit_run(cfg, tmp / "miwae-breast", splits=DataSplits(rows, rows, rows, binarize="none"))
    filled = impute(model, rows.x, samples=miss_samples, seed=seed).numpy()
    out["MIWAE (aekit, importance K=1000)"] = {"mse": mse(filled, xfull, missing), "seconds": time.perf_counter() - start}
    filled = impute(model, rows.x, method="metropolis", iterations=1000, seed=seed).numpy()
    out["MIWAE (aekit, Metropolis-within-Gibbs, 1000 steps)"] = {"mse": mse(filled, xfull, missing)}
    peers = {"mean imputation": lambda: SimpleImputer(strategy="mean").fit_transform(xmiss),
             "PPCA, EM with missing entries (aekit, q=10)": lambda: PPCA(10, method="em", max_iter=2000,
                                                                         random_state=seed).fit(xmiss).impute(xmiss),
             "IterativeImputer (BayesianRidge)": lambda: IterativeImputer(random_state=seed, max_iter=50).fit_transform(xmiss),
             "KNNImputer (k=5)": lambda: KNNImputer(n_neighbors=5).fit_transform(xmiss)}
    for name, run in peers.items():
        start = time.perf_counter()
        out[name] = {"mse": mse(run(), xfull, missing), "seconds": time.perf_counter() - start}
    for name, r in out.items():
        print(f"breast cancer  {name:<52} MSE {r['mse']:.4f}", flush=True)
    return out


def blocks(x: np.ndarray, size: int, rng) -> np.ndarray:
    """x (N, 784) with one size × size block per image set to NaN, at a uniformly random place."""
    out = x.reshape(-1, 28, 28).copy()
    for img in out:
        r, c = rng.integers(0, 28 - size + 1, 2)
        img[r:r + size, c:c + size] = np.nan
    return out.reshape(len(x), -1)


def part_mnist(data_dir: str, epochs: int, train_rows: int, seed: int, tmp: Path, figures: Path | None,
               ppca_iter: int) -> dict:
    from aekit.data import load_data

    rng = np.random.default_rng(seed)
    mnist = load_data("mnist", data_dir=data_dir)
    train = mnist.train.x[:train_rows].numpy()
    test = mnist.test.x[:2000].numpy()
    train_missing, test_missing = blocks(train, 12, rng), blocks(test, 12, rng)
    missing = np.isnan(test_missing)
    np.save(tmp / "mnist-blocks.npy", train_missing.astype(np.float32))
    out = {}
    start = time.perf_counter()
    cfg = build_config("miwae", str(tmp / "mnist-blocks.npy"), hidden_dims=(400, 200), latent_dim=32, iw_samples=5,
                       epochs=epochs, figures="none", progress=False, seed=seed)
    model = fit_run(cfg, tmp / "miwae-mnist")
    miwae = impute(model, torch.from_numpy(test_missing), samples=500, seed=seed).numpy()
    out["MIWAE (aekit, importance K=500)"] = {"mse": mse(miwae, test, missing), "seconds": time.perf_counter() - start}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a capped EM warns that it stopped before its tolerance
        ppca = PPCA(32, method="em", max_iter=ppca_iter, random_state=seed, dtype="float32").fit(train_missing)
    ppca_filled = np.asarray(ppca.impute(test_missing))
    out["PPCA, EM with missing entries (aekit, q=32)"] = {"mse": mse(ppca_filled, test, missing),
                                                         "seconds": time.perf_counter() - start}
    means = np.nanmean(train_missing, 0)
    out["pixel means"] = {"mse": mse(np.where(missing, means, test_missing), test, missing)}
    for name, r in out.items():
        print(f"mnist blocks   {name:<52} MSE/pixel {r['mse']:.4f}", flush=True)
    if figures is not None:
        from aekit.plots import save_image_grid

        figures.mkdir(parents=True, exist_ok=True)
        shown = np.where(missing[:10], 0.5, test_missing[:10])
        rows = np.concatenate([shown, miwae[:10], ppca_filled[:10], test[:10]])
        save_image_grid(torch.from_numpy(rows.astype(np.float32)), (1, 28, 28), figures / "imputation-mnist.png",
                        nrow=10)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=600, help="MIWAE epochs on breast cancer (the notebook: 600)")
    p.add_argument("--samples", type=int, default=1000, help="K importance samples for imputation")
    p.add_argument("--data-dir", default=None, help="MNIST folder: runs part 2")
    p.add_argument("--mnist-epochs", type=int, default=20)
    p.add_argument("--mnist-rows", type=int, default=60000, help="training images for part 2")
    p.add_argument("--ppca-iter", type=int, default=100, help="EM iterations of PPCA on MNIST (O(N·784·32²) each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument("--markdown", default=None)
    p.add_argument("--figures", default=None)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["breast cancer, 50% MCAR"] = part_breast(a.epochs, a.seed, Path(tmp), a.samples)
        if a.data_dir:
            results["MNIST, one 12x12 block missing per image"] = part_mnist(
                a.data_dir, a.mnist_epochs, a.mnist_rows, a.seed, Path(tmp), Path(a.figures) if a.figures else None,
                a.ppca_iter)
    lines = ["| data | method | imputation MSE |", "|---|---|---|"]
    for data, rows in results.items():
        for name, r in rows.items():
            lines.append(f"| {data} | {name} | {r['mse']:.4f} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(json.dumps({"epochs": a.epochs, "results": results, "machine": platform.platform(),
                                           "torch": torch.__version__}, indent=2))
    if a.markdown:
        Path(a.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
