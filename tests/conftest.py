import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Test this checkout's sources (also in a git worktree beside an editable install of another one),
# in this process and in the subprocesses the tests start.
sys.path.insert(0, str(REPO / "src"))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)

# OpenMP threads that spin briefly, then sleep while waiting (what `import aekit` sets for itself), so
# tests and their subprocesses stay fast when the machine has other work.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
os.environ.setdefault("KMP_BLOCKTIME", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# The tests train tiny models, for which one thread is fastest (and the only robust choice on a
# shared 2-core machine); aekit's trainer chooses its own count for the models it builds.
torch.set_num_threads(1)


def mnist_dir() -> Path | None:
    """The real MNIST IDX files: $AEKIT_DATA_DIR (the library's own variable), else ../shared/data/mnist."""
    env = os.environ.get("AEKIT_DATA_DIR")
    candidates = [env, env and Path(env) / "mnist", REPO.parent / "shared" / "data" / "mnist"]
    for c in candidates:
        if c and (Path(c) / "train-images-idx3-ubyte.gz").exists():
            return Path(c)
    return None


@pytest.fixture
def mnist_path():
    path = mnist_dir()
    if path is None:
        pytest.skip("MNIST IDX files not found (set AEKIT_DATA_DIR to their folder or place them in ../shared/data/mnist)")
    return path


# Small, fast settings shared by the training tests.
TINY = dict(hidden_dims=(32,), latent_dim=4, batch_size=64, figures="none", progress=False)
