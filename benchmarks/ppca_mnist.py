"""PPCA on MNIST: aekit's closed form and EM against scikit-learn's PCA and FactorAnalysis.

Fits every model on the 60000 training images (784 pixels in [0, 1]) with q latent dimensions and
reports, from one run on one machine, with the fits interleaved round by round: fit time (min and
median over rounds), the average test log-likelihood (nats per image, log p(x) under the fitted
Gaussian, 10000 test images), and how far EM ends from the closed-form maximum (relative gaps of
the training and test log-likelihoods, and of the covariance W Wᵀ + σ² I). It also reports how
closely aekit's closed form with ``covariance="unbiased"`` reproduces
``sklearn.decomposition.PCA.score_samples`` (same model: the PPCA covariance built from the
1/(N − 1) sample covariance).

All estimators get the same float64 copy of the data (scikit-learn keeps float32 inputs in float32,
which would make the likelihood comparison a comparison of precisions).

Constant pixels: 67 MNIST pixels are 0 in every training image. PPCA's noise is isotropic, so
those directions get σ² (the mean discarded eigenvalue) in both aekit and scikit-learn's PCA, and the
likelihood stays finite on test images that light them up. Factor analysis gives every pixel its own
noise variance ψ_j; scikit-learn floors ψ_j at 1e-12, so a test image with ink on such a pixel gets a
log-likelihood around −x²/(2·1e-12): its average test log-likelihood is reported as is, with the count
of affected test images.

Usage (on a shared, busy machine prefer OMP_NUM_THREADS=1: contended threads make timings erratic):
    OMP_NUM_THREADS=2 python benchmarks/ppca_mnist.py --data-dir /work/shared/data/mnist --out runs/ppca_mnist.json
Small budget (one round, about a minute, most of it FactorAnalysis): add --repeats 1.

The data are read straight from the IDX files (not ``aekit.data.load_data``, which holds out a
validation split from the 60000 training images).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import struct
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.exceptions import ConvergenceWarning

from aekit.models.ppca import PPCA


def read_idx_images(path: Path) -> np.ndarray:
    """(N, rows*cols) float32 in [0, 1] from a gzipped IDX3 file."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 2051:
        raise SystemExit(f"{path} is not an IDX image file (magic {magic}, expected 2051)")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows * cols).astype(np.float32) / 255.0


def timed(fit):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fit()
    return time.perf_counter() - start, result


