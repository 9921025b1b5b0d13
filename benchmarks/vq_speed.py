"""Speed: aekit's vector quantizer against vector-quantize-pytorch, and PixelCNN prior sampling.

1. The VQ layer's forward + backward (+ the EMA codebook update) on 16,384 vectors of dimension 64
   with K = 512 codes, laid out as an encoder map (16, 64, 32, 32), EMA decay 0.99, commitment 0.25,
   no dead-code restarts, in one process, interleaved (ours, theirs, ours, ...) so both see the same
   machine load. The peer is ``vector_quantize_pytorch.VectorQuantize`` (pip package
   ``vector-quantize-pytorch``) with the plain straight-through estimator (``rotation_trick=False``,
   the same algorithm as ours), and also with its default rotation trick for reference.
2. PixelCNN prior sampling: code maps per second for a 7×7 map of K = 512 codes (the MNIST prior's
   shape), 12 gated layers of 64 channels, 64 maps per batch — with aekit's cached sampler, and with the
   naive sampler that runs the whole network over the whole map for every position.

    pip install -c constraints.txt vector-quantize-pytorch     # benchmark only; leaves torch as it is
    python benchmarks/vq_speed.py --threads 2 --out bench-vq-speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from aekit.models.vqvae import CodePrior
from aekit.quantizers import VectorQuantizer


def time_it(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def vq_step_ours(q: VectorQuantizer, z: torch.Tensor):
    def step():
        zz = z.detach().requires_grad_()
        out = q(zz)
        loss = out.z_q.square().mean() + q.commitment_weight * out.commitment.mean()
        loss.backward()
        q.apply_statistics()  # the EMA codebook update (the peer does it inside forward)
    return step


def vq_step_theirs(vq, z: torch.Tensor):
    def step():
        zz = z.detach().requires_grad_()
        quantized, _, commit = vq(zz)
        loss = quantized.square().mean() + commit.sum()
        loss.backward()
    return step


@torch.no_grad()
def naive_sample(prior: CodePrior, n: int) -> torch.Tensor:
    """Ancestral sampling that recomputes the whole network over the whole map for every position."""
    shape = prior.code_shape
    codes = torch.zeros(n, *shape, dtype=torch.long)
    flat = codes.view(n, -1)
    for i in range(flat.shape[1]):
        logits = prior.model.logits(codes).reshape(n, prior.num_codes, -1)[:, :, i]
        flat[:, i] = torch.multinomial(logits.softmax(-1), 1)[:, 0]
    return codes


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20, help="timed forward+backward steps per quantizer")
    p.add_argument("--sample-repeats", type=int, default=3)
    p.add_argument("--num-maps", type=int, default=64)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    z = torch.randn(16, 64, 32, 32)  # 16,384 vectors of dimension 64
    ours = VectorQuantizer(512, 64, update="ema", decay=0.99, commitment_weight=0.25).train()
    ours.kmeans_init(z.movedim(1, -1).reshape(-1, 64)[:8192], iterations=5)
    steps = {"aekit": vq_step_ours(ours, z)}
    peer_version = None
    try:
        import vector_quantize_pytorch
        from vector_quantize_pytorch import VectorQuantize

        peer_version = getattr(vector_quantize_pytorch, "__version__", None)
        if peer_version is None:
            from importlib.metadata import version
            peer_version = version("vector-quantize-pytorch")
        for name, rotation in (("vector-quantize-pytorch (straight-through)", False),
                               ("vector-quantize-pytorch (default: rotation trick)", None)):
            peer = VectorQuantize(dim=64, codebook_size=512, decay=0.99, commitment_weight=0.25,
                                  accept_image_fmap=True, rotation_trick=rotation, threshold_ema_dead_code=0).train()
            steps[name] = vq_step_theirs(peer, z)
    except ImportError:
        print("vector-quantize-pytorch is not installed: timing aekit alone")
    for fn in steps.values():  # warm up (allocations, the peer's lazy init)
        for _ in range(3):
            fn()
    times = {name: [] for name in steps}
    for _ in range(a.repeats):  # interleaved, so both see the same load
        for name, fn in steps.items():
            times[name] += time_it(fn, 1)
    vq_rows = {name: {"median_seconds": statistics.median(t), "vectors_per_second": 16384 / statistics.median(t)}
               for name, t in times.items()}
    print("| quantizer (16,384 x 64, K = 512, EMA, forward + backward) | median step (ms) | vectors / s |")
    print("|---|---:|---:|")
    for name, r in vq_rows.items():
        print(f"| {name} | {1000 * r['median_seconds']:.1f} | {r['vectors_per_second']:,.0f} |")
    peer = vq_rows.get("vector-quantize-pytorch (straight-through)")
    if peer:
        print(f"aekit / peer throughput: {vq_rows['aekit']['vectors_per_second'] / peer['vectors_per_second']:.2f}x")

    prior = CodePrior((7, 7), 512, 64, channels=64, layers=12).eval()
    n = a.num_maps
    cached = time_it(lambda: prior.sample_codes(n), a.sample_repeats)
    naive = time_it(lambda: naive_sample(prior, n), 1)
    sampling = {"map": "7x7", "codes": 512, "layers": 12, "channels": 64, "maps_per_batch": n,
                "cached_maps_per_second": n / statistics.median(cached),
                "naive_maps_per_second": n / statistics.median(naive)}
    print(f"\nPixelCNN prior sampling (7x7 maps, K = 512, 12 layers x 64 channels, {n} maps per batch): "
          f"{sampling['cached_maps_per_second']:.1f} maps/s cached, {sampling['naive_maps_per_second']:.1f} maps/s "
          f"recomputing the whole map per position ({sampling['cached_maps_per_second'] / sampling['naive_maps_per_second']:.1f}x)")
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": a.threads,
                           "peer_version": peer_version},
               "quantizer": vq_rows, "prior_sampling": sampling}
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
