"""aekit against the pytorch/examples VAE on MNIST, measured in one run.

The peer is a faithful re-creation of pytorch/examples/vae/main.py on the CPU: a torchvision-style
MNIST data set that turns each image into a PIL image and then a tensor (ToTensor) one sample at a
time, a DataLoader(batch_size=128, shuffle=True) with no workers, the 784-400-20 ReLU model with a
sigmoid/binary-cross-entropy decoder, Adam(lr=1e-3), loss = BCE(sum) + KL per batch. (There is no
CPU torchvision, so the two transforms it uses are re-created here in a few lines.)

aekit trains the same model (``aekit train vae --hidden-dims 400 --latent-dim 20``, Bernoulli
likelihood on grey-level pixels) through its own trainer: for (a) at the example's batch size 128
and learning rate 1e-3, for (b) with aekit's defaults (batch 256, learning rate 3e-3). It holds out
6000 training images for validation, so it sees 54000 images per epoch to the example's 60000.

Figures:
 (a) training samples per second at batch 128, both sides;
 (b) wall time (training only) to reach the example's own 10-epoch test loss;
 (c) achieved FLOP/s of aekit's training steps as a fraction of the machine's measured fp32
     matrix-multiply peak.

    python benchmarks/pytorch_example_vae.py --data-dir ../shared/data/mnist --out bench-example.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import aekit
from aekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from aekit.data import load_data
from aekit.evaluate import evaluate_model
from aekit.trainer import fit


# ----------------------------------------------------------------------------- the peer
class PerSampleMNIST(torch.utils.data.Dataset):
    """torchvision.datasets.MNIST with transforms.ToTensor(), re-created: PIL image per sample."""

    def __init__(self, images_uint8: np.ndarray):
        self.images = images_uint8  # (N, 28, 28) uint8

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = Image.fromarray(self.images[i], mode="L")  # what torchvision's MNIST.__getitem__ does
        t = torch.from_numpy(np.array(img, np.uint8, copy=True))  # ToTensor
        t = t.view(img.size[1], img.size[0], 1).permute(2, 0, 1).contiguous().float().div(255)
        return t, 0


class ExampleVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x):
        h1 = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h1), self.fc22(h1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def example_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def run_example(train_u8, test_u8, epochs):
    torch.manual_seed(1)
    model = ExampleVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_loader = torch.utils.data.DataLoader(PerSampleMNIST(train_u8), batch_size=128, shuffle=True)
    test_loader = torch.utils.data.DataLoader(PerSampleMNIST(test_u8), batch_size=128, shuffle=False)
    epoch_times, test_losses = [], []
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for data, _ in train_loader:
            opt.zero_grad()
            recon, mu, logvar = model(data)
            loss = example_loss(recon, data, mu, logvar)
            loss.backward()
            opt.step()
        epoch_times.append(time.perf_counter() - t0)
        model.eval()
        total = 0.0
        with torch.no_grad():
            for data, _ in test_loader:
                recon, mu, logvar = model(data)
                total += example_loss(recon, data, mu, logvar).item()
        test_losses.append(total / len(test_u8))
        print(f"  example epoch {epoch + 1}: {epoch_times[-1]:.2f}s  test loss {test_losses[-1]:.2f}", flush=True)
    return epoch_times, test_losses


# ----------------------------------------------------------------------------- aekit
def run_aekit(data_dir, target, max_epochs, workdir, batch_size=None, lr=None):
    """Train epoch by epoch (resuming the run each time) and evaluate the test loss after each."""
    train_cfg = TrainConfig(epochs=1, figures="none", progress=False,
                            **({"batch_size": batch_size} if batch_size else {}), **({"lr": lr} if lr else {}))
    cfg = RunConfig(model=ModelConfig(kind="vae", hidden_dims=(400,), latent_dim=20, likelihood="bernoulli"),
                    data=DataConfig(name="mnist", data_dir=str(data_dir)), train=train_cfg)
    out = Path(workdir) / "aekit-run"
    shutil.rmtree(out, ignore_errors=True)
    epoch_times, test_losses = [], []
    for epoch in range(1, max_epochs + 1):
        if epoch == 1:
            fit(cfg, out)
        else:
            aekit.resume(out, epochs=epoch)
        history = aekit.runs.read_metrics(out)
        epoch_times.append(history[-1]["epoch_seconds"])
        model = aekit.load(out, which="last")
        test = load_data("mnist", data_dir=data_dir).test
        test_losses.append(evaluate_model(model, test, iw_samples=0, progress=False)["neg_elbo"])
        print(f"  aekit epoch {epoch}: {epoch_times[-1]:.2f}s  test loss {test_losses[-1]:.2f}", flush=True)
        if target is not None and test_losses[-1] <= target:
            break
    return epoch_times, test_losses, history[-1]["examples_per_second"]


def matmul_peak(n=2048, repeats=10):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0)


def training_flops_per_example():
    """Matrix-multiply FLOPs of one training step per example: forward 2·Σ in·out, backward twice that
    (gradient of weights and of inputs) except no input gradient for the first layer."""
    layers = [(784, 400), (400, 40), (20, 400), (400, 784)]
    fwd = sum(2 * i * o for i, o in layers)
    return fwd * 3 - 2 * 784 * 400


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--epochs", type=int, default=10, help="epochs of the example (default 10)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    splits = load_data("mnist", data_dir=a.data_dir)
    # the example trains on all 60000 training images; rebuild them as uint8 like torchvision holds them
    from aekit.data import read_idx
    d = Path(a.data_dir)
    train_u8 = read_idx(next(d.glob("train-images-idx3-ubyte*")))
    test_u8 = read_idx(next(d.glob("t10k-images-idx3-ubyte*")))

    print("pytorch/examples VAE (per-sample DataLoader):", flush=True)
    ex_times, ex_losses = run_example(train_u8, test_u8, a.epochs)
    target = ex_losses[-1]
    print("aekit at the example's batch size 128 and learning rate 1e-3 (throughput):", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        same_times, same_losses, _ = run_aekit(a.data_dir, None, 3, tmp, batch_size=128, lr=1e-3)
    print(f"aekit (defaults), until test loss <= {target:.2f}:", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        ak_times, ak_losses, ak_rate = run_aekit(a.data_dir, target, 3 * a.epochs, tmp)
    peak = matmul_peak()
    ex_rate = len(train_u8) / np.median(ex_times)
    ak_rate_median = 54000 / np.median(same_times)
    achieved = ak_rate_median * training_flops_per_example()
    reached = ak_losses[-1] <= target
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "example": {"epoch_seconds": ex_times, "test_loss": ex_losses, "samples_per_second": ex_rate,
                    "time_to_target": sum(ex_times)},
        "aekit_batch128": {"epoch_seconds": same_times, "test_loss": same_losses, "samples_per_second": ak_rate_median},
        "aekit": {"epoch_seconds": ak_times, "test_loss": ak_losses,
                  "epochs_to_target": len(ak_times) if reached else None,
                  "time_to_target": sum(ak_times) if reached else None},
        "target_test_loss": target,
        "matmul_peak_flops": peak,
        "aekit_achieved_flops": achieved,
        "aekit_fraction_of_peak": achieved / peak,
    }
    print()
    print("| | pytorch/examples re-creation | aekit |")
    print("|---|---|---|")
    print(f"| (a) training samples/s at batch 128 | {ex_rate:,.0f} | {ak_rate_median:,.0f} ({ak_rate_median / ex_rate:.1f}×) |")
    print(f"| median epoch time at batch 128 (s) | {np.median(ex_times):.2f} | {np.median(same_times):.2f} |")
    print(f"| test loss after {a.epochs} epochs (nats) | {ex_losses[-1]:.2f} | "
          f"{ak_losses[min(a.epochs, len(ak_losses)) - 1]:.2f} (defaults, after {min(a.epochs, len(ak_losses))}) |")
    tt = results["aekit"]["time_to_target"]
    print(f"| (b) training time to test loss ≤ {target:.2f} (s) | {sum(ex_times):.1f} ({a.epochs} epochs) | "
          + (f"{tt:.1f} ({len(ak_times)} epochs; {tt / sum(ex_times):.2f} of the example's) |" if reached else "not reached |"))
    print(f"| (c) achieved FLOP/s at batch 128 (fraction of {peak / 1e9:.1f} GFLOP/s fp32 matmul peak) | "
          f"{ex_rate * training_flops_per_example() / 1e9:.1f} GFLOP/s ({ex_rate * training_flops_per_example() / peak:.1%}) | "
          f"{achieved / 1e9:.1f} GFLOP/s ({achieved / peak:.1%}) |")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
