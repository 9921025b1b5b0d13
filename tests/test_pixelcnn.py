"""The gated PixelCNN: causality (autograd and perturbation), no blind spot, normalization by exact
enumeration, cached sampling against teacher forcing and against the exact distribution, the prior
over codes end to end (train prior, sample --prior, the bound), and the PixelCNN likelihood head."""

import itertools
import math

import numpy as np
import pytest
import torch

import aekit
from aekit.cli import main
from aekit.config import DataShape, ModelConfig
from aekit.errors import AekitError
from aekit.models import build_model
from aekit.models.vqvae import CodePrior, evaluate_prior, prior_bound, train_prior
from aekit.pixelcnn import AutoregressiveModel

MAPS = [(5, 6), (11,), (2, 3, 4)]  # 2-D (gated PixelCNN), 1-D, 3-D flattened in raster order


def _dependencies(model: AutoregressiveModel, shape) -> torch.Tensor:
    """D[i, j] = whether the output at position i has a nonzero gradient w.r.t. the input at position j."""
    torch.manual_seed(1)
    n = math.prod(shape)
    feats = torch.randn(1, model.embed.embedding_dim, *shape, requires_grad=True)
    out = model.net.features(feats)  # (1, p, H, W): before the output head, whose ReLUs could hide a dependency
    deps = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        (g,) = torch.autograd.grad(out.reshape(1, out.shape[1], -1)[0, :, i].sum(), feats, retain_graph=True)
        deps[i] = g[0].abs().sum(0).flatten() > 0
    return deps


@pytest.mark.parametrize("shape", MAPS)
def test_outputs_depend_only_on_earlier_positions(shape):
    model = AutoregressiveModel(shape, num_values=5, hidden_channels=8, layers=3)
    deps = _dependencies(model, shape)
    assert not deps.triu().any()  # never on itself nor on a later position (raster order)


@pytest.mark.parametrize("shape", MAPS)
def test_no_blind_spot_with_enough_layers(shape):
    model = AutoregressiveModel(shape, num_values=5, hidden_channels=8, layers=8)
    deps = _dependencies(model, shape)
    assert torch.equal(deps, torch.ones_like(deps).tril(-1))  # every earlier position is seen


def test_changing_a_code_changes_no_earlier_output():
    torch.manual_seed(0)
    model = AutoregressiveModel((4, 5), num_values=6, hidden_channels=8, layers=4, num_classes=3)
    codes = torch.randint(6, (2, 4, 5))
    y = torch.tensor([0, 2])
    base = model.logits(codes, y=y).reshape(2, 6, -1)
    for i in range(20):
        changed = codes.clone().reshape(2, -1)
        changed[:, i] = (changed[:, i] + 1) % 6
        out = model.logits(changed.reshape(2, 4, 5), y=y).reshape(2, 6, -1)
        torch.testing.assert_close(out[:, :, :i + 1], base[:, :, :i + 1], atol=0, rtol=0)
        if i + 1 < 20:
            assert (out[:, :, i + 1:] != base[:, :, i + 1:]).any()  # a later output does change


@pytest.mark.parametrize("shape, categorical", [((2, 2), False), ((1, 3), True), ((4,), False), ((1, 2, 2), True)])
def test_probabilities_sum_to_one_by_exact_enumeration(shape, categorical):
    torch.manual_seed(0)
    k = 3 if categorical else 2
    model = AutoregressiveModel(shape, num_values=3 if categorical else None, channels=1, hidden_channels=6,
                                layers=3, num_classes=2, cond_channels=0 if categorical else 2)
    n = math.prod(shape)
    configs = torch.tensor(list(itertools.product(range(k), repeat=n)))  # (k^n, n)
    x = configs.reshape(-1, *shape) if categorical else configs.reshape(-1, 1, *shape).float()
    for label in (0, 1):
        y = torch.full((len(configs),), label)
        cond = None if categorical else torch.randn(1, 2, *shape).expand(len(configs), -1, *shape)
        total = torch.logsumexp(model.log_prob(x, cond, y), 0)
        assert float(total.detach()) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("shape", MAPS)
def test_cached_sampling_reproduces_teacher_forcing(shape):
    torch.manual_seed(0)
    model = AutoregressiveModel(shape, num_values=7, hidden_channels=8, layers=4, num_classes=3, cond_channels=0)
    y = torch.tensor([0, 1, 2, 1])
    record = []
    codes = model.sample(4, None, y, record=record)
    assert codes.shape == (4, *shape) and codes.dtype == torch.long
    recorded = torch.stack(record, -1)  # (4, K, positions): logits seen while sampling
    torch.testing.assert_close(model.logits(codes, y=y).reshape(4, 7, -1), recorded, atol=1e-5, rtol=1e-5)


