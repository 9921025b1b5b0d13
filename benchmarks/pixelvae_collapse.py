"""Posterior collapse with an autoregressive decoder, and its cure: a VAE whose p(x|z) is a PixelCNN.

With a decoder that can model the data on its own — a gated PixelCNN over the pixels, fed with decoder
features of z (PixelVAE-style, ``--likelihood pixelcnn``) — the ELBO is best served by ignoring z:
KL(q(z|x) ‖ p(z)) → 0 and no latent unit stays active (Bowman et al. 2016; Chen et al. 2017, "Variational
Lossy Autoencoder"). Free bits (Kingma et al. 2016) and KL annealing (Bowman et al. 2016) keep the
latents in use. Four runs of the same MLP encoder (784-400-16, Gaussian q) on binarized MNIST:

* ``bernoulli``: the factorized Bernoulli decoder, for reference (no collapse);
* ``pixelcnn``: the PixelCNN decoder, plain ELBO;
* ``pixelcnn + free bits``: λ = ``--free-bits`` nats per latent dimension;
* ``pixelcnn + KL annealing``: β rising linearly from 0 to 1 over ``--warmup`` of the steps.

Reported on the test split (``aekit evaluate``'s figures): KL (nats), active units (Cov_x E_q[z_j] > 0.01),
reconstruction term, negative ELBO. The two commands of the claim are the ``pixelcnn`` and
``pixelcnn + free bits`` rows:

    aekit train vae --likelihood pixelcnn --data mnist --binarize dynamic --out runs/pixelvae
    aekit train vae --likelihood pixelcnn --free-bits 0.5 --data mnist --binarize dynamic --out runs/pixelvae-fb

    python benchmarks/pixelvae_collapse.py --data-dir /work/shared/data/mnist --steps 5000 --out bench-collapse.json
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
from aekit.evaluate import evaluate_model
from aekit.trainer import prepare_data


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--data", default="mnist", help="mnist (needs --data-dir) or digits")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--free-bits", type=float, default=0.5)
    p.add_argument("--warmup", type=float, default=0.5, help="share of the steps over which β rises to 1")
    p.add_argument("--pixelcnn-layers", type=int, default=6)
    p.add_argument("--pixelcnn-channels", type=int, default=32)
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--runs", default="bernoulli,pixelcnn,pixelcnn + free bits,pixelcnn + KL annealing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    pixelcnn = dict(likelihood="pixelcnn", pixelcnn_layers=a.pixelcnn_layers, pixelcnn_channels=a.pixelcnn_channels)
    configs = {"bernoulli": {}, "pixelcnn": pixelcnn, "pixelcnn + free bits": {**pixelcnn, "free_bits": a.free_bits},
               "pixelcnn + KL annealing": {**pixelcnn, "kl_schedule": "linear",
                                            "warmup_steps": max(1, int(a.warmup * a.steps))}}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.runs.split(","):
            start = time.perf_counter()
            model = aekit.train("vae", a.data, out=Path(tmp) / name.replace(" ", "_").replace("+", ""),
                                data_dir=a.data_dir, steps=a.steps, batch_size=a.batch_size, binarize="dynamic",
                                hidden_dims=(400,), latent_dim=a.latent_dim, seed=a.seed, figures="none",
                                progress=False, **configs[name])
            seconds = time.perf_counter() - start
            test = prepare_data(model.config).test
            r = evaluate_model(model, test, iw_samples=0, progress=False)
            rows[name] = {k: r[k] for k in ("kl", "active_units", "reconstruction", "neg_elbo")} | {
                "train_seconds": seconds, "settings": configs[name]}
            print(f"{name}: KL {r['kl']:.2f} nats, {r['active_units']}/{a.latent_dim} active units, "
                  f"-ELBO {r['neg_elbo']:.2f} ({seconds:.0f}s)", flush=True)
    print(f"\nVAE on binarized {a.data}, {a.steps} steps of batch {a.batch_size}; test split, nats per image\n")
    print("| decoder | KL | active units | reconstruction | -ELBO |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['kl']:.2f} | {r['active_units']}/{a.latent_dim} | {r['reconstruction']:.2f} | "
              f"{r['neg_elbo']:.2f} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"machine": {"platform": platform.platform(), "torch": torch.__version__},
                                           "settings": vars(a), "rows": rows}, indent=2))
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
