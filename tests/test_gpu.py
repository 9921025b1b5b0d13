"""GPU paths (CUDA, bfloat16 autocast). Skipped on machines without a CUDA device, such as CI."""

import pytest
import torch

import aekit
from conftest import TINY

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("amp", [False, True])
def test_training_on_cuda(tmp_path, amp):
    model = aekit.train("vae", "digits", out=tmp_path / "r", epochs=2, device="cuda", amp=amp,
                        binarize="dynamic", **TINY)
    assert next(model.parameters()).is_cuda
    loaded = aekit.load(tmp_path / "r", device="cuda")
    x = torch.rand(8, 64, device="cuda")
    assert torch.isfinite(loaded.log_likelihood(x, num_samples=100)).all()


def test_cuda_and_cpu_runs_agree_on_the_loss_scale(tmp_path):
    cpu = aekit.train("vae", "digits", out=tmp_path / "cpu", epochs=3, device="cpu", **TINY)
    gpu = aekit.train("vae", "digits", out=tmp_path / "gpu", epochs=3, device="cuda", **TINY)
    h_cpu = aekit.runs.read_metrics(tmp_path / "cpu")[-1]["val/neg_elbo"]
    h_gpu = aekit.runs.read_metrics(tmp_path / "gpu")[-1]["val/neg_elbo"]
    assert abs(h_cpu - h_gpu) < 2.0  # different RNG streams, same model and data
