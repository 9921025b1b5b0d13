"""Reconstruction error on grey MNIST at equal bits of code: VQ-VAE, PCA with quantized coefficients, VAE.

* vq-vae with K codes on a 7x7 map: 49·log2 K bits per image (K = 16: 196 bits, K = 512: 441 bits),
  Gaussian likelihood σ = ``--sigma`` (squared error), aekit's default codebook (EMA, k-means, restarts);
* PCA (aekit's closed-form ``pca`` run) keeping d components, each coefficient quantized to b bits by a
  uniform quantizer over its range on the training set (2^b levels, reconstruction at bin centres), so
  that d·b ≤ the vq-vae's bits; every b in ``--pca-bits`` is tried and the best (d, b) is reported;
* vae (MLP 784-400-200-16, Gaussian σ = ``--sigma``) at each β in ``--vae-betas``: its rate is the
  KL(q(z|x) ‖ p(z)) in bits per image (what a bits-back code would cost), reported beside its error.

Squared error Σ_d (x_d − x̂_d)² per test image; x̂ the decoder mean (of z_q, of the posterior mean).

    python benchmarks/vqvae_rate_distortion.py --data-dir /work/shared/data/mnist --steps 5000 \\
        --codebook-sizes 16,512 --vae-betas 1,4 --out bench-vq-rate.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
from pathlib import Path

import torch

import aekit
from aekit.trainer import prepare_data


@torch.no_grad()
def squared_error(model, x, batch: int = 1000) -> float:
    return sum(float(((model.reconstruct(x[s:s + batch]) - x[s:s + batch]) ** 2).sum())
               for s in range(0, len(x), batch)) / len(x)


@torch.no_grad()
def quantized_pca_error(pca, train_x, test_x, d: int, bits: int) -> float:
    """Squared error of PCA with d components and each coefficient on 2^bits uniform levels."""
    basis = pca.decoder_basis()[:, :d].float()  # (D, d), orthonormal columns
    mean = train_x.mean(0)
    coef_train = (train_x - mean) @ basis
    lo, hi = coef_train.min(0).values, coef_train.max(0).values
    levels = 2 ** bits
    step = (hi - lo) / levels
    coef = (test_x - mean) @ basis
    index = ((coef - lo) / step).floor().clamp(0, levels - 1)
    recon = mean + (lo + (index + 0.5) * step) @ basis.T
    return float(((recon - test_x) ** 2).sum(1).mean())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--codebook-sizes", default="16,512")
    p.add_argument("--vae-betas", default="1")
    p.add_argument("--pca-bits", default="2,3,4,5,6,8")
    p.add_argument("--sigma", type=float, default=0.1, help="σ of the Gaussian likelihood of the vq-vae and the vae")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    common = dict(data_dir=a.data_dir, seed=a.seed, progress=False, figures="none", likelihood="gaussian",
                  sigma=a.sigma)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pca = aekit.train("pca", "mnist", out=root / "pca", latent_dim=400, data_dir=a.data_dir, figures="none",
                          progress=False)
        splits = prepare_data(pca.config)
        train_x, test_x = splits.train.x, splits.test.x
        for k in (int(v) for v in a.codebook_sizes.split(",")):
            vq = aekit.train("vq-vae", "mnist", out=root / f"vq{k}", steps=a.steps, codebook_size=k, **common)
            bits = math.prod(vq.code_shape) * math.log2(k)
            vq_error = squared_error(vq, test_x)
            rows.append({"model": f"vq-vae, K = {k}", "bits": bits, "squared_error": vq_error})
            best = None
            for b in (int(v) for v in a.pca_bits.split(",")):
                d = int(bits // b)
                if not 1 <= d <= 400:
                    continue
                err = quantized_pca_error(pca, train_x, test_x, d, b)
                rows.append({"model": f"PCA, d = {d} at {b} bits", "bits": d * b, "squared_error": err,
                             "for_bits": bits})
                best = err if best is None else min(best, err)
            print(f"K = {k}: {bits:.0f} bits; vq-vae error {vq_error:.2f}, best quantized PCA {best:.2f}", flush=True)
        for beta in (float(v) for v in a.vae_betas.split(",")):
            vae = aekit.train("vae", "mnist", out=root / f"vae{beta}", steps=a.steps, beta=beta,
                              hidden_dims=(400, 200), latent_dim=16, **common)
            from aekit.trainer import evaluate_terms

            kl_bits = evaluate_terms(vae, splits.test)["kl"] / math.log(2)
            rows.append({"model": f"vae, beta = {beta:g}", "bits": kl_bits, "squared_error": squared_error(vae, test_x),
                         "rate": "KL (bits)"})
    print(f"\nGrey MNIST test, squared error per image at equal bits of code ({a.steps} steps per trained model)\n")
    print("| model | bits per image | squared error |")
    print("|---|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['bits']:.0f}{' (KL)' if 'rate' in r else ''} | {r['squared_error']:.2f} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"machine": {"platform": platform.platform(), "torch": torch.__version__},
                                           "settings": vars(a), "rows": rows}, indent=2))
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
