"""aekit: the autoencoder family, from the linear autoencoder to the VQ-VAE, on PyTorch."""

from .api import load, resume, train
from .errors import AekitError
from .models.ppca import PPCA
from .models.rbm import RBMEstimator as RBM

__version__ = "0.1.0"
__all__ = ["train", "load", "resume", "PPCA", "RBM", "AekitError", "__version__"]
