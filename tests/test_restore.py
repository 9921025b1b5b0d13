"""Image restoration: PSNR / SSIM, the degradations, the VAE with a corruption, `aekit restore` and its bad input."""

import json
import math

import numpy as np
import pytest
import torch

import aekit
from aekit.cli import main
from aekit.config import DataShape, ModelConfig
from aekit.image_metrics import gaussian_window, psnr, rgb_to_ycbcr, ssim, ycbcr_to_rgb
from aekit.latents import sharded_noise
from aekit.models import build_model
from aekit.regularizers import BlockMask, Downsample, Grayscale, MaskingNoise, build_corruption
from aekit.restoration import evaluate_restoration
from conftest import TINY

GREY = DataShape(data_dim=28 * 28, image_shape=(1, 28, 28))
COLOUR = DataShape(data_dim=3 * 16 * 16, image_shape=(3, 16, 16))


def _pattern(h, w, c, phase):
    """A smooth deterministic test image (C, H, W) in [0.1, 0.9]."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([0.5 + 0.4 * np.sin(0.37 * i + 0.23 * j + phase + k) * np.cos(0.11 * i * j / h + k * 0.5)
                     for k in range(c)], 0)


# ----------------------------------------------------------------------------- PSNR and SSIM
def test_psnr_of_hand_made_images():
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.isinf(psnr(x, x)).all()
    for offset in (0.1, 0.01):  # MSE = offset², PSNR = −20 log₁₀(offset)
        torch.testing.assert_close(psnr(x, x + offset), torch.full((3,), -20 * math.log10(offset), dtype=torch.float64))
    # rows with an image shape give the same per-image values; data range 255 shifts by 20 log₁₀ 255
    torch.testing.assert_close(psnr(x.reshape(3, -1), (x + 0.1).reshape(3, -1), (1, 12, 12)), psnr(x, x + 0.1))
    torch.testing.assert_close(psnr(255 * x, 255 * (x + 0.1), data_range=255), psnr(x, x + 0.1))


def test_ssim_of_identical_and_offset_constant_images():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    # constant images a and a + c: σ = 0, so SSIM = (2a(a + c) + C₁) / (a² + (a + c)² + C₁) at every window
    a, c, c1 = 0.3, 0.2, (0.01 * 1.0) ** 2
    flat = torch.full((1, 1, 20, 20), a, dtype=torch.float64)
    expected = (2 * a * (a + c) + c1) / (a ** 2 + (a + c) ** 2 + c1)
    assert ssim(flat, flat + c).item() == pytest.approx(expected, rel=1e-12)
    # a constant offset on a textured image leaves the structure term 1 and lowers only the luminance term
    t = torch.tensor(_pattern(24, 24, 1, 0.0))[None]
    assert 0.9 < ssim(t, t + 0.05).item() < 1.0
    assert ssim(t, 1 - t).item() < 0  # the negative image: anti-correlated structure


def test_ssim_window_is_the_standard_gaussian():
    w = gaussian_window()
    assert w.shape == (11, 11) and w.sum().item() == pytest.approx(1.0)
    assert (w[5, 5] / w[5, 6]).item() == pytest.approx(math.exp(1 / (2 * 1.5 ** 2)))  # σ = 1.5


@pytest.mark.parametrize("h, w, c, expected_ssim, expected_psnr", [
    # scikit-image 0.26.0: structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    # use_sample_covariance=False, data_range=1.0, channel_axis=2); peak_signal_noise_ratio(x, y, data_range=1.0)
    (28, 28, 1, 0.9839869550477222, 29.389915491731674),
    (32, 32, 3, 0.9861527616999687, 30.810651164890714),
    (20, 37, 1, 0.9847615630870062, 29.549366974035806),
])
def test_ssim_and_psnr_equal_scikit_image(h, w, c, expected_ssim, expected_psnr):
    x = _pattern(h, w, c, 0.0)
    y = np.clip(x + 0.15 * _pattern(h, w, c, 1.3) - 0.07, 0, 1)
    assert ssim(torch.tensor(x[None]), torch.tensor(y[None])).item() == pytest.approx(expected_ssim, abs=1e-12)
    assert psnr(torch.tensor(x[None]), torch.tensor(y[None])).item() == pytest.approx(expected_psnr, abs=1e-10)


def test_ycbcr_round_trip_and_grey_has_neutral_chroma():
    x = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x)), x)
    grey = x[:, :1].expand(-1, 3, -1, -1)
    ycc = rgb_to_ycbcr(grey)
    torch.testing.assert_close(ycc[:, 0], grey[:, 0])
    torch.testing.assert_close(ycc[:, 1:], torch.full_like(ycc[:, 1:], 0.5))


# ----------------------------------------------------------------------------- degradations
@pytest.mark.parametrize("factor", [2, 4])
def test_downsampling_a_constant_image_changes_nothing_and_averages_blocks(factor):
    d = build_corruption(f"downsample:{factor}", 0.25, GREY)
    flat = torch.full((3, 784), 0.7)
    torch.testing.assert_close(d.corrupt(flat), flat)
    torch.testing.assert_close(d.baseline(d.corrupt(flat)), flat)  # bicubic of a constant is the constant
    x = torch.rand(2, 784, generator=torch.Generator().manual_seed(0))
    low = x.reshape(2, 28 // factor, factor, 28 // factor, factor).mean((2, 4))  # block means by hand
    out = d.corrupt(x).reshape(2, 28, 28)
    torch.testing.assert_close(out[:, ::factor, ::factor], low)
    torch.testing.assert_close(out, low.repeat_interleave(factor, 1).repeat_interleave(factor, 2))
    state = torch.get_rng_state()
    d.corrupt(x)
    assert torch.equal(torch.get_rng_state(), state)  # deterministic: no draw


def test_grayscale_of_a_grey_image_is_unchanged_and_restore_keeps_luminance():
    g = build_corruption("grayscale", 0.25, COLOUR)
    grey = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0)).expand(-1, 3, -1, -1).reshape(3, -1)
    torch.testing.assert_close(g.corrupt(grey), grey)
    colour = torch.rand(3, 768, generator=torch.Generator().manual_seed(1))
    y = rgb_to_ycbcr(colour.reshape(3, 3, 16, 16))[:, 0]
    torch.testing.assert_close(g.corrupt(colour).reshape(3, 3, 16, 16), y[:, None].expand(-1, 3, -1, -1))
    # a restoration keeps the observed luminance and takes the model's chroma (values chosen so nothing clips)
    colour = 0.3 + 0.4 * torch.rand(3, 768, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    guess = 0.45 + 0.1 * torch.rand(3, 768, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x_tilde = g.corrupt(colour)
    restored = rgb_to_ycbcr(g.restore(x_tilde, guess).reshape(3, 3, 16, 16))
    torch.testing.assert_close(restored[:, 0], rgb_to_ycbcr(colour.reshape(3, 3, 16, 16))[:, 0])
    torch.testing.assert_close(restored[:, 1:], rgb_to_ycbcr(guess.reshape(3, 3, 16, 16))[:, 1:])
    # the baseline: the grey image with the reference's mean chroma
    reference = torch.rand(50, 768, generator=torch.Generator().manual_seed(3))
    chroma = rgb_to_ycbcr(reference.reshape(50, 3, 16, 16)).mean((0, 2, 3))[1:]
    base = rgb_to_ycbcr(g.baseline(x_tilde, reference).reshape(3, 3, 16, 16))
    assert torch.allclose(base[:, 1:].mean((0, 2, 3)).float(), chroma, atol=0.02)


@pytest.mark.parametrize("level", [0.1, 0.25, 0.5])
def test_a_mask_hides_exactly_the_stated_fraction(level):
    x = 0.1 + 0.8 * torch.rand(64, 784, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    hidden = MaskingNoise(level).corrupt(x) == 0
    assert (hidden.sum(1) == round(level * 784)).all()  # every image: exactly round(νD) entries
    block = build_corruption("block", level, GREY)
    h, w = block.hole
    assert (h, w) == (round(math.sqrt(level) * 28),) * 2
    torch.manual_seed(1)
    holes = (block.corrupt(x) == 0).reshape(64, 28, 28)
    assert (holes.sum((1, 2)) == h * w).all()
    rows, cols = holes.any(2), holes.any(1)  # one rectangle: h consecutive rows × w consecutive columns
    assert (rows.sum(1) == h).all() and (cols.sum(1) == w).all()
    assert len({int(r.float().argmax()) for r in rows}) > 5  # at varied positions


def test_corruptions_give_each_process_its_slice_of_the_global_batch():
    """Under DDP each rank corrupts its rows exactly as one process corrupts the whole batch."""
    x = torch.rand(8, 3 * 16 * 16, generator=torch.Generator().manual_seed(0))
    for name in ("gaussian", "salt-pepper", "masking", "block"):
        c = build_corruption(name, 0.3, COLOUR)
        torch.manual_seed(4)
        whole = c.corrupt(x)
        parts = []
        for rank in range(2):
            torch.manual_seed(4)
            with sharded_noise(rank, 2):
                parts.append(c.corrupt(x[4 * rank:4 * rank + 4]))
        torch.testing.assert_close(torch.cat(parts), whole, msg=name)


def test_corruptions_refuse_shapes_they_cannot_act_on():
    with pytest.raises(aekit.AekitError, match="downsample:3 needs a factor that divides the image size 28x28; "
                                               "use one of: downsample:2, downsample:4, downsample:7"):
        build_corruption("downsample:3", 0.25, GREY)
    with pytest.raises(aekit.AekitError, match="grayscale \\(colorization\\) needs colour images with 3 channels"):
        build_corruption("grayscale", 0.25, GREY)
    with pytest.raises(aekit.AekitError, match="works on images"):
        build_corruption("block", 0.25, DataShape(data_dim=10))
    with pytest.raises(aekit.AekitError, match="downsample needs its factor"):
        build_corruption("downsample", 0.25)
    assert isinstance(build_corruption("mask", 0.2), MaskingNoise)  # the restoration names are aliases
    assert str(build_corruption("noise", 0.2)) == "gaussian(0.2)"
    assert isinstance(build_corruption("downsample:2", 0.25, GREY), Downsample)
    assert isinstance(build_corruption("grayscale", 0.25, COLOUR), Grayscale)
    assert isinstance(build_corruption("block", 0.25, GREY), BlockMask)


# ----------------------------------------------------------------------------- the VAE with a corruption
def test_vae_encoder_sees_the_degraded_input_and_the_likelihood_scores_the_clean_one():
    torch.manual_seed(0)
    cfg = ModelConfig(kind="vae", hidden_dims=(32,), latent_dim=4, corruption="masking", corruption_level=0.3, beta=2.0)
    model = build_model(cfg, DataShape(data_dim=64, image_shape=(1, 8, 8)))
    x = torch.rand(16, 64, generator=torch.Generator().manual_seed(1))
    model.train()
    torch.manual_seed(5)
    x_tilde = model.corruption.corrupt(x)
    qz = model.encode(x_tilde)
    z = qz.rsample()
    expected = -model.decode(z).log_prob(x) + 2.0 * torch.distributions.kl_divergence(qz, model.prior())
    torch.manual_seed(5)
    torch.testing.assert_close(model.loss(x).total, expected)
    model.eval()  # evaluation is clean: the ELBO of x itself
    torch.manual_seed(7)
    clean = model.evaluation_terms(x)
    torch.manual_seed(7)
    rec, kl, _ = model.elbo_terms(x)
    torch.testing.assert_close(clean["neg_elbo"], rec + kl)
    assert "corrupts_input" in model.capabilities and "sample" in model.capabilities


# ----------------------------------------------------------------------------- training beats the baseline
def test_trained_models_beat_the_trivial_baseline(tmp_path):
    """Super-resolution 8×8 ← 4×4 on digits: a dae and a vae beat bicubic upsampling; inpainting: the dae beats
    the masked input. Gains in PSNR over the baseline for training seeds 0–2: dae 1.7–2.3 dB, vae (β = 0.1)
    1.15–1.44 dB, inpainting 2.3–2.9 dB; the test asks for 1, 0.5 and 1.5 dB."""
    settings = {**TINY, "hidden_dims": (64,), "latent_dim": 16, "epochs": 12}
    sr = aekit.train("dae", "digits", out=tmp_path / "sr", corruption="downsample:2", **settings)
    vae = aekit.train("vae", "digits", out=tmp_path / "vae", corruption="downsample:2", beta=0.1, **settings)
    from aekit.trainer import prepare_data

    test = prepare_data(sr.config).test
    for model, margin in ((sr, 1.0), (vae, 0.5)):
        r = evaluate_restoration(model, test.x, model.corruption, image_shape=test.image_shape).summary()
        assert r["psnr"]["restored"] > r["psnr"]["baseline"] + margin, r
        assert r["psnr"]["baseline"] > r["psnr"]["degraded"]  # bicubic beats the blocky input itself
    mask = build_corruption("masking", 0.25, sr.config.shape)
    inpaint = aekit.train("dae", "digits", out=tmp_path / "inpaint", **settings)  # dae default: masking 0.25
    r = evaluate_restoration(inpaint, test.x, mask, image_shape=test.image_shape).summary()
    assert r["psnr"]["restored"] > r["psnr"]["baseline"] + 1.5, r


# ----------------------------------------------------------------------------- the command line
def test_cli_restore_writes_rows_arrays_and_scores(tmp_path, capsys):
    flags = ["--data", "digits", "--epochs", "2", "--hidden-dims", "32", "--latent-dim", "8", "--no-progress",
             "--figures", "none"]
    assert main(["train", "ae", "--degrade", "block", "--corruption-level", "0.25", "--out", str(tmp_path / "r"),
                 *flags]) == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["model"]["corruption"] == "block"
    capsys.readouterr()
    assert main(["restore", str(tmp_path / "r"), "-o", str(tmp_path / "rows.png")]) == 0
    assert (tmp_path / "rows.png").read_bytes()[:4] == b"\x89PNG"
    assert "PSNR (mean of 359 images, block(0.25))" in capsys.readouterr().out
    assert main(["restore", str(tmp_path / "r"), "--degrade", "noise", "--level", "0.2", "-n", "20",
                 "-o", str(tmp_path / "all.npz"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["corruption"] == "gaussian(0.2)" and summary["images"] == 20 and "ssim" not in summary  # 8×8 < 11×11
    saved = np.load(tmp_path / "all.npz")
    assert saved["restored"].shape == (20, 1, 8, 8) and saved["psnr_restored"].shape == (20,)
    assert np.mean(saved["psnr_restored"]) == pytest.approx(summary["psnr"]["restored"])
    # inputs degraded already: restorations only
    np.save(tmp_path / "inputs.npy", saved["degraded"])
    assert main(["restore", str(tmp_path / "r"), "--degrade", "none", "--data", str(tmp_path / "inputs.npy"),
                 "-o", str(tmp_path / "out.npy")]) == 0
    assert np.load(tmp_path / "out.npy").shape == (20, 1, 8, 8)


def _one_line_error(capsys, argv, match):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("aekit: error:") and match in err, err


def test_bad_restoration_input_gives_one_line(tmp_path, capsys):
    from PIL import Image

    flags = ["--data", "digits", "--epochs", "1", "--hidden-dims", "16", "--latent-dim", "4", "--no-progress",
             "--figures", "none"]
    _one_line_error(capsys, ["train", "dae", "--degrade", "blur", "--out", tmp_path / "x", *flags],
                    "unknown corruption 'blur'; choose one of: none, gaussian (or noise), salt-pepper")
    _one_line_error(capsys, ["train", "dae", "--degrade", "downsample:3", "--out", tmp_path / "x", *flags],
                    "downsample:3 needs a factor that divides the image size 8x8; use one of: downsample:2, downsample:4")
    _one_line_error(capsys, ["train", "vae", "--degrade", "grayscale", "--out", tmp_path / "x", *flags],
                    "grayscale (colorization) needs colour images with 3 channels, but these have 1")
    _one_line_error(capsys, ["train", "dae", "--degrade", "downsample:2", "--corruption-level", "0.3",
                             "--out", tmp_path / "x", *flags], "--corruption-level does not apply to dae")
    _one_line_error(capsys, ["train", "dae", "--degrade", "block", "--data", "circle", "--likelihood", "gaussian",
                             "--out", tmp_path / "x", "--epochs", "1", "--no-progress"], "works on images")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    _one_line_error(capsys, ["train", "ae", "--data", f"images:{tmp_path / 'empty'}", "--out", tmp_path / "x"],
                    "holds no readable images")
    (tmp_path / "mixed").mkdir()
    Image.new("RGB", (12, 10)).save(tmp_path / "mixed" / "a.png")
    Image.new("RGB", (16, 16)).save(tmp_path / "mixed" / "b.jpg")
    _one_line_error(capsys, ["train", "ae", "--data", f"images:{tmp_path / 'mixed'}", "--out", tmp_path / "x"],
                    "have different sizes (10x12, 16x16, ...); give one size")
    (tmp_path / "mixed" / "c.png").write_bytes(b"not a png")
    _one_line_error(capsys, ["train", "ae", "--data", f"images:{tmp_path / 'mixed'}@8", "--out", tmp_path / "x"],
                    "cannot read")
    assert not (tmp_path / "x").exists()
    # restore: a run without a corruption needs --degrade; a data set of another shape is refused
    assert main(["train", "ae", "--out", str(tmp_path / "plain"), *flags]) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["restore", tmp_path / "plain", "-o", tmp_path / "o.png"],
                    "was trained without a corruption: name the degradation to apply with --degrade KIND")
    _one_line_error(capsys, ["restore", tmp_path / "plain", "--degrade", "downsample:3", "-o", tmp_path / "o.png"],
                    "downsample:3 needs a factor that divides")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5, 5), np.float32))
    _one_line_error(capsys, ["restore", tmp_path / "plain", "--degrade", "mask", "--data", tmp_path / "wrong.npy",
                             "-o", tmp_path / "o.png"], "was trained on 1x8x8 images, but")
    _one_line_error(capsys, ["restore", tmp_path / "plain", "--degrade", "mask", "-o", tmp_path / "o.gif"],
                    "-o must end in .png, .npy or .npz")
    assert not (tmp_path / "o.png").exists()


def test_image_folders_and_photos_load_as_colour_data(tmp_path):
    from PIL import Image

    from aekit.data import load_data

    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray((rng.random((20 + i, 30, 3)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    splits = load_data(f"images:{tmp_path}@16x24")
    assert splits.image_shape == (3, 16, 24) and len(splits.train) + len(splits.val) + len(splits.test) == 10
    for i in range(5):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(tmp_path / f"grey{i}.png")
    for i in range(10):
        (tmp_path / f"{i}.png").unlink()
    assert load_data(f"images:{tmp_path}").image_shape == (1, 16, 16)  # all grey: one channel

    from aekit.data import photos

    data = photos.load_photos("16")
    assert data.image_shape == (3, 16, 16) and data.x.shape == (6000, 768) and data.test_x.shape == (1000, 768)
    assert 0 <= float(data.x.min()) and float(data.x.max()) <= 1
    # test patches come from the right-most 160 columns, train patches from the rest: compare with the photo
    image = photos._sample_images()[0].astype(np.float32) / 255
    first = data.test_x[0].reshape(3, 16, 16).permute(1, 2, 0).numpy()
    candidates = zip(*np.nonzero((image[:-15, :-15] == first[0, 0]).all(-1)))  # where the first pixel matches
    hits = [(r, c) for r, c in candidates if np.array_equal(image[r:r + 16, c:c + 16], first)]
    assert hits and all(c >= 640 - 160 for _, c in hits)
