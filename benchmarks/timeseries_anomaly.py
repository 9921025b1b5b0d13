"""Anomalies in sensor series: per-step AUROC / AUPRC / best F1 and the UCR rule, per anomaly kind and on UCR 135.

Synthetic series (``aekit.data.timeseries.synthetic_series``): sin(2πt/40) + N(0, σ²) (σ = 0.05, and a
noisier 0.5), 2000 steps, the
first 1000 the training part, one anomaly of a known kind injected at step 1500 — a spike (+4, one step),
a level shift (+1.5 for 60 steps), a frequency change (3× for 60 steps), a flat line (60 steps). The real
series: number 135 of the UCR anomaly archive (InternalBleeding16, ``../shared/data/timeseries``), trained
on its anomaly-free prefix (the TRAIN file, steps 0–1199), scored on the whole series (7501 steps, anomaly
at 4187–4198); the archive's rule counts a hit when the top-scoring step lies within ±100 of it.

Each model is trained on windows (``--window``, stride 1) of the training part, normalized with its
statistics; window scores are averaged over the windows covering each step. Models: ae (MLP,
reconstruction −log p(x|f(x)) with a unit Gaussian), vae (−ELBO), ppca (exact −log p(x) of the window).
Figures: the series, its per-step score and the labelled anomaly, per kind and for UCR 135.

    python benchmarks/timeseries_anomaly.py --epochs 3 --out ts.json                       # smoke
    python benchmarks/timeseries_anomaly.py --epochs 30 --out ts.json --markdown ts.md --figures figs/
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from aekit.anomaly import ScoreSettings, score_target, target_metrics, target_scores
from aekit.api import build_config
from aekit.data.timeseries import ANOMALY_KINDS, synthetic_series, write_series
from aekit.run_data import fit_run

UCR = "135_UCR_Anomaly_InternalBleeding16"


def models(epochs: int):
    nets = dict(hidden_dims=(128,), batch_size=64, epochs=epochs, likelihood="gaussian")
    return [("ae", "ae", dict(latent_dim=8, **nets), "reconstruction"),
            ("vae", "vae", dict(latent_dim=8, **nets), "neg-elbo"),
            ("ppca (q = 8)", "ppca", dict(latent_dim=8, likelihood="gaussian"), "log-likelihood")]


def run_series(train_file: Path, test_file: Path | None, tmp: Path, epochs: int, window: int, seed: int,
               train_steps: int | None, figures: Path | None, label: str) -> dict:
    out = {}
    for row, kind, kw, score in models(epochs):
        start = time.perf_counter()
        cfg = build_config(kind, f"series:{train_file}", window=window, stride=1, train_steps=train_steps,
                           figures="none", progress=False, seed=seed, **kw)
        model = fit_run(cfg, tmp / f"{label}-{kind}")
        target = score_target(model, None if test_file is None else f"series:{test_file}")
        scores = target_scores(model, target, score=score, settings=ScoreSettings(samples=10), seed=seed)
        metrics = target_metrics(target, scores)
        metrics["seconds"] = time.perf_counter() - start
        out[row] = metrics
        print(f"{label:<12} {row:<14} AUROC {metrics['auroc']:.3f}  AUPRC {metrics['auprc']:.3f}  "
              f"F1 {metrics['best_f1']:.3f}  top step {metrics['top_step']} (UCR hit: {metrics['ucr_hit']})", flush=True)
        if figures is not None and kind == "ae":
            from aekit.plots import save_series_scores

            figures.mkdir(parents=True, exist_ok=True)
            save_series_scores(target.series, scores, figures / f"series-{label}.png",
                               title=f"{label}: ae reconstruction per time step (window {window})")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--ucr-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "timeseries"))
    p.add_argument("--noise", default="0.05,0.5", help="σ of the synthetic series' noise, comma-separated "
                                                      "(0.5: the level shift is 3σ, the spike 8σ)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument("--markdown", default=None)
    p.add_argument("--figures", default=None, help="folder for the figures")
    a = p.parse_args()
    a.noise = [float(v) for v in a.noise.split(",")]
    torch.manual_seed(a.seed)
    figures = Path(a.figures) if a.figures else None
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for noise in a.noise:
            for kind in ANOMALY_KINDS:
                label = f"{kind}, noise {noise:g}"
                path = tmp / f"{kind}-{noise:g}.csv"
                write_series(synthetic_series(kind, noise=noise, seed=a.seed), path)
                results[label] = run_series(path, None, tmp, a.epochs, a.window, a.seed, 1000, figures,
                                            f"{kind}-noise-{noise:g}")
        ucr_train, ucr_test = Path(a.ucr_dir) / f"{UCR}_TRAIN.csv", Path(a.ucr_dir) / f"{UCR}_TEST.csv"
        if ucr_train.is_file() and ucr_test.is_file():
            results["UCR 135"] = run_series(ucr_train, ucr_test, tmp, a.epochs, a.window, a.seed, None, figures,
                                            "ucr-135")
        else:
            print(f"UCR 135 not found in {a.ucr_dir}; skipped (--ucr-dir)")
    lines = ["| series | model | AUROC | AUPRC | best F1 | top step | UCR hit (±100) |", "|---|---|---|---|---|---|---|"]
    for series, rows in results.items():
        for row, m in rows.items():
            lines.append(f"| {series} | {row} | {m['auroc']:.3f} | {m['auprc']:.3f} | {m['best_f1']:.3f} | "
                         f"{m['top_step']} | {'yes' if m['ucr_hit'] else 'no'} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(json.dumps({"window": a.window, "epochs": a.epochs, "results": results,
                                           "machine": platform.platform(), "torch": torch.__version__}, indent=2))
    if a.markdown:
        Path(a.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
