"""aekit: the autoencoder family, from the linear autoencoder to the VQ-VAE, on PyTorch."""

from .api import load, resume, train
from .errors import AekitError

__version__ = "0.1.0"
__all__ = ["train", "load", "resume", "AekitError", "__version__"]
