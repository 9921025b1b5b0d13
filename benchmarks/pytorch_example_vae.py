"""aekit against the pytorch/examples VAE and pythae's VAE on MNIST, measured in one run.

The peer is a faithful re-creation of pytorch/examples/vae/main.py on the CPU: a torchvision-style
MNIST data set that turns each image into a PIL image and then a tensor (ToTensor) one sample at a
time, a DataLoader(batch_size=128, shuffle=True) with no workers, the 784-400-20 ReLU model with a
sigmoid/binary-cross-entropy decoder, Adam(lr=1e-3), loss = BCE(sum) + KL per batch. (There is no
CPU torchvision, so the two transforms it uses are re-created here in a few lines.)

aekit trains the same model (``aekit train vae --hidden-dims 400 --latent-dim 20``, Bernoulli
likelihood on grey-level pixels) through its own trainer: for (a) at the example's batch size 128
and learning rate 1e-3, for (b) with aekit's defaults (batch 256, learning rate 3e-3). It holds out
6000 training images for validation, so it sees 54000 images per epoch to the example's 60000.

The second peer is pythae 0.1.2 (``pip install -c constraints.txt pythae==0.1.2``, the ``bench`` extra):
its ``VAE`` with the same 784-400-20 encoder and decoder (BCE reconstruction), trained by its own
``BaseTrainer`` from tensors at batch 128 and learning rate 1e-3 (its other trainer settings at their
defaults), on all 60000 training images. Its epochs alternate with aekit's at batch 128.

All peers run in this one process, so they share its state, which the script sets as aekit's command
line does: denormals flushed (``aekit.threads.flush_denormals``) and OpenMP's spin as aekit sets it at
import (``GOMP_SPINCOUNT=1000``; run with ``GOMP_SPINCOUNT=300000`` for libgomp's own default, what a
program that imports torch first gets). Both are printed and stored with the figures.

Figures:
 (a) training samples per second at batch 128: the example, pythae and aekit (median over the epochs
     after the first; the pythae and aekit epochs interleaved);
 (b) wall time (training only) to reach the example's own 10-epoch test loss, in ``--pairs`` paired
     runs (the example, then aekit with its defaults, each pair with its own seed): the ratio per pair,
     its median and spread; (b') the same for aekit's time-to-quality recipe (``--lr 1e-2 --lr-schedule
     warmup-cosine`` with a budget of ``--recipe-epochs``, whose schedule spans the whole budget): the
     time counted is the whole budget's training time, and the loss is the test loss at its end;
 (c) achieved FLOP/s of aekit's training steps as a fraction of the machine's measured fp32
     matrix-multiply peak.

    python benchmarks/pytorch_example_vae.py --data-dir ../shared/data/mnist --pairs 3 --out bench-example.json
    python benchmarks/pytorch_example_vae.py --data-dir ../shared/data/mnist --rates-only --rate-epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import aekit  # first: before torch loads, so aekit's OpenMP wait policy applies (unless GOMP_SPINCOUNT is set)
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from aekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from aekit.data import load_data
from aekit.evaluate import evaluate_model
from aekit.trainer import fit
from throughput import matmul_peak  # this folder is on sys.path when the script runs


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


def run_example(train_u8, test_u8, epochs, seed=1):
    torch.manual_seed(seed)
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
# The time-to-quality recipe: a learning rate 3.3× the default's, reached by a linear warm-up over the
# first tenth of the run, then a cosine decay to 0 at the budget's end (``--lr-schedule warmup-cosine``).
RECIPE = {"lr": 1e-2, "lr_schedule": "warmup-cosine"}


def run_aekit_budget(data_dir, epochs, workdir, seed=0, **train):
    """One run of ``epochs`` (the schedule spans the whole budget), then the test loss of its last weights."""
    cfg = RunConfig(model=ModelConfig(kind="vae", hidden_dims=(400,), latent_dim=20, likelihood="bernoulli"),
                    data=DataConfig(name="mnist", data_dir=str(data_dir), binarize="none"),
                    train=TrainConfig(epochs=epochs, figures="none", progress=False, seed=seed, **train))
    out = Path(workdir) / "aekit-budget"
    shutil.rmtree(out, ignore_errors=True)
    fit(cfg, out)
    epoch_times = [h["epoch_seconds"] for h in aekit.runs.read_metrics(out)]
    test = load_data("mnist", data_dir=data_dir).test
    loss = evaluate_model(aekit.load(out, which="last"), test, iw_samples=0, progress=False)["neg_elbo"]
    print(f"  aekit, {epochs} epochs ({', '.join(f'{k}={v}' for k, v in train.items())}): "
          f"{sum(epoch_times):.1f}s  test loss {loss:.2f}", flush=True)
    return epoch_times, loss


def run_aekit(data_dir, target, max_epochs, workdir, batch_size=None, lr=None, seed=0):
    """Train epoch by epoch (resuming the run each time) and evaluate the test loss after each."""
    train_cfg = TrainConfig(epochs=1, figures="none", progress=False, seed=seed,
                            **({"batch_size": batch_size} if batch_size else {}), **({"lr": lr} if lr else {}))
    cfg = RunConfig(model=ModelConfig(kind="vae", hidden_dims=(400,), latent_dim=20, likelihood="bernoulli"),
                    data=DataConfig(name="mnist", data_dir=str(data_dir), binarize="none"), train=train_cfg)
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


# ----------------------------------------------------------------------------- pythae
def pythae_vae(lr: float, batch_size: int, workdir: Path, seed: int):
    """pythae's VAE with the example's 784-400-20 networks, and its BaseTrainer (one epoch per call)."""
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.body, self.mu, self.log_var = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)

        def forward(self, x):
            h = F.relu(self.body(x.reshape(len(x), 784)))
            return ModelOutput(embedding=self.mu(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784), nn.Sigmoid())

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z))

    torch.manual_seed(seed)
    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=20, reconstruction_loss="bce")
    return VAE(config, encoder=Encoder(), decoder=Decoder())


def run_pythae_epoch(model, train_x: torch.Tensor, lr: float, batch_size: int, workdir: Path, state: dict) -> float:
    """One epoch of pythae's own training loop (BaseTrainer.train with num_epochs=1); returns its seconds.

    The trainer is built once and its optimizer kept across calls, so consecutive calls continue one run.
    """
    import logging

    from pythae.data.datasets import BaseDataset
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    logging.getLogger("pythae").setLevel(logging.WARNING)
    if "trainer" not in state:
        cfg = BaseTrainerConfig(output_dir=str(workdir / "pythae"), num_epochs=1, learning_rate=lr,
                                per_device_train_batch_size=batch_size, no_cuda=True)
        data = BaseDataset(train_x.reshape(-1, 1, 28, 28), torch.zeros(len(train_x)))
        state["trainer"] = BaseTrainer(model, train_dataset=data, training_config=cfg)
        state["trainer"].prepare_training()  # what BaseTrainer.train does first: optimizer, scheduler
    trainer = state["trainer"]
    start = time.perf_counter()
    trainer.train_step(epoch=len(state.setdefault("epochs", [])) + 1)
    seconds = time.perf_counter() - start
    state["epochs"].append(seconds)
    return seconds


def interleaved_rates(data_dir, train_u8, epochs: int, workdir: Path) -> dict:
    """Samples per second at batch 128, lr 1e-3: pythae's epochs and aekit's alternate."""
    train_x = torch.from_numpy(train_u8.reshape(-1, 784).astype(np.float32) / 255)
    peer, state = pythae_vae(1e-3, 128, workdir, seed=0), {}
    train_cfg = TrainConfig(epochs=1, figures="none", progress=False, batch_size=128, lr=1e-3)
    cfg = RunConfig(model=ModelConfig(kind="vae", hidden_dims=(400,), latent_dim=20, likelihood="bernoulli"),
                    data=DataConfig(name="mnist", data_dir=str(data_dir), binarize="none"), train=train_cfg)
    out = workdir / "aekit-rate"
    shutil.rmtree(out, ignore_errors=True)
    rates = {"pythae": [], "aekit": []}
    for epoch in range(1, epochs + 1):
        rates["pythae"].append(len(train_x) / run_pythae_epoch(peer, train_x, 1e-3, 128, workdir, state))
        if epoch == 1:
            fit(cfg, out)
        else:
            aekit.resume(out, epochs=epoch)
        rates["aekit"].append(aekit.runs.read_metrics(out)[-1]["examples_per_second"])
        print(f"  epoch {epoch}: pythae {rates['pythae'][-1]:,.0f}/s  aekit {rates['aekit'][-1]:,.0f}/s", flush=True)
    return rates


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
    p.add_argument("--pairs", type=int, default=3, help="paired runs (example, then aekit) for (b)")
    p.add_argument("--recipe-epochs", type=int, default=7, help="budget of the time-to-quality recipe (default 7)")
    p.add_argument("--rate-epochs", type=int, default=4, help="interleaved pythae / aekit epochs at batch 128")
    p.add_argument("--no-pythae", action="store_true", help="skip the pythae peer (not installed)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--rates-only", action="store_true", help="only (a) for aekit and pythae (no example, no (b))")
    a = p.parse_args()
    if a.rates_only and a.no_pythae:
        p.error("--rates-only compares aekit with pythae; drop --no-pythae, or drop --rates-only for the example peer")
    # The process state both tools train in, as aekit's command line sets it: denormals flushed before
    # the first parallel region (aekit.threads.flush_denormals), OpenMP's spin as aekit set it at import.
    process_state = {"flush_denormals": aekit.threads.flush_denormals(),
              "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "unset (libgomp: 300000)")}
    print(f"process state for every peer: {process_state}", flush=True)
    torch.set_num_threads(a.threads)

    # the example trains on all 60000 training images; rebuild them as uint8 like torchvision holds them
    from aekit.data import read_idx
    d = Path(a.data_dir)
    train_u8 = read_idx(next(d.glob("train-images-idx3-ubyte*")))
    test_u8 = read_idx(next(d.glob("t10k-images-idx3-ubyte*")))

    if a.rates_only:
        with tempfile.TemporaryDirectory() as tmp:
            rates = interleaved_rates(a.data_dir, train_u8, a.rate_epochs, Path(tmp))
        med = {k: float(np.median(v[1:] or v)) for k, v in rates.items()}
        print(f"samples/s at batch 128, median after the first epoch: pythae {med['pythae']:,.0f}, aekit "
              f"{med['aekit']:,.0f}: {med['aekit'] / med['pythae']:.2f}× pythae", flush=True)
        if a.out:
            Path(a.out).write_text(json.dumps({"process": process_state, "per_epoch": rates, "median_after_first": med,
                                               "ratio": med["aekit"] / med["pythae"]}, indent=2))
        return

    pairs = []
    for pair in range(a.pairs):
        print(f"pair {pair + 1}/{a.pairs}: pytorch/examples VAE (per-sample DataLoader), seed {pair + 1}:", flush=True)
        ex_times, ex_losses = run_example(train_u8, test_u8, a.epochs, seed=pair + 1)
        target = ex_losses[-1]
        print(f"pair {pair + 1}/{a.pairs}: aekit (defaults), seed {pair}, until test loss <= {target:.2f}:", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            ak_times, ak_losses, _ = run_aekit(a.data_dir, target, 3 * a.epochs, tmp, seed=pair)
            print(f"pair {pair + 1}/{a.pairs}: aekit, the time-to-quality recipe, {a.recipe_epochs} epochs:", flush=True)
            rc_times, rc_loss = run_aekit_budget(a.data_dir, a.recipe_epochs, tmp, seed=pair, **RECIPE)
        reached = ak_losses[-1] <= target
        recipe_reached = rc_loss <= target
        pairs.append({"example": {"epoch_seconds": ex_times, "test_loss": ex_losses, "time_to_target": sum(ex_times)},
                      "aekit": {"epoch_seconds": ak_times, "test_loss": ak_losses,
                                "epochs_to_target": len(ak_times) if reached else None,
                                "time_to_target": sum(ak_times) if reached else None},
                      "aekit_recipe": {"settings": {**RECIPE, "epochs": a.recipe_epochs}, "epoch_seconds": rc_times,
                                       "test_loss": rc_loss, "time_to_target": sum(rc_times) if recipe_reached else None},
                      "target_test_loss": target,
                      "ratio": sum(ak_times) / sum(ex_times) if reached else None,
                      "recipe_ratio": sum(rc_times) / sum(ex_times) if recipe_reached else None})
    print("samples per second at batch 128, lr 1e-3" + ("" if a.no_pythae else ": pythae and aekit interleaved"),
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if a.no_pythae:
            same_times, _, _ = run_aekit(a.data_dir, None, a.rate_epochs, tmp, batch_size=128, lr=1e-3)
            rates = {"aekit": [54000 / t for t in same_times]}
        else:
            rates = interleaved_rates(a.data_dir, train_u8, a.rate_epochs, Path(tmp))
    peak = matmul_peak(torch.get_num_threads()) * 1e9  # FLOP/s, best of 10 (throughput.py's)
    median_after_first = {k: float(np.median(v[1:] or v)) for k, v in rates.items()}
    ex_rate = len(train_u8) / float(np.median([t for q in pairs for t in q["example"]["epoch_seconds"]]))
    ak_rate = median_after_first["aekit"]
    achieved = ak_rate * training_flops_per_example()
    ratios = [q["ratio"] for q in pairs]
    finite = [r for r in ratios if r is not None]
    recipe_ratios = [q["recipe_ratio"] for q in pairs]
    recipe_finite = [r for r in recipe_ratios if r is not None]
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), **process_state},
        "pairs": pairs,
        "time_to_target_ratio": {"per_pair": ratios, "median": float(np.median(finite)) if len(finite) == len(ratios)
                                 else None, "min": min(finite, default=None), "max": max(finite, default=None)},
        "recipe_time_to_target_ratio": {"per_pair": recipe_ratios, "median": float(np.median(recipe_finite))
                                        if len(recipe_finite) == len(recipe_ratios) else None,
                                        "min": min(recipe_finite, default=None), "max": max(recipe_finite, default=None)},
        "samples_per_second_batch128": {"per_epoch": rates, "median_after_first": median_after_first,
                                        "example": ex_rate},
        "matmul_peak_flops": peak,
        "aekit_achieved_flops": achieved,
        "aekit_fraction_of_peak": achieved / peak,
    }
    print()
    print("| | pytorch/examples re-creation | pythae 0.1.2 | aekit |")
    print("|---|---|---|---|")
    py = median_after_first.get("pythae")
    print(f"| (a) training samples/s at batch 128 | {ex_rate:,.0f} | " + (f"{py:,.0f}" if py else "not run")
          + f" | {ak_rate:,.0f} ({ak_rate / ex_rate:.1f}× the example" + (f", {ak_rate / py:.2f}× pythae)" if py else ")")
          + " |")
    for i, q in enumerate(pairs, 1):
        tt = q["aekit"]["time_to_target"]
        print(f"| (b) pair {i}: training time to test loss ≤ {q['target_test_loss']:.2f} (s) | "
              f"{q['example']['time_to_target']:.1f} ({a.epochs} epochs) | | "
              + (f"{tt:.1f} ({q['aekit']['epochs_to_target']} epochs; {q['ratio']:.2f} of the example's) |"
                 if tt is not None else "not reached |"))
    r = results["time_to_target_ratio"]
    if r["median"] is not None:
        print(f"| (b) ratio, median of {len(ratios)} pairs (min–max) | | | {r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f}) |")
    for i, q in enumerate(pairs, 1):
        rc = q["aekit_recipe"]
        print(f"| (b') pair {i}: `--lr 1e-2 --lr-schedule warmup-cosine --epochs {a.recipe_epochs}`, test loss "
              f"{rc['test_loss']:.2f} vs ≤ {q['target_test_loss']:.2f} | {q['example']['time_to_target']:.1f} | | "
              + (f"{rc['time_to_target']:.1f} ({q['recipe_ratio']:.2f} of the example's) |"
                 if rc["time_to_target"] is not None else f"not reached ({sum(rc['epoch_seconds']):.1f} s) |"))
    r = results["recipe_time_to_target_ratio"]
    if r["median"] is not None:
        print(f"| (b') ratio, median of {len(ratios)} pairs (min–max) | | | {r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f}) |")
    print(f"| (c) achieved FLOP/s at batch 128 (fraction of {peak / 1e9:.1f} GFLOP/s fp32 matmul peak) | "
          f"{ex_rate * training_flops_per_example() / 1e9:.1f} GFLOP/s ({ex_rate * training_flops_per_example() / peak:.1%}) | "
          + (f"{py * training_flops_per_example() / 1e9:.1f} GFLOP/s ({py * training_flops_per_example() / peak:.1%})" if py else "")
          + f" | {achieved / 1e9:.1f} GFLOP/s ({achieved / peak:.1%}) |")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
