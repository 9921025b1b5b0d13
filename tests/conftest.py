import os
from pathlib import Path

import pytest
import torch

# Two cores on CI: keep intra-op threads modest so parallel helpers and subprocesses do not thrash.
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]


def mnist_dir() -> Path | None:
    """The real MNIST IDX files: $AEKIT_MNIST_DIR, else ../shared/data/mnist beside the clone."""
    candidates = [os.environ.get("AEKIT_MNIST_DIR"), REPO.parent / "shared" / "data" / "mnist"]
    for c in candidates:
        if c and (Path(c) / "train-images-idx3-ubyte.gz").exists():
            return Path(c)
    return None


@pytest.fixture
def mnist_path():
    path = mnist_dir()
    if path is None:
        pytest.skip("MNIST IDX files not found (set AEKIT_MNIST_DIR or place them in ../shared/data/mnist)")
    return path


# Small, fast settings shared by the training tests.
TINY = dict(hidden_dims=(32,), latent_dim=4, batch_size=64, figures="none", progress=False)
