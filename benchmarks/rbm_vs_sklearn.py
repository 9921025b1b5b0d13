"""aekit's RBM against scikit-learn's BernoulliRBM on MNIST: epoch time and test pseudo-likelihood.

Both models see the same MNIST training images (60 000 × 784, float32 in [0, 1], not binarized),
with 500 hidden units, batches of 100, learning rate 0.1 on batch means (scikit-learn's convention:
lr / batch_size times batch sums) and the same number of epochs, in one process, with the same
number of CPU threads for torch and for numpy's BLAS (set by ``--threads``).

aekit runs CD-1 (the headline row) and PCD-1; scikit-learn's BernoulliRBM always runs PCD-1
("stochastic maximum likelihood"), so the PCD-1 row is the like-for-like algorithm.  The test-set
figure is scikit-learn's stochastic pseudo-likelihood, D · log σ(F(ṽ) - F(v)), with the same
flipped coordinate per image for every model (``random_state`` fixes it).  scikit-learn keeps
float32 input in float32; a float64 row shows the common ``X / 255.`` case.

    OMP_NUM_THREADS=1 python benchmarks/rbm_vs_sklearn.py --threads 1 --epochs 1 --out rbm_bench.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import struct
import time
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.neural_network import BernoulliRBM
from threadpoolctl import threadpool_limits

from aekit.models.rbm import RBMEstimator


def read_idx_images(path: Path) -> np.ndarray:
    """An IDX3 gzip file of uint8 images -> (N, rows·cols) float32 in [0, 1]."""
    with gzip.open(path, "rb") as f:
        magic, count, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            raise SystemExit(f"{path} is not an IDX3 image file (magic {magic})")
        pixels = np.frombuffer(f.read(), dtype=np.uint8)
    return (pixels.reshape(count, rows * cols) / np.float32(255.0)).astype(np.float32)


def load_mnist(data_dir: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """All 60 000 training images and the 10 000 test images, float32 in [0, 1]."""
    try:  # the package's loader when it is there (its train + val splits make up the training file)
        from aekit.data import load_data

        data = load_data("mnist", data_dir=str(data_dir))
        train = np.concatenate([data.train.x.numpy(), data.val.x.numpy()])
        return train, data.test.x.numpy(), "aekit.data.load_data (train + val)"
    except ImportError:
        return (
            read_idx_images(data_dir / "train-images-idx3-ubyte.gz"),
            read_idx_images(data_dir / "t10k-images-idx3-ubyte.gz"),
            "IDX files read directly",
        )


def timed_fit(model, x) -> float:
    start = time.perf_counter()
    model.fit(x)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/data/mnist"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and for numpy's BLAS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="fits per model, interleaved; the minimum epoch time is reported (shared machines)")
    parser.add_argument("--no-float64", action="store_true", help="skip scikit-learn on float64 input")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    x_train, x_test, source = load_mnist(args.data_dir)
    common = dict(n_components=args.hidden, batch_size=args.batch_size, n_iter=args.epochs,
                  learning_rate=args.learning_rate, random_state=args.seed)
    runs = [
        ("aekit RBM", "CD-1", "float32", RBMEstimator(**common, device="cpu"), x_train),
        ("aekit RBM", "PCD-1", "float32", RBMEstimator(**common, persistent=True, device="cpu"), x_train),
        ("sklearn BernoulliRBM", "PCD-1", "float32", BernoulliRBM(**common), x_train),
    ]
    if not args.no_float64:
        runs.append(("sklearn BernoulliRBM", "PCD-1", "float64", BernoulliRBM(**common), x_train.astype(np.float64)))

    times = [[] for _ in runs]
    with threadpool_limits(limits=args.threads):
        for _ in range(args.repeats):  # interleaved, so a burst of load from elsewhere hits every model
            for i, (_, _, _, model, x) in enumerate(runs):
                times[i].append(timed_fit(model, x) / args.epochs)
        results = []
        for (name, algorithm, dtype, model, x), seconds in zip(runs, times):
            results.append({
                "model": name,
                "algorithm": algorithm,
                "dtype": dtype,
                "epoch_seconds": min(seconds),
                "epoch_seconds_all": seconds,
                "test_pseudo_likelihood": float(np.mean(model.score_samples(x_test.astype(x.dtype)))),
            })
    reference = results[2]["epoch_seconds"]  # scikit-learn on the same float32 data
    for r in results:
        r["speedup_vs_sklearn_float32"] = reference / r["epoch_seconds"]

    print(f"MNIST train {x_train.shape[0]}×{x_train.shape[1]} in [0, 1]; {args.hidden} hidden, "
          f"batch {args.batch_size}, lr {args.learning_rate}, {args.epochs} epoch(s); {args.threads} CPU "
          f"thread(s) for torch and BLAS; epoch time = min over {args.repeats} interleaved fits; data: {source}\n")
    print("| model | algorithm | input | epoch time (s) | speed-up vs sklearn float32 | test pseudo-likelihood |")
    print("|---|---|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['model']} | {r['algorithm']} | {r['dtype']} | {r['epoch_seconds']:.2f} | "
              f"{r['speedup_vs_sklearn_float32']:.1f}× | {r['test_pseudo_likelihood']:.2f} |")

    if args.out is not None:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        config.update(train_shape=list(x_train.shape), test_shape=list(x_test.shape), data_source=source)
        environment = {
            "torch": torch.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        }
        report = {"config": config, "environment": environment, "results": results}
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