def test_cached_sampling_with_a_spatial_conditioning_map():
    torch.manual_seed(0)
    model = AutoregressiveModel((5, 4), channels=2, hidden_channels=8, layers=3, cond_channels=3)
    cond = torch.randn(3, 3, 5, 4)
    record = []
    x = model.sample(3, cond, record=record)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(model.logits(x, cond).reshape(3, 2, -1), torch.stack(record, -1), atol=1e-5, rtol=1e-5)


def test_samples_follow_the_exact_distribution():
    torch.manual_seed(0)
    model = AutoregressiveModel((2, 2), channels=1, hidden_channels=6, layers=3)
    with torch.no_grad():  # sharpen the distribution so its 16 probabilities differ
        for p in model.parameters():
            p.mul_(3.0)
    configs = torch.tensor(list(itertools.product((0.0, 1.0), repeat=4))).reshape(16, 1, 2, 2)
    exact = model.log_prob(configs).exp().detach()
    n = 6000
    x = model.sample(n).reshape(n, 4)
    index = (x * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()
    freq = torch.bincount(index, minlength=16).double() / n
    assert float((freq - exact.double()).abs().max()) < 4 * math.sqrt(0.25 / n)  # 4 standard errors at most


def test_prior_learns_structure_the_uniform_prior_cannot():
    """Maps whose codes all equal one random value: entropy log K per map, against ∏S·log K for uniform codes."""
    torch.manual_seed(0)
    k, shape = 8, (3, 3)
    prior = CodePrior(shape, k, 2, channels=16, layers=3)
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)
    for _ in range(150):
        codes = torch.randint(k, (64, 1, 1)).expand(64, *shape)
        loss = -prior.log_prob(codes).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = torch.randint(k, (256, 1, 1)).expand(256, *shape)
    with torch.no_grad():
        nll = float(-prior.log_prob(test).mean())
    assert nll < math.log(k) + 1.0 < 9 * math.log(k)
    samples = prior.sample_codes(32)
    assert (samples == samples[:, :1, :1]).float().mean() > 0.9  # samples are (nearly) constant maps too


# ----------------------------------------------------------------------------- the prior run, end to end
VQ_FLAGS = ["--hidden-dims", "16", "--codebook-size", "16", "--code-dim", "4", "--residual-blocks", "1",
            "--batch-size", "64", "--no-progress", "--figures", "none", "--binarize", "dynamic"]
PRIOR_FLAGS = ["--pixelcnn-layers", "3", "--pixelcnn-channels", "16", "--batch-size", "64", "--no-progress"]


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("prior")
    assert main(["train", "vq-vae", "--data", "digits", "--epochs", "3", "--out", str(root / "vq"), *VQ_FLAGS]) == 0
    assert main(["train", "prior", "--codes-from", str(root / "vq"), "--epochs", "4", "--class-conditional",
                 "--figures", "end", "--out", str(root / "prior"), *PRIOR_FLAGS]) == 0
    return root


def test_prior_run_beats_the_uniform_prior_and_the_bound_adds_up(runs_dir):
    vq, prior = aekit.load(runs_dir / "vq"), aekit.load(runs_dir / "prior")
    assert prior.config.model.codebook_size == 16 and prior.code_shape == vq.code_shape == (4, 4)
    assert {"samples.png", "sample_codes.png", "curves.png"} <= {p.name for p in (runs_dir / "prior").iterdir()}
    r = evaluate_prior(prior)
    assert r["bound_nats"] == pytest.approx(r["reconstruction"] + r["prior_nll"])
    assert r["prior_nll"] < r["uniform_prior_nll"] == pytest.approx(16 * math.log(16))
    assert r["bound_bits_per_dim"] == pytest.approx(r["bound_nats"] / (64 * math.log(2)))
    # The same figure by hand on the vq-vae's test images.
    from aekit.trainer import prepare_data

    test = prepare_data(vq.config).test
    with torch.no_grad():
        codes = vq.codes(test.x)
        by_hand = float((-vq.decode_codes(codes).log_prob(test.x) - prior.log_prob(codes, test.y)).mean())
    assert r["bound_nats"] == pytest.approx(by_hand, rel=1e-5)
    assert prior_bound(vq, prior, test)["bound_nats"] == pytest.approx(by_hand, rel=1e-5)


def test_sample_with_prior_and_labels(runs_dir, tmp_path, capsys):
    code, out, _ = _cli(capsys, "sample", runs_dir / "vq", "--prior", runs_dir / "prior", "-n", "12", "--label", "3",
                        "-o", tmp_path / "s.npy")
    assert code == 0 and "maps/s" in out
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (12, 64) and 0 <= x.min() and x.max() <= 1
    assert _cli(capsys, "sample", runs_dir / "vq", "--prior", runs_dir / "prior", "-o", tmp_path / "s.png")[0] == 0


