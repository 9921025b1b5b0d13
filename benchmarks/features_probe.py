"""Codes as features: a linear probe on the codes of aekit's models against raw pixels, and 2-D embeddings.

Part 1, linear probe: each model is trained without labels on the training split; its codes
(``model.embed``: the autoencoder's code, the posterior mean of a VAE / PPCA, E[h | v] of an RBM) of
the training and test images are computed; a multinomial logistic regression (scikit-learn,
standardized features, L2 C = 1, lbfgs) is fitted on the codes of n labelled training images (a
class-stratified subset, n = 100, 1000, all) and its test accuracy is reported, beside the same probe
on raw pixels. Models: ae, vae, pca, ppca (d = 32), rbm (500 hidden units, binarized pixels), deep-ae
(784-1000-500-250-30, RBM-pretrained, Hinton & Salakhutdinov 2006).

Part 2, 2-D embeddings: ae and vae with a 2-D code, PCA to 2 components, and t-SNE (scikit-learn,
perplexity 30) of the same test images; each scored by scikit-learn's trustworthiness (k = 5) against
the pixels, on ``--embed-rows`` test images; one scatter figure each, coloured by digit.

    python benchmarks/features_probe.py --data digits --epochs 5 --out feat.json                  # smoke, offline
    python benchmarks/features_probe.py --data mnist --data-dir ../shared/data/mnist --epochs 20 \\
        --out feat.json --markdown feat.md --figures figs/
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

from aekit.api import build_config
from aekit.config import DataConfig
from aekit.data.splits import load_configured
from aekit.features import linear_probe, trustworthiness
from aekit.run_data import fit_run, prepare_run_data


def probe_models(epochs: int, data: str):
    nets = dict(hidden_dims=(400, 200), epochs=epochs)
    deep = (1000, 500, 250) if data != "digits" else (128, 64)
    return [("ae (d=32)", "ae", dict(latent_dim=32, **nets)),
            ("vae (d=32)", "vae", dict(latent_dim=32, **nets)),
            ("pca (d=32)", "pca", dict(latent_dim=32)),
            ("ppca (d=32)", "ppca", dict(latent_dim=32, likelihood="gaussian")),
            ("rbm (500 hidden)", "rbm", dict(latent_dim=500, binarize="static", epochs=max(1, epochs // 2))),
            ("deep-ae (pretrained, d=30)", "deep-ae", dict(hidden_dims=deep, latent_dim=30, pretrain="rbm",
                                                          pretrain_epochs=max(1, epochs // 2), epochs=epochs))]


@torch.no_grad()
def codes(model, x: torch.Tensor) -> np.ndarray:
    return torch.cat([model.embed(x[s:s + 1000]) for s in range(0, len(x), 1000)]).double().numpy()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--labels", default="100,1000,all", help="labelled training images for the probe")
    p.add_argument("--embed-rows", type=int, default=2000, help="test images in the 2-D embeddings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument("--markdown", default=None)
    p.add_argument("--figures", default=None)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    counts = [None if n == "all" else int(n) for n in a.labels.split(",")]
    grey = load_configured(DataConfig(name=a.data, data_dir=a.data_dir), binarize="none")
    y_train, y_test = grey.train.y.numpy(), grey.test.y.numpy()
    probe, seconds = {}, {}

    def probe_row(name, train_codes, test_codes):
        probe[name] = {("all" if n is None else n): linear_probe(train_codes, y_train, test_codes, y_test, num_labels=n,
                                                                 seed=a.seed) for n in counts}
        print(f"probe  {name:<28} " + "  ".join(f"{k}: {v:.4f}" for k, v in probe[name].items()), flush=True)

    start = time.perf_counter()
    probe_row("raw pixels", grey.train.x.double().numpy(), grey.test.x.double().numpy())
    seconds["raw pixels"] = time.perf_counter() - start
    embeddings = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind, kw in probe_models(a.epochs, a.data):
            start = time.perf_counter()
            cfg = build_config(kind, a.data, data_dir=a.data_dir, figures="none", progress=False, seed=a.seed, **kw)
            splits = prepare_run_data(cfg, loaded=grey)
            model = fit_run(cfg, Path(tmp) / kind, splits=splits)
            probe_row(name, codes(model, splits.train.x), codes(model, splits.test.x))
            seconds[name] = time.perf_counter() - start
        # 2-D embeddings of the same test images
        rows = min(a.embed_rows, len(grey.test))
        pixels = grey.test.x[:rows].double().numpy()
        for name, kind, kw in (("ae (d=2)", "ae", dict(hidden_dims=(400, 200), epochs=a.epochs)),
                               ("vae (d=2)", "vae", dict(hidden_dims=(400, 200), epochs=a.epochs)),
                               ("pca (d=2)", "pca", dict())):
            cfg = build_config(kind, a.data, data_dir=a.data_dir, latent_dim=2, figures="none", progress=False,
                               seed=a.seed, **kw)
            splits = prepare_run_data(cfg, loaded=grey)
            model = fit_run(cfg, Path(tmp) / f"{kind}-2d", splits=splits)
            embeddings[name] = codes(model, splits.test.x[:rows])
    from sklearn.manifold import TSNE

    start = time.perf_counter()
    embeddings["t-SNE (perplexity 30)"] = TSNE(2, perplexity=30, random_state=a.seed, init="pca").fit_transform(pixels)
    seconds["t-SNE"] = time.perf_counter() - start
    trust = {name: trustworthiness(pixels, e, k=5) for name, e in embeddings.items()}
    for name, t in trust.items():
        print(f"2-D    {name:<28} trustworthiness(k=5) {t:.4f}", flush=True)
    if a.figures:
        from aekit.plots import save_embedding

        Path(a.figures).mkdir(parents=True, exist_ok=True)
        for name, e in embeddings.items():
            stem = name.split(" ")[0].lower()
            save_embedding(e, y_test[:rows], Path(a.figures) / f"embedding-{stem}.png",
                           f"{name}: trustworthiness {trust[name]:.3f}")
    keys = ["all" if n is None else n for n in counts]
    lines = ["| codes | " + " | ".join(f"{k} labels" for k in keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |" for name, r in probe.items()]
    lines += ["", "| 2-D embedding | trustworthiness (k=5) |", "|---|---|"]
    lines += [f"| {name} | {t:.4f} |" for name, t in trust.items()]
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(json.dumps({"data": a.data, "epochs": a.epochs, "probe": {k: {str(n): v for n, v in r.items()}
                                                                                        for k, r in probe.items()},
                                           "trustworthiness": trust, "embed_rows": rows, "seconds": seconds,
                                           "machine": platform.platform(), "torch": torch.__version__}, indent=2))
    if a.markdown:
        Path(a.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
