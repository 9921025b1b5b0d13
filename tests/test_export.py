"""Export: the ONNX graphs (run with onnxruntime) and the TorchScript modules give PyTorch's outputs.

Tolerance: |Δ| ≤ 1e-4 · (1 + |y|) elementwise, float32 rounding of reordered operations (measured
differences are ≈ 1e-6 relative). The ONNX tests skip cleanly without the optional extra aekit[export].
"""

import json
import sys

import numpy as np
import pytest
import torch

from aekit.anomaly import SCORES, ScoreSettings
from aekit.api import build_config
from aekit.cli import main
from aekit.errors import AekitError
from aekit.export import export_run
from aekit.run_data import fit_run

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

KINDS = {
    "ae": dict(hidden_dims=(32,), latent_dim=4, epochs=1),
    "vae": dict(hidden_dims=(32,), latent_dim=4, epochs=1),
    "cae": dict(hidden_dims=(32,), latent_dim=4, epochs=1),
    "ppca": dict(latent_dim=4),
    "rbm": dict(latent_dim=16, epochs=1, binarize="static"),
    "miwae": dict(hidden_dims=(32,), latent_dim=4, epochs=1, likelihood="gaussian"),  # NaN → 0 in the graph
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    return {kind: fit_run(build_config(kind, "digits", figures="none", progress=False, **kw), folder / kind)
            for kind, kw in KINDS.items()}


def _close(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool((np.abs(a - b) <= 1e-4 * (1 + np.abs(b))).all())


def _reference(model, x, z, score):
    with torch.no_grad():
        return (model.embed(x).numpy(), model.decode(z).mean.numpy(),
                SCORES[score].compute(model, x, None, ScoreSettings()).numpy())


@pytest.mark.parametrize("kind", list(KINDS))
def test_onnx_outputs_equal_pytorch(kind, trained, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = trained[kind]
    manifest = export_run(model, tmp_path / "onnx", "onnx")
    x = torch.rand(7, 64)  # a batch size other than the example's: the batch axis is dynamic
    if kind == "rbm":
        x = (x > 0.5).float()
    z = torch.randn(7, manifest["latent_dim"])
    code, mean, score = _reference(model, x, z, manifest["score"])
    outputs = {}
    for name, inp in (("encoder", x), ("decoder", z), ("scorer", x)):
        session = ort.InferenceSession(str(tmp_path / "onnx" / manifest["files"][name]))
        outputs[name] = session.run(None, {manifest["inputs"][name]: inp.numpy()})[0]
    assert _close(outputs["encoder"], code) and _close(outputs["decoder"], mean) and _close(outputs["scorer"], score)
    expected = {"ae": "reconstruction", "vae": "reconstruction", "cae": "reconstruction", "ppca": "log-likelihood",
                "rbm": "free-energy", "miwae": "reconstruction"}
    assert manifest["score"] == expected[kind]


@pytest.mark.parametrize("kind", list(KINDS))
def test_torchscript_outputs_equal_pytorch(kind, trained, tmp_path):
    model = trained[kind]
    manifest = export_run(model, tmp_path / "ts", "torchscript")
    x, z = torch.rand(5, 64), torch.randn(5, manifest["latent_dim"])
    code, mean, score = _reference(model, x, z, manifest["score"])
    for name, inp, ref in (("encoder", x, code), ("decoder", z, mean), ("scorer", x, score)):
        loaded = torch.jit.load(str(tmp_path / "ts" / manifest["files"][name]))
        with torch.no_grad():
            assert _close(loaded(inp).numpy(), ref), name


def test_manifest_carries_the_saved_threshold(trained, tmp_path, capsys):
    run = trained["ae"].run_dir
    assert main(["score", str(run), "--quantile", "0.99", "-o", str(tmp_path / "s.csv")]) == 0
    assert main(["export", str(run), "--format", "torchscript", "-o", str(tmp_path / "out")]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    detector = json.loads((run / "detector.json").read_text())
    assert manifest["threshold"] == detector["threshold"] and manifest["score"] == "reconstruction"
    assert set(manifest["files"].values()) == {"encoder.pt", "decoder.pt", "scorer.pt"}
    capsys.readouterr()


def test_export_bad_input(trained, tmp_path, capsys, monkeypatch):
    def one_line(*argv, match):
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err

    out = tmp_path / "never"
    vae = trained["vae"].run_dir
    one_line("export", vae, "--format", "tflite", "-o", out, match="unknown export format 'tflite'")
    one_line("export", vae, "--score", "neg-elbo", "-o", out, "--format", "torchscript",
             match="the neg-elbo score draws random numbers and is not exported; exportable scores of vae: "
                   "reconstruction, squared-error")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the extra were not installed
    one_line("export", vae, "--format", "onnx", "-o", out, match="pip install 'aekit[export]'")
    assert not out.exists()
    with pytest.raises(AekitError, match="free-energy"):
        export_run(trained["vae"], out, "torchscript", score="free-energy")
