"""A run is a folder: config, weights, resumable training state, metrics and figures.

    RUN/config.json            everything needed to rebuild the model (RunConfig)
    RUN/model.safetensors      weights with the best validation loss
    RUN/model-last.safetensors weights at the last checkpoint
    RUN/checkpoint.pt          optimizer, LR schedule, step, epoch, RNG states, history (for --resume)
    RUN/metrics.jsonl          one JSON object per epoch
    RUN/tb/                    TensorBoard events
    RUN/*.png                  figures

Every write goes to a temporary file in the same folder and is then renamed over the target, so a
run killed at any moment leaves each file either old or new, never half-written.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import RunConfig
from .errors import AekitError

CONFIG = "config.json"
BEST = "model.safetensors"
LAST = "model-last.safetensors"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write through a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_config(run_dir: Path, cfg: RunConfig) -> None:
    atomic_write_text(Path(run_dir) / CONFIG, json.dumps(cfg.to_dict(), indent=2) + "\n")


def load_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise AekitError(f"run folder {run_dir} does not exist")
    if not path.is_file():
        raise AekitError(f"{run_dir} is not an aekit run (no {CONFIG})")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AekitError(f"{path} is corrupt (not valid JSON)") from None
    return RunConfig.from_dict(d)


def _state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory; clone to contiguous CPU copies.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_weights(path: Path, module: torch.nn.Module) -> None:
    atomic_write_bytes(path, st_save(_state_tensors(module)))


def load_weights(path: Path, module: torch.nn.Module) -> None:
    """Load safetensors weights into ``module``; corrupt files and shape mismatches are user errors."""
    path = Path(path)
    if not path.is_file():
        raise AekitError(f"weights file {path} is missing")
    try:
        state = st_load(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise AekitError(f"weights file {path} is corrupt or truncated ({e}); retrain or restore it") from None
    _load_state(module, state, path)


def _load_state(module: torch.nn.Module, state: dict, path: Path) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or wrong:
        detail = (f"missing {missing[:3]}" if missing else "") + (f" unexpected {extra[:3]}" if extra else "") + (
            f" shape mismatch in {wrong[:3]}" if wrong else "")
        raise AekitError(f"{path} does not fit the model described by its config.json ({detail.strip()})")
    module.load_state_dict(state)


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(run_dir) / CHECKPOINT, buf.getvalue())


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise AekitError(f"{run_dir} has no {CHECKPOINT} to resume from; start a new run instead")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several unrelated types for a damaged zip/pickle
        raise AekitError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}); "
                         f"nothing was overwritten") from None


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(Path(run_dir) / METRICS, "".join(json.dumps(h) + "\n" for h in history))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