def test_prior_resumes_exactly(runs_dir, tmp_path):
    a = train_prior(runs_dir / "vq", out=tmp_path / "a", epochs=2, pixelcnn_layers=2, pixelcnn_channels=8,
                    batch_size=64, figures="none", progress=False)
    train_prior(runs_dir / "vq", out=tmp_path / "b", epochs=1, pixelcnn_layers=2, pixelcnn_channels=8,
                batch_size=64, figures="none", progress=False)
    b = aekit.resume(tmp_path / "b", epochs=2)
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(va, vb, atol=0, rtol=0, msg=k)


@pytest.mark.parametrize("argv, message", [
    (["sample", "{vq}", "-n", "4"], "no prior over its codes"),
    (["sample", "{vq}", "--prior", "{vq}"], "is a vq-vae run, not a prior"),
    (["sample", "{prior}", "--prior", "{prior}"], "needs a vq-vae run"),
    (["sample", "{other}", "--prior", "{prior}"], "another codebook"),
    (["sample", "{vq}", "--prior", "{prior}", "--label", "12"], "--label must be in 0..9"),
    (["train", "prior", "--codes-from", "{other_ae}", "--out", "{new}"], "not a vq-vae"),
    (["train", "prior", "--codes-from", "{vq}", "--codebook-size", "32", "--out", "{new}"], "not 32"),
    (["train", "prior", "--out", "{new}"], "needs --codes-from"),
    (["train", "prior", "--codes-from", "{vq}", "--data", "mnist", "--out", "{new}"], "--data does not apply"),
    (["train", "vae", "--codes-from", "{vq}", "--out", "{new}"], "--codes-from is for aekit train prior"),
])
def test_bad_prior_input_is_one_line_exit_2_and_writes_nothing(runs_dir, tmp_path, capsys, argv, message):
    other = tmp_path / "other"
    if "{other}" in argv:  # a vq-vae with the same settings but another seed: another codebook
        main(["train", "vq-vae", "--data", "digits", "--epochs", "1", "--seed", "5", "--out", str(other), *VQ_FLAGS])
    if "{other_ae}" in argv:
        main(["train", "ae", "--data", "digits", "--epochs", "1", "--hidden-dims", "8", "--no-progress",
              "--figures", "none", "--out", str(tmp_path / "ae")])
    names = {"vq": runs_dir / "vq", "prior": runs_dir / "prior", "other": other, "other_ae": tmp_path / "ae",
             "new": tmp_path / "new"}
    before = {p: p.stat().st_mtime_ns for p in (runs_dir / "prior").iterdir()}
    code, _, err = _cli(capsys, *[a.format(**names) for a in argv])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "new").exists()
    assert before == {p: p.stat().st_mtime_ns for p in (runs_dir / "prior").iterdir()}


# ----------------------------------------------------------------------------- the PixelCNN likelihood head
def test_pixelcnn_likelihood_in_the_vae():
    torch.manual_seed(0)
    cfg = ModelConfig(kind="vae", likelihood="pixelcnn", pixelcnn_layers=2, pixelcnn_channels=8, hidden_dims=(16,),
                      latent_dim=2)
    model = build_model(cfg, DataShape(data_dim=9, image_shape=(1, 3, 3)))
    x = torch.rand(3, 9).round()
    loss = model.loss(x)
    assert loss.total.shape == (3,) and torch.isfinite(loss.total).all()
    log_w = model.log_weights(x, num_samples=5)  # (k, B): the head broadcasts over samples of z
    assert log_w.shape == (5, 3)
    px = model.decode(torch.randn(3, 2))
    configs = torch.tensor(list(itertools.product((0.0, 1.0), repeat=9)))  # all 512 binary 3x3 images
    total = torch.logsumexp(model.decode(torch.zeros(1, 2).expand(len(configs), 2)).log_prob(configs), 0)
    assert float(total.detach()) == pytest.approx(0.0, abs=1e-4)  # p(x|z) is normalized
    assert px.sample().shape == (3, 9) and px.mean.shape == (3, 9)
    with pytest.raises(AekitError, match="categorical likelihood"):
        build_model(ModelConfig(kind="vae", likelihood="categorical"), DataShape(data_dim=16))


def test_pixelcnn_vae_trains_from_the_cli(tmp_path, capsys):
    code, _, err = _cli(capsys, "train", "vae", "--data", "digits", "--likelihood", "pixelcnn", "--pixelcnn-layers",
                        "2", "--pixelcnn-channels", "8", "--hidden-dims", "16", "--latent-dim", "2", "--epochs", "1",
                        "--binarize", "dynamic", "--no-progress", "--figures", "none", "--out", tmp_path / "r")
    assert code == 0, err
    code, _, err = _cli(capsys, "train", "vae", "--data", "digits", "--pixelcnn-layers", "2", "--out", tmp_path / "s")
    assert code == 2 and "--pixelcnn-layers acts only with --likelihood pixelcnn" in err