def summary(times: list[float]) -> dict:
    return dict(min_s=min(times), median_s=float(np.median(times)), all_s=times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/data/mnist"))
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON results")
    parser.add_argument("--q", type=int, default=30, help="latent dimension / number of components")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds; each round fits every model once, in a rotated order (interleaved, so "
                             "load changes on a shared machine hit all alike); min and median are reported")
    parser.add_argument("--em-max-iter", type=int, default=1000)
    parser.add_argument("--em-tol", type=float, default=1e-12, help="PPCA EM tol (its default)")
    parser.add_argument("--fa-max-iter", type=int, default=1000, help="sklearn FactorAnalysis max_iter (its default)")
    args = parser.parse_args()

    load_start = os.getloadavg()
    x_train = read_idx_images(args.data_dir / "train-images-idx3-ubyte.gz").astype(np.float64)  # (60000, 784)
    x_test = read_idx_images(args.data_dir / "t10k-images-idx3-ubyte.gz").astype(np.float64)  # (10000, 784)
    q = args.q
    constant = x_train.std(axis=0) == 0  # (784,) pixels that never vary in train
    lit = (x_test[:, constant] != 0).any(axis=1)  # (10000,) test images with ink on such a pixel
    lit_constant = int(lit.sum())

    fits = {
        "ours_ml": lambda: PPCA(q).fit(x_train),
        "ours_unbiased": lambda: PPCA(q, covariance="unbiased").fit(x_train),
        "ours_em": lambda: PPCA(q, method="em", max_iter=args.em_max_iter, tol=args.em_tol,
                                random_state=0).fit(x_train),
        "sklearn_pca": lambda: PCA(n_components=q).fit(x_train),
        "sklearn_fa": lambda: FactorAnalysis(n_components=q, max_iter=args.fa_max_iter, random_state=0).fit(x_train),
    }
    names = list(fits)
    times: dict[str, list[float]] = {name: [] for name in names}
    fitted = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotated order
                t, fitted[name] = timed(fits[name])
                times[name].append(t)
                print(f"round {r + 1}/{args.repeats}: {name} {t:.2f} s", flush=True)
    ours, ours_unbiased, em = fitted["ours_ml"], fitted["ours_unbiased"], fitted["ours_em"]
    sk_pca, fa = fitted["sklearn_pca"], fitted["sklearn_fa"]

    ll_ours = ours.score_samples(x_test)  # (10000,)
    ll_ours_unbiased = ours_unbiased.score_samples(x_test)
    ll_sk = sk_pca.score_samples(x_test)
    rel = np.abs(ll_ours_unbiased - ll_sk) / np.abs(ll_sk)
    rel_mean = abs(ll_ours_unbiased.mean() - ll_sk.mean()) / abs(ll_sk.mean())
    noise_rel = abs(ours_unbiased.noise_variance_ - float(sk_pca.noise_variance_)) / float(sk_pca.noise_variance_)

    ll_em = em.score_samples(x_test)
    ll_fa = fa.score_samples(x_test)
    cov_gap = float((em.get_covariance() - ours.get_covariance()).abs().max() / ours.get_covariance().abs().max())
    train_cf, train_em = ours.score(x_train), em.score(x_train)
    em_row = dict(model=f"aekit PPCA EM (PX-EM + SQUAREM, tol={args.em_tol:g})", test_loglik=float(ll_em.mean()),
                  n_iter=em.n_iter_, converged=em.converged_, noise_variance=em.noise_variance_,
                  train_loglik_rel_gap_to_closed_form=(train_cf - train_em) / abs(train_cf),
                  test_loglik_rel_gap_to_closed_form=float((ll_ours.mean() - ll_em.mean()) / abs(ll_ours.mean())),
                  covariance_max_rel_gap_to_closed_form=cov_gap, **summary(times["ours_em"]))
    rows = [
        dict(model="aekit PPCA closed-form (covariance='ml')", test_loglik=float(ll_ours.mean()), n_iter=0,
             noise_variance=ours.noise_variance_, **summary(times["ours_ml"])),
        dict(model="aekit PPCA closed-form (covariance='unbiased')", test_loglik=float(ll_ours_unbiased.mean()),
             n_iter=0, noise_variance=ours_unbiased.noise_variance_, **summary(times["ours_unbiased"])),
        em_row,
        dict(model=f"sklearn PCA({q}) [{sk_pca._fit_svd_solver}]", test_loglik=float(ll_sk.mean()), n_iter=0,
             noise_variance=float(sk_pca.noise_variance_), **summary(times["sklearn_pca"])),
        dict(model=f"sklearn FactorAnalysis({q})", test_loglik=float(ll_fa.mean()), n_iter=int(fa.n_iter_),
             max_iter=args.fa_max_iter, test_loglik_median=float(np.median(ll_fa)),
             test_loglik_without_lit_constant_pixels=float(ll_fa[~lit].mean()), **summary(times["sklearn_fa"])),
    ]
    results = dict(
        q=q, n_train=len(x_train), n_test=len(x_test), n_features=x_train.shape[1], repeats=args.repeats,
        constant_train_pixels=int(constant.sum()), test_images_with_ink_on_constant_pixels=lit_constant,
        rows=rows,
        closed_form_vs_sklearn_pca=dict(
            covariance="unbiased (both)", max_rel_diff_per_image=float(rel.max()),
            rel_diff_of_mean=float(rel_mean), noise_variance_rel_diff=float(noise_rel)),
        fit_time_ratio_ours_over_sklearn_pca=min(times["ours_ml"]) / min(times["sklearn_pca"]),
        fit_time_ratio_em_over_factor_analysis=min(times["ours_em"]) / min(times["sklearn_fa"]),
        warnings=[str(w.message) for w in caught],
        machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(),
                     omp_num_threads=os.environ.get("OMP_NUM_THREADS"), torch_threads=torch.get_num_threads(),
                     loadavg_start=load_start, loadavg_end=os.getloadavg(),
                     torch=torch.__version__, sklearn=sklearn.__version__, numpy=np.__version__),
    )

    print(f"\nMNIST, q={q}: fit on {len(x_train)} x {x_train.shape[1]}, test log-likelihood on {len(x_test)} images, "
          f"{args.repeats} interleaved rounds\n")
    print("| model | fit (s), min | fit (s), median | test log-lik (nats/image) | EM/FA iterations |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['model']} | {row['min_s']:.2f} | {row['median_s']:.2f} | {row['test_loglik']:.4f} "
              f"| {row['n_iter'] or '—'} |")
    cmp = results["closed_form_vs_sklearn_pca"]
    print(f"\nours (unbiased) vs sklearn PCA: max per-image relative diff {cmp['max_rel_diff_per_image']:.2e}, "
          f"of the mean {cmp['rel_diff_of_mean']:.2e}, σ² {cmp['noise_variance_rel_diff']:.2e}")
    print(f"closed-form fit time ours / sklearn PCA: {results['fit_time_ratio_ours_over_sklearn_pca']:.2f}; "
          f"EM / FactorAnalysis: {results['fit_time_ratio_em_over_factor_analysis']:.3f} (min over rounds)")
    print(f"EM: {em.n_iter_} evaluations, converged={em.converged_}, relative gap to the closed form: train "
          f"log-lik {em_row['train_loglik_rel_gap_to_closed_form']:.1e}, test log-lik "
          f"{em_row['test_loglik_rel_gap_to_closed_form']:.1e}, max covariance entry {cov_gap:.1e}")
    print(f"FA: {lit_constant} test images have ink on the {int(constant.sum())} pixels constant in train "
          f"(ψ floored at 1e-12 there); median test log-lik {rows[4]['test_loglik_median']:.2f}, mean over the "
          f"other {int((~lit).sum())} images {rows[4]['test_loglik_without_lit_constant_pixels']:.2f} "
          f"(PPCA closed form on those: {float(ll_ours[~lit].mean()):.2f})")
    if caught:
        print("warnings: " + "; ".join(results["warnings"]))
    print(f"load average start {load_start}, end {results['machine']['loadavg_end']}, "
          f"OMP_NUM_THREADS={results['machine']['omp_num_threads']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
