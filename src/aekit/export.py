"""Export a trained run for deployment: its encoder, its decoder and its anomaly scorer as ONNX or TorchScript.

    DIR/encoder.{onnx,pt}   x (B, D) → code (B, J): the model's embedding (posterior mean for a VAE / PPCA,
                            the code of an autoencoder, E[h | v] of an RBM)
    DIR/decoder.{onnx,pt}   z (B, J) → x̂ (B, D): the mean of p(x | z)
    DIR/scorer.{onnx,pt}    x (B, D) → score (B,): a deterministic anomaly score (aekit.anomaly), higher =
                            more anomalous
    DIR/manifest.json       kind, shapes, input / output names, the score, the detection threshold when the
                            run has one (detector.json), the format and its opset

Every graph takes a dynamic batch dimension. Scores that draw random numbers (neg-elbo,
log-likelihood of a VAE, reconstruction-probability) are not exported: the deployed scorer must
give the same number for the same input. ONNX uses the TorchScript-based exporter of
``torch.onnx.export(dynamo=False)`` (it needs only the ``onnx`` package, the optional extra
``aekit[export]``); the ONNX graphs reproduce PyTorch's outputs to float32 rounding (the tests
check |Δ| ≤ 1e-4 · (1 + |y|) with onnxruntime).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.distributions import Independent, Normal

from .errors import AekitError, unknown_choice

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
OPSET = 17
MANIFEST = "manifest.json"


class EncoderGraph(nn.Module):
    """x → the model's code (its ``embed``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.embed(x)


