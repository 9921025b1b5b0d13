"""Codebook health: how many of K = 512 codes a VQ-VAE uses over the MNIST test set, with and without
the fixes for codebook collapse.

Five vq-vae runs of the same network (aekit defaults: conv body 32-64 to 7x7 maps, two residual
blocks, D = 64, Bernoulli likelihood on grey MNIST, Adam 1e-3, batch 256), trained for the same number
of steps, that differ only in how the codebook is learned:

* ``plain``: the codebook loss ‖sg(z) − e‖², U(−1/K, 1/K) initialization, no restarts (the paper's recipe);
* ``+restarts``: the same with dead-code restarts (codes used < 1 time per batch, running average);
* ``+kmeans``: the same with k-means initialization from the first batches, no restarts;
* ``ema``: EMA codebook (decay 0.99), uniform init, no restarts;
* ``ema+kmeans+restarts``: aekit's default.

Reported per run, on the test split: codes used (and as a share of K, the anchor: ≥ 90% with restarts
or k-means), usage perplexity over the whole split, the mean per-batch perplexity at batch 256,
reconstruction −log p(x|z_q) (nats) and squared error per image.

    python benchmarks/vq_codebook_health.py --data-dir /work/shared/data/mnist --steps 2000 \\
        --out bench-vq-health.json --figure vq-health.png
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

import aekit
from aekit.models.vqvae import code_counts, codebook_usage
from aekit.trainer import prepare_data

CONFIGS = {
    "plain": dict(codebook_update="loss", codebook_init="uniform", restart_threshold=0.0),
    "+restarts": dict(codebook_update="loss", codebook_init="uniform", restart_threshold=1.0),
    "+kmeans": dict(codebook_update="loss", codebook_init="kmeans", restart_threshold=0.0),
    "ema": dict(codebook_update="ema", codebook_init="uniform", restart_threshold=0.0),
    "ema+kmeans+restarts": dict(codebook_update="ema", codebook_init="kmeans", restart_threshold=1.0),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--data", default="mnist")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--codebook-size", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of: " + ", ".join(CONFIGS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument("--figure", default=None, help="code-usage histograms of the runs (.png)")
    a = p.parse_args()

    rows, counts = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.configs.split(","):
            start = time.perf_counter()
            model = aekit.train("vq-vae", a.data, out=Path(tmp) / name.replace("+", "_"), data_dir=a.data_dir,
                                steps=a.steps, batch_size=a.batch_size, codebook_size=a.codebook_size, seed=a.seed,
                                figures="none", progress=False, **CONFIGS[name])
            seconds = time.perf_counter() - start
            test = prepare_data(model.config).test
            usage = codebook_usage(model, test, batch_size=256)
            with torch.no_grad():
                rec = sum(float(-model.decode(model.encode(test.x[s:s + 1000])).log_prob(test.x[s:s + 1000]).sum())
                          for s in range(0, len(test), 1000)) / len(test)
                sq = sum(float(((model.reconstruct(test.x[s:s + 1000]) - test.x[s:s + 1000]) ** 2).sum())
                         for s in range(0, len(test), 1000)) / len(test)
            rows[name] = {**usage, "reconstruction": rec, "squared_error": sq, "train_seconds": seconds,
                          "restarts": int(model.quantizer.restarts), **CONFIGS[name]}
            counts[name] = code_counts(model, test.x).tolist()
            print(f"{name}: {usage['codes_used']}/{a.codebook_size} codes used, perplexity "
                  f"{usage['usage_perplexity']:.1f}, reconstruction {rec:.2f} nats ({seconds:.0f}s)", flush=True)
    print(f"\nCodebook health, K = {a.codebook_size}, {a.steps} steps of batch {a.batch_size} on {a.data} "
          f"(test split, {len(test)} images, 7x7 codes each)\n")
    print("| codebook | codes used | share of K | usage perplexity (whole split) | batch perplexity (256) "
          "| reconstruction (nats) | squared error |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['codes_used']} | {r['codes_used_fraction']:.1%} | {r['usage_perplexity']:.1f} | "
              f"{r['batch_perplexity']:.1f} | {r['reconstruction']:.2f} | {r['squared_error']:.2f} |")
    verdict = {name: r["codes_used_fraction"] >= 0.9 for name, r in rows.items()}
    print("\n>= 90% of K used: " + ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in verdict.items()))
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                           "threads": torch.get_num_threads()}, "settings": vars(a), "rows": rows,
               "at_least_90_percent": verdict}
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))
        print(f"wrote {a.out}")
    if a.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        fig, axes = plt.subplots(1, len(counts), figsize=(3.4 * len(counts), 3), squeeze=False, sharey=True)
        for ax, (name, c) in zip(axes[0], counts.items()):
            c = np.sort(np.array(c))[::-1]
            ax.bar(np.arange(len(c)), np.where(c > 0, c, np.nan), width=1.0)
            ax.set_yscale("log")
            ax.set_xlim(-0.5, len(c) - 0.5)  # unused codes are the empty right end
            ax.set_title(f"{name}\n{rows[name]['codes_used']}/{len(c)} used", fontsize=9)
            ax.set_xlabel("code (sorted)")
        axes[0, 0].set_ylabel("test assignments")
        fig.tight_layout()
        fig.savefig(a.figure, dpi=100)
        print(f"wrote {a.figure}")


if __name__ == "__main__":
    main()
