"""Rate–distortion on MNIST test images: the autoencoder codec against PNG, JPEG and quantized PCA.

Every rate is measured on written bytes:

* **aekit codec** — ``ae`` runs (MLP, code sizes ``--latent-dims``) trained on MNIST; the codes of the
  test images quantized with each step Δ of ``--steps``, entropy-coded by aekit's rANS coder with a
  factorized model fitted on the training codes (``aekit.codec``, as ``aekit compress`` does); the
  rate is 8 × (file size) / N, header included.
* **PCA** — aekit's ``pca`` (the closed-form linear autoencoder) with the same codec: its quantized
  projection coefficients.
* **PNG** (lossless) and **JPEG** at qualities ``--qualities`` — Pillow, 8-bit greyscale, optimized
  Huffman tables. Two rates each: one file per image (what a user would store) and the whole test set
  tiled as one image divided by N (headers amortized, the fairest case for them).

Distortion: mean PSNR over the test images against the 8-bit originals (PNG: ∞). The summary gives,
at the PSNR of each codec point, the ratio of JPEG's rate (interpolated on its curve, log-rate
linear in PSNR) to the codec's, and of PNG's rate to the codec's.

    python benchmarks/compression_mnist.py --data-dir /work/shared/data/mnist --epochs 20 --out bench-compression.json
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

from aekit import codec
from aekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from aekit.image_codecs import jpeg_rate_at, pillow_rates
from aekit.image_metrics import mean_finite, psnr
from aekit.trainer import fit, prepare_data

PIXELS = 784


def codec_points(model, run_dir: Path, train_x, test_x, steps) -> list[dict]:
    model.run_dir = run_dir
    fp = codec.run_fingerprint(run_dir)
    points = []
    for step in steps:
        quantizer = codec.UniformQuantizer(step)
        entropy = codec.entropy_model(model, quantizer, train_x)
        symbols = quantizer.symbols(model, test_x)
        report = codec.write_file(run_dir / f"test-{step:g}.bin", quantizer, fp, entropy, symbols)
        x_hat = quantizer.decode(model, symbols).clamp(0, 1)
        points.append({"step": step, "bits_per_image": 8 * report["file_bytes"] / len(test_x),
                       "header_bits": report["header_bits"], "ideal_bits_per_image": report["ideal_payload_bits"] / len(test_x),
                       "psnr": mean_finite(psnr(x_hat, test_x, (1, 28, 28)))})
    return points


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--latent-dims", type=lambda t: [int(v) for v in t.split(",")], default=[8, 16, 32])
    p.add_argument("--pca-dims", type=lambda t: [int(v) for v in t.split(",")], default=[16, 32, 64])
    p.add_argument("--steps", type=lambda t: [float(v) for v in t.split(",")], default=[1.0, 0.5, 0.25, 0.1])
    p.add_argument("--pca-steps", type=lambda t: [float(v) for v in t.split(",")], default=[1.0, 0.5, 0.25, 0.1])
    p.add_argument("--qualities", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2, 3, 5, 10, 20, 30, 50, 75, 90])
    p.add_argument("--hidden-dims", type=lambda t: tuple(int(v) for v in t.split(",")), default=(400, 200))
    p.add_argument("--test-size", type=int, default=None, help="the first N test images (default all 10,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON results")
    p.add_argument("--figure", default=None, help="rate–distortion PNG")
    a = p.parse_args()

    base = RunConfig(model=ModelConfig(kind="ae", hidden_dims=a.hidden_dims),
                     data=DataConfig(name="mnist", data_dir=a.data_dir),
                     train=TrainConfig(epochs=a.epochs, seed=a.seed, figures="none", progress=False, device="cpu"))
    splits = prepare_data(base)
    test_x = splits.test.x[:a.test_size] if a.test_size else splits.test.x
    train_x = splits.train.x
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__}, "settings": vars(a),
               "images": len(test_x), "codecs": {}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for k in a.latent_dims:
            cfg = base.replace(model=ModelConfig(kind="ae", hidden_dims=a.hidden_dims, latent_dim=k))
            t0 = time.perf_counter()
            model = fit(cfg, Path(tmp) / f"ae{k}", splits=splits).eval()
            results["codecs"][f"aekit ae, code {k}"] = codec_points(model, Path(tmp) / f"ae{k}", train_x, test_x, a.steps)
            print(f"ae {k}: trained in {time.perf_counter() - t0:.0f}s; "
                  + ", ".join(f"{q['bits_per_image']:.0f} b / {q['psnr']:.2f} dB" for q in results["codecs"][f"aekit ae, code {k}"]),
                  flush=True)
        for k in a.pca_dims:
            cfg = base.replace(model=ModelConfig(kind="pca", latent_dim=k, likelihood="gaussian"),
                               train=TrainConfig(figures="none", progress=False, device="cpu"))
            model = fit(cfg, Path(tmp) / f"pca{k}", splits=splits).eval()
            results["codecs"][f"PCA {k}, quantized"] = codec_points(model, Path(tmp) / f"pca{k}", train_x, test_x,
                                                                    a.pca_steps)
            print(f"pca {k}: " + ", ".join(f"{q['bits_per_image']:.0f} b / {q['psnr']:.2f} dB"
                                            for q in results["codecs"][f"PCA {k}, quantized"]), flush=True)
    images = np.round(test_x.numpy() * 255).astype(np.uint8).reshape(-1, 28, 28)
    per_file, tiled, _ = pillow_rates(images, "PNG", optimize=True)
    results["png"] = {"bits_per_image_per_file": per_file, "bits_per_image_tiled": tiled, "psnr": float("inf")}
    results["jpeg"] = []
    for q in a.qualities:
        per_file, tiled, decoded = pillow_rates(images, "JPEG", quality=q, optimize=True)
        results["jpeg"].append({"quality": q, "bits_per_image_per_file": per_file, "bits_per_image_tiled": tiled,
                                "psnr": mean_finite(psnr(torch.from_numpy(decoded.reshape(len(images), -1) / 255.0),
                                                         test_x.double(), (1, 28, 28)))})
    results["seconds"] = time.perf_counter() - start

    print(f"\nMNIST test ({len(test_x)} images): bits per image (bits per pixel) and mean PSNR\n")
    print("| codec | setting | bits / image | bits / pixel | PSNR (dB) | JPEG ÷ codec (one file each / tiled) at equal PSNR | PNG ÷ codec (one file each / tiled) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, points in results["codecs"].items():
        for q in points:
            ratios = [jpeg_rate_at(q["psnr"], results["jpeg"], key) for key in ("bits_per_image_per_file", "bits_per_image_tiled")]
            q["jpeg_ratio"] = [None if r is None else r / q["bits_per_image"] for r in ratios]
            q["png_ratio"] = [results["png"][k] / q["bits_per_image"] for k in ("bits_per_image_per_file", "bits_per_image_tiled")]
            jr = " / ".join("—" if r is None else f"{r:.1f}" for r in q["jpeg_ratio"])
            print(f"| {label} | Δ = {q['step']:g} | {q['bits_per_image']:.1f} | {q['bits_per_image'] / PIXELS:.4f} | "
                  f"{q['psnr']:.2f} | {jr} | {q['png_ratio'][0]:.1f} / {q['png_ratio'][1]:.1f} |")
    print(f"| PNG (lossless) | optimize | {results['png']['bits_per_image_per_file']:.0f} (tiled "
          f"{results['png']['bits_per_image_tiled']:.0f}) | {results['png']['bits_per_image_per_file'] / PIXELS:.3f} | ∞ | | |")
    for j in results["jpeg"]:
        print(f"| JPEG | quality {j['quality']} | {j['bits_per_image_per_file']:.0f} (tiled {j['bits_per_image_tiled']:.0f}) | "
              f"{j['bits_per_image_per_file'] / PIXELS:.3f} | {j['psnr']:.2f} | | |")
    if a.figure:
        from aekit.plots import save_rate_distortion

        curves = {label: [(q["bits_per_image"] / PIXELS, q["psnr"]) for q in points]
                  for label, points in results["codecs"].items()}
        curves["JPEG (one file each)"] = [(j["bits_per_image_per_file"] / PIXELS, j["psnr"]) for j in results["jpeg"]]
        curves["JPEG (tiled)"] = [(j["bits_per_image_tiled"] / PIXELS, j["psnr"]) for j in results["jpeg"]]
        save_rate_distortion(curves, Path(a.figure), title=f"MNIST test, {len(test_x)} images "
                             f"(PNG lossless: {results['png']['bits_per_image_tiled'] / PIXELS:.2f} bpp tiled)")
        print(f"\nwrote {a.figure}")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
