"""aekit: the autoencoder family, from the linear autoencoder to the VQ-VAE, on PyTorch."""

from .threads import set_wait_policy

set_wait_policy()  # before torch is imported: OpenMP threads that sleep, not spin, on a busy machine

from .api import load, resume, train  # noqa: E402
from .errors import AekitError  # noqa: E402


def __getattr__(name):
    # The scikit-learn style estimators import scikit-learn (seconds); load them on first use only.
    if name == "PPCA":
        from .models.ppca import PPCA
        return PPCA
    if name == "RBM":
        from .models.rbm import RBMEstimator
        return RBMEstimator
    raise AttributeError(f"module 'aekit' has no attribute '{name}'")


__version__ = "0.1.0"
__all__ = ["train", "load", "resume", "PPCA", "RBM", "AekitError", "__version__"]
