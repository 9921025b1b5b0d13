"""Where the time of a training step and of an importance-sampling chunk goes, against the machine's floor.

The 784-400-20 VAE of pytorch/examples on MNIST-shaped data (random binary pixels: the arithmetic is
what is measured). For one training step of aekit's trainer at ``--batch-size``:

* the measured fp32 matrix-multiply peak (2048×2048 ``torch.mm``) with the same threads;
* the step's arithmetic floor: 6·params·B FLOPs at that peak;
* a breakdown by ablation: data (a BatchLoader batch, dynamically binarized), forward, backward,
  optimizer (default Adam and the fused Adam the trainer uses), the trainer's bookkeeping (terms,
  running sums, hooks), and the whole trainer step (``aekit.trainer.fit`` on 60000 random binary
  images, timed per step from its second epoch's time; the median of ``--trainer-runs`` runs);
* the top operators of a ``torch.profiler`` trace of forward + backward + optimizer, by self CPU time.

For importance sampling (``log_likelihood`` with k samples): the time per example against the
floor 2·k·(20·400 + 400·784) FLOPs at the peak, for the decoder chunk sizes tried.

    python benchmarks/throughput.py --threads 2 --out throughput.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import torch


def matmul_peak(threads: int, n: int = 2048, repeats: int = 10) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def _best(fn, repeats: int, inner: int) -> float:
    for _ in range(2):
        fn()
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def step_breakdown(batch: int, threads: int, repeats: int) -> dict:
    from aekit.config import ModelConfig, DataShape
    from aekit.data import ArrayDataset, BatchLoader
    from aekit.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae", latent_dim=20, hidden_dims=(400,)), DataShape(784, (1, 28, 28), 10))
    params = sum(p.numel() for p in model.parameters())
    x = torch.rand(60000, 784)
    loader = BatchLoader(ArrayDataset(x, None, (1, 28, 28), None, "t"), batch, dynamic_binarize=True)
    batches = iter(loader)
    xb = next(batches)[0]
    default_adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    fused_adam = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

    def data():
        nonlocal batches
        try:
            return next(batches)
        except StopIteration:
            loader.set_epoch(loader.epoch + 1)
            batches = iter(loader)
            return next(batches)

    def forward():
        with torch.no_grad():
            model(xb, None, 0).total.mean()

    def forward_backward():
        loss = model(xb, None, 0).total.mean()
        model.zero_grad(set_to_none=True)
        loss.backward()

    forward_backward()
    sums: dict = {}

    def bookkeeping():  # what the trainer does per step besides the arithmetic: terms, sums, hooks
        result = model(xb, None, 0)
        loss = result.total.float().mean()
        torch.isfinite(loss)
        sums["loss"] = sums.get("loss", 0) + loss.detach()
        for k, v in result.terms.items():
            sums[k] = sums.get(k, 0) + v.detach().float().mean()

    out = {
        "params": params, "flops_per_step": 6 * params * batch,
        "data_ms": 1e3 * _best(data, repeats, 20),
        "forward_ms": 1e3 * _best(forward, repeats, 10),
        "forward_backward_ms": 1e3 * _best(forward_backward, repeats, 10),
        "adam_default_ms": 1e3 * _best(default_adam.step, repeats, 20),
        "adam_fused_ms": 1e3 * _best(fused_adam.step, repeats, 20),
    }
    out["bookkeeping_ms"] = 1e3 * _best(bookkeeping, repeats, 10) - out["forward_ms"]
    out["backward_ms"] = out["forward_backward_ms"] - out["forward_ms"]

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            forward_backward()
            fused_adam.step()
    table = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in table)
    out["profile_top"] = [{"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1e3 / 10,
                           "share": e.self_cpu_time_total / total} for e in table[:12]]
    return out


def trainer_step_ms(batch: int, threads: int, runs: int, epochs: int = 2) -> list[float]:
    """Per-step time of aekit's own trainer (its last epoch's time / steps), on 60000 random binary
    images (54000 trained on: MNIST's shape), in ``runs`` separate runs."""
    import numpy as np

    import aekit

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        x = (np.random.default_rng(0).random((60000, 784)) < 0.2).astype(np.float32).reshape(-1, 1, 28, 28)
        np.save(Path(tmp) / "x.npy", x)
        for run in range(runs):
            out = Path(tmp) / f"r{run}"
            aekit.train("vae", str(Path(tmp) / "x.npy"), out=out, hidden_dims=(400,), latent_dim=20,
                        batch_size=batch, epochs=epochs, figures="none", progress=False, threads=threads)
            history = aekit.runs.read_metrics(out)
            steps = history[-1]["step"] - history[-2]["step"]
            times.append(1e3 * history[-1]["epoch_seconds"] / steps)
    return times


def loglik_chunks(threads: int, k: int, batch: int, repeats: int) -> dict:
    import aekit.models.vae as vae_module
    from aekit.config import ModelConfig, DataShape
    from aekit.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae", latent_dim=20, hidden_dims=(400,)), DataShape(784, (1, 28, 28), 10)).eval()
    x = (torch.rand(batch, 784) < 0.2).float()
    flops = 2 * k * batch * (20 * 400 + 400 * 784)
    out = {"k": k, "batch": batch, "floor_flops": flops, "chunks": {}}
    default = vae_module._LOGLIK_CHUNK_ELEMENTS
    for elements in (1 << 20, 1 << 21, 1 << 22, 1 << 24):
        vae_module._LOGLIK_CHUNK_ELEMENTS = elements
        seconds = _best(lambda: model.log_likelihood(x, None, num_samples=k), repeats, 1)
        out["chunks"][f"2^{int(math.log2(elements))}"] = {"seconds": seconds, "gflops": flops / seconds / 1e9}
    vae_module._LOGLIK_CHUNK_ELEMENTS = default
    out["default_chunk"] = f"2^{int(math.log2(default))}"
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--k", type=int, default=1000, help="importance samples for the log-likelihood chunk test")
    p.add_argument("--trainer-runs", type=int, default=3, help="separate trainer runs; the median is reported")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    peak = matmul_peak(a.threads)
    step = step_breakdown(a.batch_size, a.threads, a.repeats)
    trainer_runs = trainer_step_ms(a.batch_size, a.threads, a.trainer_runs)
    trainer = sorted(trainer_runs)[len(trainer_runs) // 2]
    peak_after = matmul_peak(a.threads)
    ll = loglik_chunks(a.threads, a.k, 100, max(2, a.repeats // 2))
    floor_ms = step["flops_per_step"] / (max(peak, peak_after) * 1e9) * 1e3
    result = {"machine": platform.processor() or platform.machine(), "threads": a.threads, "batch": a.batch_size,
              "matmul_peak_gflops": [peak, peak_after], "step_floor_ms": floor_ms, "step": step,
              "trainer_step_ms": trainer, "trainer_step_ms_per_run": trainer_runs, "trainer_gflops": step["flops_per_step"] / trainer / 1e6,
              "trainer_fraction_of_peak": floor_ms / trainer, "loglik": ll}
    for chunk, v in ll["chunks"].items():
        v["fraction_of_peak"] = v["gflops"] / max(peak, peak_after)
    print(json.dumps(result, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
