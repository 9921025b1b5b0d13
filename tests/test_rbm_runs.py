"""RBMs and the RBM-pretrained deep autoencoder as aekit runs (CLI / API / evaluate)."""

import json

import pytest
import torch

import aekit
from aekit.cli import main
from aekit.evaluate import evaluate_model
from aekit.models.deep_ae import DeepAutoencoder, pretrain_rbm_stack
from aekit.models.rbm import RBM
from aekit.trainer import prepare_data


def test_rbm_run_and_ais_log_likelihood_match_enumeration(tmp_path):
    """12 hidden units: log Z by enumeration (2^12 states) checks the AIS estimate `aekit evaluate` reports."""
    model = aekit.train("rbm", "digits", out=tmp_path / "rbm", latent_dim=12, epochs=60, binarize="static",
                        figures="none", progress=False)
    splits = prepare_data(model.config)
    r = evaluate_model(model, splits.test, reference=splits.train, progress=False)
    exact = float(model.log_prob(splits.test.x).mean())
    assert r["log_px"] == pytest.approx(exact, abs=0.1)
    lz = r["log_partition"]
    assert lz["lower"] <= float(model.log_partition()) + 0.05 and float(model.log_partition()) - 0.05 <= lz["upper"]
    # training did something: the data are more likely than under the untrained model
    untrained = RBM(64, 12)
    untrained.init_visible_bias(splits.train.x)
    assert exact > float(untrained.log_prob(splits.test.x).mean()) + 1.0


def test_rbm_cli_writes_filters_and_samples(tmp_path, capsys):
    run = tmp_path / "rbm"
    assert main(["train", "rbm", "--data", "digits", "--latent-dim", "16", "--epochs", "2", "--out", str(run),
                 "--no-progress"]) == 0
    assert (run / "samples.png").exists() and (run / "filters.png").exists()
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["lr"] == 0.1 and config["train"]["batch_size"] == 100  # CD defaults, not Adam's
    assert main(["train", "rbm", "--data", "digits", "--likelihood", "gaussian-learned", "--out", str(tmp_path / "x")]) == 2
    assert "visible units" in capsys.readouterr().err


def test_unrolled_rbm_stack_computes_the_rbm_up_and_down_passes():
    torch.manual_seed(0)
    rbms = [RBM(20, 12), RBM(12, 8), RBM(8, 3, hidden="linear")]
    for r in rbms:
        for p in r.parameters():
            p.data.normal_()
    model = DeepAutoencoder.from_rbms(rbms)
    x = torch.rand(5, 20)
    h = x
    for r in rbms:
        h = r.hidden_given_visible(h).mean
    torch.testing.assert_close(model.encode(x), h)
    v = h
    for r in reversed(rbms):
        v = r.visible_given_hidden(v).mean
    torch.testing.assert_close(model.decode(h).mean, v)


def test_pretraining_makes_the_deep_ae_beat_pca_and_random_initialization(tmp_path):
    """Hinton & Salakhutdinov's claim at a small budget on digits: with layer-wise RBM pretraining the
    deep autoencoder reconstructs better than PCA with the same code size, and better than the same
    network and fine-tuning from a random start (which the mean image, 4.68, also bounds)."""
    common = dict(hidden_dims=(64, 32), latent_dim=4, epochs=30, batch_size=32, figures="none", progress=False)
    pretrained = aekit.train("deep-ae", "digits", out=tmp_path / "rbm", pretrain="rbm", pretrain_epochs=20, **common)
    random_init = aekit.train("deep-ae", "digits", out=tmp_path / "none", pretrain="none", **common)
    pca = aekit.train("pca", "digits", out=tmp_path / "pca", latent_dim=4, figures="none", progress=False)
    splits = prepare_data(pretrained.config)
    error = {name: evaluate_model(m, splits.test, iw_samples=0, progress=False)["squared_error"]
             for name, m in (("pretrained", pretrained), ("random", random_init), ("pca", pca))}
    mean_image = float(((splits.test.x - splits.train.x.mean(0)) ** 2).sum(1).mean())
    assert error["pretrained"] < error["pca"] < mean_image, (error, mean_image)
    assert error["pretrained"] < 0.8 * error["random"], error


def test_layerwise_pretraining_learns_each_layer():
    """Each RBM of the stack, trained on the previous one's hidden probabilities, reconstructs its input."""
    torch.manual_seed(0)
    x = (torch.rand(400, 16) < 0.5).float().repeat(1, 2)  # correlated halves: learnable structure
    rbms = pretrain_rbm_stack(x, [32, 16, 4], epochs=15, batch_size=20, progress=False)
    err = ((x - rbms[0].reconstruct(x)) ** 2).sum(-1).mean()
    assert err < ((x - x.mean(0)) ** 2).sum(-1).mean() * 0.8
