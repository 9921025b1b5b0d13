import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Test this checkout's sources (also in a git worktree beside an editable install of another one),
# in this process and in the subprocesses the tests start.
sys.path.insert(0, str(REPO / "src"))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)

import pytest  # noqa: E402
import torch  # noqa: E402

# Two cores on CI: keep intra-op threads modest so parallel helpers and subprocesses do not thrash.
torch.set_num_threads(min(2, torch.get_num_threads()))


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