class DecoderGraph(nn.Module):
    """z → E[x | z], the mean of the decoder's likelihood."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z):
        return self.model.decode(z).mean


class ScorerGraph(nn.Module):
    """x → an anomaly score (B,) of :mod:`aekit.anomaly`."""

    def __init__(self, model, score):
        super().__init__()
        self.model, self.score = model, score

    def forward(self, x):
        from .anomaly import ScoreSettings

        return self.score.compute(self.model, x, None, ScoreSettings())


class AffineGaussianFace(nn.Module):
    """PPCA's face in operations every format has (no linear solves at run time), precomputed in float64:

        E[z | x] = A (x − μ),  A = M⁻¹Wᵀ, M = WᵀW + σ²I         (PRML eq. 12.42)
        p(x | z) = N(Wz + μ, σ²I)
        log p(x) = −½ [(x − μ)ᵀ C⁻¹ (x − μ) + log|C| + D log 2π],  C = WWᵀ + σ²I   (exact)
    """

    likelihood_method = "exact"
    capabilities = frozenset()

    def __init__(self, ppca):
        super().__init__()
        W, mean, s2 = ppca.W.double(), ppca.mean.double(), float(ppca.noise_variance)
        D, q = W.shape
        M = W.T @ W + s2 * torch.eye(q, dtype=W.dtype)
        C = W @ W.T + s2 * torch.eye(D, dtype=W.dtype)
        self.register_buffer("A", torch.linalg.solve(M, W.T).float())  # (q, D)
        self.register_buffer("W", W.float())
        self.register_buffer("mean", mean.float())
        self.register_buffer("precision", torch.linalg.inv(C).float())  # (D, D)
        self.register_buffer("log_norm", torch.tensor(float(torch.linalg.slogdet(C)[1]) + D * math.log(2 * math.pi),
                                                      dtype=torch.float32))
        self.sigma = math.sqrt(s2)
        self.capabilities = ppca.capabilities

    def embed(self, x, y=None):
        return (x - self.mean) @ self.A.T

    def decode(self, z, y=None):
        loc = z @ self.W.T + self.mean
        return Independent(Normal(loc, torch.full_like(loc, self.sigma), validate_args=False), 1, validate_args=False)

    def reconstruct(self, x, y=None):
        return self.decode(self.embed(x)).mean

    def log_likelihood(self, x, y=None, num_samples: int = 0):
        d = x - self.mean
        return -0.5 * (((d @ self.precision) * d).sum(-1) + self.log_norm)


def _export_face(model):
    """The module whose operations are traced: the model itself, or an equivalent in exportable operations."""
    from .models.linear import PPCAModel

    adapters = {PPCAModel: AffineGaussianFace}  # by class: models whose face needs linear algebra at run time
    return next((adapter(model) for cls, adapter in adapters.items() if isinstance(model, cls)), model)


def exportable_scores(model) -> list[str]:
    """Scores of ``model`` that are deterministic functions of x (log-likelihood only where it is exact)."""
    from .anomaly import SCORES, scores_for

    exact = getattr(model, "likelihood_method", None) == "exact"
    return [n for n in scores_for(model) if SCORES[n].exportable or (n == "log-likelihood" and exact)]


def require_format(fmt: str) -> None:
    """Refuse an unknown format, or one whose package is missing (naming the extra to install)."""
    if fmt not in FORMATS:
        raise unknown_choice("export format", fmt, FORMATS)
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise AekitError("--format onnx needs the onnx package: pip install 'aekit[export]' "
                             "(onnx and onnxruntime)") from None


def _onnx_bytes(graph: nn.Module, example: torch.Tensor, input_name: str, output_name: str) -> bytes:
    import onnx

    buf = io.BytesIO()
    # The exporter announces its deprecation, and prints the whole graph when an operator fails.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (example,), buf, dynamo=False, opset_version=OPSET, input_names=[input_name],
                          output_names=[output_name], dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
    onnx.checker.check_model(onnx.load_from_string(buf.getvalue()))
    return buf.getvalue()


def _torchscript_bytes(graph: nn.Module, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, (example,), check_trace=False)
        torch.jit.save(traced, buf)
    return buf.getvalue()


def export_run(model, out: str | Path, fmt: str = "onnx", score: str | None = None) -> dict:
    """Write the encoder, decoder and scorer of ``model`` (loaded with ``aekit.load``) into ``out``; the manifest.

    Everything is converted in memory first; files are written only once all three graphs exist, each
    atomically, so a failed export leaves ``out`` as it was.
    """
    from .anomaly import DETECTOR, SCORES, get_score, load_detector
    from .runs import atomic_write_bytes, atomic_write_text

    require_format(fmt)
    cfg = model.config
    if getattr(model, "num_classes", None):
        raise AekitError(f"{cfg.model.kind} is conditional (it needs a label y); only unconditional models export")
    ok = exportable_scores(model)
    spec = get_score(model, score) if score is not None else SCORES[ok[0]]
    if spec.name not in ok:
        raise AekitError(f"the {spec.name} score draws random numbers and is not exported; exportable scores of "
                         f"{cfg.model.kind}: {', '.join(ok)}")
    run_dir = model.run_dir
    model = _export_face(model.cpu().eval())
    data_dim = cfg.shape.data_dim
    x = torch.rand(2, data_dim)  # the example batch only fixes shapes and dtypes
    with torch.no_grad():
        latent_dim = int(model.embed(x).shape[-1])
    z = torch.zeros(2, latent_dim)
    graphs = {"encoder": (EncoderGraph(model), x, "x", "code"), "decoder": (DecoderGraph(model), z, "z", "x_mean"),
              "scorer": (ScorerGraph(model, spec), x, "x", "score")}
    blobs = {}
    for name, (graph, example, inp, outp) in graphs.items():
        try:
            blobs[name] = (_onnx_bytes(graph, example, inp, outp) if fmt == "onnx"
                           else _torchscript_bytes(graph, example))
        except AekitError:
            raise
        except Exception as e:  # the exporters raise many types for an operator they cannot convert
            message = " ".join(str(e).split())[:200]
            raise AekitError(f"the {name} of {cfg.model.kind} cannot be exported to {fmt} ({type(e).__name__}: "
                             f"{message}); try --format torchscript") from None
    detector = load_detector(run_dir) if (Path(run_dir) / DETECTOR).is_file() else None
    manifest = {
        "kind": cfg.model.kind, "format": fmt, "opset": OPSET if fmt == "onnx" else None,
        "data_dim": data_dim, "latent_dim": latent_dim, "image_shape": cfg.shape.image_shape,
        "files": {name: name + SUFFIX[fmt] for name in graphs},
        "inputs": {name: inp for name, (_, _, inp, _) in graphs.items()},
        "outputs": {name: outp for name, (_, _, _, outp) in graphs.items()},
        "score": spec.name, "score_help": spec.help,
        "threshold": None if detector is None or detector.score != spec.name else detector.threshold,
        "data": {"name": cfg.data.name, "window": cfg.data.window, "stride": cfg.data.stride},
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, blob in blobs.items():
        atomic_write_bytes(out / manifest["files"][name], blob)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest
