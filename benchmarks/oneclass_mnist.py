"""One-class anomaly detection on MNIST: AUROC per normal class for aekit's models and scikit-learn peers.

The protocol of Ruff et al. (2018, "Deep One-Class Classification", §4.1 and Table 1): for each digit
C, train on the training images of C only (``--normal-class C``); score all 10000 test images; the
other nine digits are the anomalies; report the AUROC. aekit's rows:

    ae, dae        reconstruction: −log p(x | f(x)), Bernoulli decoder on grey pixels (cross-entropy)
    vae            −ELBO, −log p(x) (importance-sampled), reconstruction probability (An & Cho 2015);
                   dynamically binarized training pixels, test pixels binarized once (aekit's default
                   for a likelihood model with Bernoulli pixels)
    ppca           exact −log p(x) of a q-dimensional PPCA on grey pixels
    rbm            free energy F(v) of a binary RBM on statically binarized pixels

beside scikit-learn's IsolationForest and OneClassSVM (RBF kernel, gamma="scale", ν = 0.1) on the raw
pixels, and the paper's Table 1 rows for its deep convolutional autoencoder (DCAE) and one-class Deep
SVDD. Smoke:

    python benchmarks/oneclass_mnist.py --data-dir ../shared/data/mnist --classes 0,1 --epochs 2 --out oc.json

Full (all classes, the budget below; about 40 minutes on 2 CPU cores):

    python benchmarks/oneclass_mnist.py --data-dir ../shared/data/mnist --epochs 30 --out oc.json --markdown oc.md
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from aekit.anomaly import ScoreSettings, detection_metrics, score_samples
from aekit.api import build_config
from aekit.config import DataConfig
from aekit.data.splits import load_configured
from aekit.run_data import fit_run, prepare_run_data

# Ruff et al. 2018, Table 1, MNIST, mean AUROC (%) over 10 seeds per normal class 0..9. NOT checked
# against the paper's text here (the table could not be retrieved while writing this script): the
# values are as recalled, and the issue that asked for this benchmark quotes the means as ≈ 90 and
# ≈ 95. Check them against the paper before quoting them beside measured numbers.
PAPER = {
    "DCAE (Ruff et al. 2018, unchecked)": [97.6, 98.3, 85.4, 86.7, 86.5, 78.2, 94.6, 92.3, 86.5, 90.4],
    "one-class Deep SVDD (Ruff et al. 2018, unchecked)": [98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5],
}


def models(epochs: int):
    """(row name, kind, settings, score): aekit's rows."""
    nets = dict(hidden_dims=(400, 200), batch_size=128, lr=1e-3, epochs=epochs)
    return [
        ("ae", "ae", dict(latent_dim=32, **nets), "reconstruction"),
        ("dae (masking 0.25)", "dae", dict(latent_dim=32, **nets), "reconstruction"),
        ("vae: -ELBO", "vae", dict(latent_dim=16, **nets), "neg-elbo"),
        ("vae: -log p(x)", "vae", dict(latent_dim=16, **nets), "log-likelihood"),
        ("vae: reconstruction probability", "vae", dict(latent_dim=16, **nets), "reconstruction-probability"),
        ("ppca (q = 32): -log p(x)", "ppca", dict(latent_dim=32, likelihood="gaussian"), "log-likelihood"),
        ("rbm (500 hidden): free energy", "rbm", dict(latent_dim=500, binarize="static", epochs=max(1, epochs // 3)),
         "free-energy"),
    ]


def sklearn_rows(train_x: np.ndarray, test_x: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Anomaly scores (higher = more anomalous) of the scikit-learn peers on raw pixels."""
    from sklearn.ensemble import IsolationForest
    from sklearn.svm import OneClassSVM

    forest = IsolationForest(n_estimators=100, random_state=seed).fit(train_x)
    svm = OneClassSVM(kernel="rbf", gamma="scale", nu=0.1).fit(train_x)
    return {"IsolationForest (raw pixels)": -forest.score_samples(test_x),
            "OneClassSVM (raw pixels, RBF, nu=0.1)": -svm.score_samples(test_x)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--samples", type=int, default=10, help="L draws for -ELBO and reconstruction probability")
    p.add_argument("--iw-samples", type=int, default=100, help="k for the VAE's -log p(x)")
    p.add_argument("--no-sklearn", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON results")
    p.add_argument("--markdown", default=None, help="the table as Markdown")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    classes = [int(c) for c in a.classes.split(",")]
    settings = ScoreSettings(samples=a.samples, iw_samples=a.iw_samples)
    table: dict[str, dict[int, float]] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for c in classes:
            grey = load_configured(DataConfig(name="mnist", data_dir=a.data_dir, normal_class=c), binarize="none")
            trained = {}
            for row, kind, kw, score in models(a.epochs):
                start = time.perf_counter()
                key = (kind, tuple(sorted(kw.items())))
                if key not in trained:  # the three vae rows share one model
                    cfg = build_config(kind, "mnist", data_dir=a.data_dir, normal_class=c, figures="none",
                                       progress=False, seed=a.seed, **kw)
                    splits = prepare_run_data(cfg, loaded=grey)
                    trained[key] = (fit_run(cfg, Path(tmp) / f"{kind}-{c}-{len(trained)}", splits=splits), splits)
                model, splits = trained[key]
                test = splits.test
                scores = score_samples(model, test.x, score=score, settings=settings, seed=a.seed)
                table.setdefault(row, {})[c] = 100 * detection_metrics(scores, test.y.numpy())["auroc"]
                seconds[row] = seconds.get(row, 0.0) + time.perf_counter() - start
                print(f"class {c}  {row:<40} AUROC {table[row][c]:.1f}  ({time.perf_counter() - start:.0f}s)", flush=True)
            if not a.no_sklearn:
                start = time.perf_counter()
                splits = grey
                train_x = torch.cat([splits.train.x, splits.val.x]).numpy()
                for row, scores in sklearn_rows(train_x, splits.test.x.numpy(), a.seed).items():
                    table.setdefault(row, {})[c] = 100 * detection_metrics(scores, splits.test.y.numpy())["auroc"]
                    print(f"class {c}  {row:<40} AUROC {table[row][c]:.1f}", flush=True)
                seconds["scikit-learn peers"] = seconds.get("scikit-learn peers", 0.0) + time.perf_counter() - start
    for row, values in PAPER.items():
        table[row] = {c: values[c] for c in classes}
    means = {row: float(np.mean(list(v.values()))) for row, v in table.items()}
    ours = {r: m for r, m in means.items() if "Ruff" not in r and "raw pixels" not in r}
    best = max(ours, key=ours.get)
    dcae = next(r for r in PAPER if r.startswith("DCAE"))
    result = {"classes": classes, "epochs": a.epochs, "auroc": table, "mean": means, "seconds": seconds,
              "best_aekit_row": best, "best_aekit_mean": ours[best], "dcae_mean_over_these_classes": means[dcae],
              "beats_dcae_mean": ours[best] > means[dcae], "machine": platform.platform(),
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    lines = ["| model | " + " | ".join(str(c) for c in classes) + " | mean |",
             "|---|" + "---|" * (len(classes) + 1)]
    for row, values in table.items():
        lines.append(f"| {row} | " + " | ".join(f"{values[c]:.1f}" for c in classes) + f" | **{means[row]:.1f}** |")
    text = "\n".join(lines)
    print(text)
    print(f"best aekit row: {best} ({ours[best]:.1f}); DCAE mean over these classes {means[dcae]:.1f}")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2))
    if a.markdown:
        Path(a.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
