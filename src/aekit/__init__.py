"""aekit: the autoencoder family, from the linear autoencoder to the VQ-VAE, on PyTorch."""

from .threads import set_wait_policy

set_wait_policy()  # before torch is imported: OpenMP threads that spin briefly, then sleep

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
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name][0], __name__), _LAZY[name][1])
    raise AttributeError(f"module 'aekit' has no attribute '{name}'")


# The applications, imported on first use (some import scikit-learn).
_LAZY = {
    "evaluate_model": (".evaluate", "evaluate_model"),
    "score_samples": (".anomaly", "score_samples"),
    "detection_metrics": (".anomaly", "detection_metrics"),
    "fit_detector": (".anomaly", "fit_detector"),
    "impute": (".impute", "impute"),
    "export_run": (".export", "export_run"),
    "psnr": (".image_metrics", "psnr"),
    "ssim": (".image_metrics", "ssim"),
    "train_prior": (".models.vqvae", "train_prior"),
}

__version__ = "0.1.0"
__all__ = ["train", "load", "resume", "PPCA", "RBM", "AekitError", "__version__", *_LAZY]
