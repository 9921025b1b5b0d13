"""What a user may hand a trained model: numpy arrays or tensors, float64 or float32, images or rows.

Models compute in their own dtype (float32 unless converted) on their own device; :func:`as_data`
turns what a user passes into that,
or says in one line what is wrong. ``aekit.load`` and ``aekit.train`` return models whose face
methods (``encode``, ``decode``, ``reconstruct``, ``embed``, ``log_likelihood``, ...) convert their
inputs this way (see :func:`accept_arrays`), so ``model.reconstruct(np_array)`` works as it reads.
"""

from __future__ import annotations

import functools
import inspect
import math

import numpy as np
import torch

from .errors import AekitError

# Face methods whose first argument is data x (N, D), or codes z (N, J) for decode; y is a label vector.
DATA_METHODS = ("encode", "reconstruct", "embed", "log_likelihood", "exact_log_likelihood", "codes")
CODE_METHODS = ("decode",)


def _device_of(model) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _dtype_of(model) -> torch.dtype:
    """The model's floating dtype (float32 unless the user converted it, e.g. with .double())."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _tensor(value, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise AekitError(f"{what} must be a numpy array or a torch tensor ({e})") from None
    if array.dtype.kind not in "fiub":
        raise AekitError(f"{what} must hold numbers, got an array of {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array))


def as_data(model, x, what: str = "x") -> torch.Tensor:
    """x as (N, D) in the model's dtype and device: rows of D values, or images (N, *image_shape) flattened."""
    x = _tensor(x, what)
    shape = getattr(getattr(model, "config", None), "shape", None)
    data_dim = shape.data_dim if shape is not None else None
    if data_dim is not None and x.ndim >= 2 and x.ndim != 2 and math.prod(x.shape[1:]) == data_dim:
        x = x.reshape(len(x), data_dim)  # images (N, H, W) or (N, C, H, W)
    if x.ndim == 1:
        hint = f"; a single example: pass {what}.reshape(1, -1)" if data_dim in (None, len(x)) else ""
        raise AekitError(f"{what} must be a batch of shape (N, {data_dim or 'D'}), got shape {tuple(x.shape)}{hint}")
    if x.ndim != 2 or (data_dim is not None and x.shape[1] != data_dim):
        raise AekitError(f"{what} must have shape (N, {data_dim or 'D'}), got {tuple(x.shape)}; this model was "
                         f"trained on rows of {data_dim} values")
    return x.to(device=_device_of(model), dtype=_dtype_of(model))


def as_codes(model, z, what: str = "z") -> torch.Tensor:
    """z in the model's dtype and device, any leading shape (the decoder maps the last dimension)."""
    z = _tensor(z, what)
    return z.to(device=_device_of(model), dtype=_dtype_of(model))


def as_labels(model, y) -> torch.Tensor | None:
    if y is None:
        return None
    y = _tensor(y, "y")
    if y.is_floating_point() and not bool((y == y.round()).all()):
        raise AekitError("labels y must be whole class numbers")
    return y.to(device=_device_of(model), dtype=torch.long)


def _second_is_y(method) -> bool:
    params = list(inspect.signature(method).parameters)
    return len(params) >= 2 and params[1] == "y"


def _converting(model, method, convert):
    takes_y = _second_is_y(method)

    @functools.wraps(method)
    def converting(first, *args, **kwargs):
        if takes_y and args:
            args = (as_labels(model, args[0]), *args[1:])
        if "y" in kwargs:
            kwargs["y"] = as_labels(model, kwargs["y"])
        return method(convert(model, first), *args, **kwargs)

    converting._accepts_arrays = True
    return converting


def accept_arrays(model):
    """Give ``model``'s face methods input conversion (this instance only); returns the model."""
    for names, convert in ((DATA_METHODS, as_data), (CODE_METHODS, as_codes)):
        for name in names:
            method = getattr(model, name, None)
            if method is not None and not getattr(method, "_accepts_arrays", False):
                object.__setattr__(model, name, _converting(model, method, convert))
    sample = getattr(model, "sample", None)
    if sample is not None and not getattr(sample, "_accepts_arrays", False):
        @functools.wraps(sample)
        def sampling(n, *args, **kwargs):
            if args:
                args = (as_labels(model, args[0]), *args[1:])
            if "y" in kwargs:
                kwargs["y"] = as_labels(model, kwargs["y"])
            return sample(int(n), *args, **kwargs)

        sampling._accepts_arrays = True
        object.__setattr__(model, "sample", sampling)
    return model
