"""The vector quantizer and the VQ-VAE: brute-force nearest codes, the gradients of each loss term, the
EMA formula, dead-code restarts, k-means, exact resume, code maps in 1-D / 2-D / 3-D, and bad input."""

import os

import numpy as np
import pytest
import torch

import aekit
from aekit import runs
from aekit.cli import main
from aekit.config import DataShape, ModelConfig
from aekit.errors import AekitError
from aekit.models import build_model
from aekit.models.vqvae import VQVAE, codebook_usage, code_counts
from aekit.quantizers import USAGE_DECAY, VectorQuantizer, kmeans, nearest_codes, perplexity

# A small vq-vae on the 8x8 digits: one stride-2 stage gives 4x4 code maps.
VQ_TINY = dict(hidden_dims=(16,), codebook_size=32, code_dim=8, residual_blocks=1, batch_size=64,
               figures="none", progress=False)
IMAGE = DataShape(data_dim=64, image_shape=(1, 8, 8))


def _brute_force(z, codebook):
    return ((z[:, None, :] - codebook[None]) ** 2).sum(-1).argmin(1)  # (N,): argmin over all K distances


@pytest.mark.parametrize("chunk", [1 << 22, 7 * 13, 13])  # one block; chunks of 7 rows (remainder 3); one row
def test_nearest_code_equals_brute_force(chunk):
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(73, 5, generator=g), torch.randn(13, 5, generator=g)
    idx = nearest_codes(z, codebook, chunk_elements=chunk)
    brute = _brute_force(z, codebook)
    d = ((z[:, None] - codebook[None]) ** 2).sum(-1)
    # Same index wherever the two nearest distances are not a floating-point near-tie, and always a nearest code.
    top2 = d.topk(2, largest=False).values
    clear = (top2[:, 1] - top2[:, 0]) > 1e-4
    assert torch.equal(idx[clear], brute[clear])
    torch.testing.assert_close(d.gather(1, idx[:, None])[:, 0], d.min(1).values)


def test_nearest_code_ties_go_to_the_lowest_index_across_chunks():
    # Integer coordinates: every distance is exact in float32. z = 0 is equidistant from codes 1 and 3;
    # z = (1, 0) from codes 0 and 2 (both at distance 1); duplicate codes 2 and 4 tie everywhere.
    codebook = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0], [-1.0, 1.0], [0.0, 0.0]])
    z = torch.tensor([[0.0, 0.5], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]] * 5)
    for chunk in (1 << 22, 5 * 3, 5):
        idx = nearest_codes(z, codebook, chunk_elements=chunk)
        assert torch.equal(idx, _brute_force(z, codebook))
    assert nearest_codes(z[:4], codebook).tolist() == [2, 0, 2, 1]


def test_straight_through_gradient_is_the_identity_and_reaches_the_encoder():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 3)
    z = torch.randn(2, 3, 4, 5, requires_grad=True)
    w = torch.randn(2, 3, 4, 5)
    out = q(z)
    torch.testing.assert_close(out.z_q, q.lookup(out.indices), atol=0, rtol=0)  # value: the codes exactly
    (out.z_q * w).sum().backward()
    torch.testing.assert_close(z.grad, w)  # gradient: passed straight through
    model = build_model(ModelConfig(kind="vq-vae", body="conv", hidden_dims=(16,), codebook_size=32, code_dim=8), IMAGE)
    x = torch.rand(4, 64).round()
    model.decode(model.encode(x)).log_prob(x).sum().backward()  # the reconstruction term alone
    first = model.encoder.net[0].weight
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_commitment_moves_only_the_encoder_and_the_codebook_loss_only_the_codebook():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 3, update="loss")
    z = torch.randn(4, 3, 5, requires_grad=True)
    out = q(z)
    g_z, g_e = torch.autograd.grad(out.commitment.sum(), [z, q.codebook], allow_unused=True)
    assert g_e is None or g_e.abs().sum() == 0
    assert g_z.abs().sum() > 0
    out = q(z)
    g_z, g_e = torch.autograd.grad(out.codebook.sum(), [z, q.codebook], allow_unused=True)
    assert g_z is None or g_z.abs().sum() == 0
    assert g_e.abs().sum() > 0
    # Both are per example: the sum over the code map of squared distances, the same value for both.
    flat = z.detach().movedim(1, -1).reshape(4, -1, 3)
    e = q.codebook.detach()[out.indices]  # (4, 5, 3)
    torch.testing.assert_close(out.commitment.detach(), ((flat - e) ** 2).sum((1, 2)))
    torch.testing.assert_close(out.codebook.detach(), out.commitment.detach())


def test_ema_update_on_a_hand_made_batch_equals_the_formula():
    q = VectorQuantizer(3, 2, update="ema", decay=0.9, epsilon=1e-5)
    codebook = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    q.set_codebook(codebook)
    # Two vectors near code 0, one near code 1, none near code 2; z (B=1, D=2, 3 positions).
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 1.0]])
    q.train()
    assert q(vectors.T[None]).indices.tolist() == [[0, 0, 1]]
    q.apply_statistics()
    counts, sums = torch.tensor([2.0, 1.0, 0.0]), torch.tensor([[1.0, 1.0], [9.0, 1.0], [0.0, 0.0]])
    n_ema = 0.9 * 1.0 + 0.1 * counts                     # N starts at 1
    m_ema = 0.9 * codebook + 0.1 * sums                  # m starts at the codebook
    n = n_ema.sum()
    smoothed = (n_ema + 1e-5) / (n + 3 * 1e-5) * n       # Laplace smoothing
    torch.testing.assert_close(q.ema_count, n_ema)
    torch.testing.assert_close(q.ema_sum, m_ema)
    torch.testing.assert_close(q.codebook, m_ema / smoothed[:, None])
    torch.testing.assert_close(q.usage_estimate(), counts)  # usage after the first update: the counts
    q.eval()
    before = q.codebook.clone()
    q(vectors.T[None])
    q.apply_statistics()  # nothing stashed in eval mode: nothing changes
    torch.testing.assert_close(q.codebook, before, atol=0, rtol=0)


def test_dead_code_restart_reseeds_exactly_the_unused_codes():
    q = VectorQuantizer(6, 2, update="loss", restart_threshold=0.5)
    codebook = torch.tensor([[0.0, 0.0], [50.0, 50.0], [5.0, 0.0], [0.0, 5.0], [-50.0, 50.0], [50.0, -50.0]])
    q.set_codebook(codebook)
    vectors = torch.tensor([[0.1, 0.0], [4.9, 0.2], [0.0, 5.1], [0.2, 0.1], [5.2, 0.0]])  # codes 0, 2, 3 only
    q.train()
    q(vectors.T[None])
    assert q.apply_statistics() == {"restarted": 3}
    changed = (q.codebook.detach() != codebook).any(1)
    assert changed.tolist() == [False, True, False, False, True, True]
    for row in q.codebook.detach()[changed]:  # re-seeded from encoder outputs of the batch, all distinct
        assert (row == vectors).all(1).any()
    assert len({tuple(r.tolist()) for r in q.codebook.detach()[changed]}) == 3
    # A restarted code starts at twice the threshold: no second restart on the next batch.
    q(vectors.T[None])
    q.apply_statistics()
    usage = q.usage_estimate()
    assert int(q.restarts) == 3 and (usage[[1, 4, 5]] >= 2 * 0.5 * USAGE_DECAY - 1e-6).all()


def test_kmeans_finds_well_separated_centres_and_lowers_distortion():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = (centres[torch.arange(400) % 4] + 0.1 * torch.randn(400, 2, generator=g))
    found = kmeans(x, 4, iterations=20, seed=1)
    d = ((found[:, None] - centres[None]) ** 2).sum(-1)
    assert d.min(1).values.max() < 0.05 and len(set(d.argmin(1).tolist())) == 4
    q = VectorQuantizer(4, 2)
    stats = q.kmeans_init(x, seed=1)
    assert stats["distortion_after"] < 0.05 < stats["distortion_before"]


def test_decode_of_indices_equals_the_quantized_map_in_1d_2d_3d():
    torch.manual_seed(0)
    for image_shape, code_shape in (((1, 16), (4,)), ((1, 8, 8), (2, 2)), ((1, 4, 8, 8), (1, 2, 2))):
        shape = DataShape(data_dim=int(np.prod(image_shape)), image_shape=image_shape)
        model = build_model(ModelConfig(kind="vq-vae", body="conv", hidden_dims=(8, 8), codebook_size=16, code_dim=4,
                                        residual_blocks=1), shape).eval()
        x = torch.rand(3, shape.data_dim)
        q = model.quantize(x)
        assert q.indices.shape == (3, *code_shape) and q.z_q.shape == (3, 4, *code_shape)
        torch.testing.assert_close(model.quantizer.lookup(q.indices), q.z_q, atol=0, rtol=0)
        torch.testing.assert_close(model.decode_codes(q.indices).mean, model.reconstruct(x), atol=0, rtol=0)
        torch.testing.assert_close(model.decode(model.embed(x)).mean, model.reconstruct(x), atol=0, rtol=0)
    with pytest.raises(AekitError, match="conv3d"):
        build_model(ModelConfig(kind="vq-vae", body="conv2d"), DataShape(data_dim=4 * 64, image_shape=(1, 4, 8, 8)))


def test_resume_with_ema_restarts_and_kmeans_equals_an_uninterrupted_run(tmp_path):
    settings = dict(VQ_TINY, codebook_update="ema", codebook_init="kmeans", restart_threshold=16.0,
                    binarize="dynamic", likelihood="bernoulli")
    aekit.train("vq-vae", "digits", out=tmp_path / "whole", epochs=4, **settings)
    aekit.train("vq-vae", "digits", out=tmp_path / "split", epochs=2, **settings)
    aekit.resume(tmp_path / "split", epochs=4)
    from safetensors.torch import load_file

    wa, wb = load_file(str(tmp_path / "whole" / runs.LAST)), load_file(str(tmp_path / "split" / runs.LAST))
    assert {"quantizer.ema_count", "quantizer.ema_sum", "quantizer.usage", "quantizer.updates"} <= set(wa)
    assert int(wa["quantizer.updates"]) == 4 * 21 and int(wa["quantizer.restarts"]) > 0  # restarts did happen
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=0, rtol=0, msg=k)
    h1, h2 = runs.read_metrics(tmp_path / "whole"), runs.read_metrics(tmp_path / "split")
    assert [h["val/loss"] for h in h1] == [h["val/loss"] for h in h2]


def test_training_beats_the_untrained_model_and_usage_does_not_depend_on_the_batch(tmp_path):
    model = aekit.train("vq-vae", "digits", out=tmp_path / "r", epochs=6, **VQ_TINY)
    untrained = build_model(model.config.model, model.config.shape).eval()
    from aekit.trainer import prepare_data

    test = prepare_data(model.config).test
    err = lambda m: float(((m.reconstruct(test.x) - test.x) ** 2).sum(1).mean())  # noqa: E731
    mean_image = float(((test.x - test.x.mean(0)) ** 2).sum(1).mean())
    with torch.no_grad():
        assert err(model) < 0.6 * mean_image < err(untrained)
    a, b = codebook_usage(model, test, batch_size=16), codebook_usage(model, test, batch_size=256)
    brute = torch.bincount(model.codes(test.x).flatten(), minlength=32)
    assert a["codes_used"] == b["codes_used"] == int((brute > 0).sum())
    assert a["usage_perplexity"] == pytest.approx(float(perplexity(brute.double())))
    assert a["usage_perplexity"] == b["usage_perplexity"] and a["batch_perplexity"] < b["batch_perplexity"]
    assert torch.equal(code_counts(model, test.x), brute.double())


def test_vqvae_on_sequences_and_clips(tmp_path):
    for data, shape, code_shape in (("waveforms", (1, 64), (16,)), ("moving-digits", (1, 8, 28, 28), (2, 7, 7))):
        model = aekit.train("vq-vae", data, out=tmp_path / data, steps=3, hidden_dims=(8, 8), codebook_size=16,
                            code_dim=4, residual_blocks=0, batch_size=32, likelihood="gaussian", sigma=0.1,
                            figures="end", progress=False)
        assert model.config.shape.image_shape == shape and model.code_shape == code_shape
        assert (tmp_path / data / "reconstructions.png").exists() and (tmp_path / data / "code_map.png").exists()


def test_vqvae_on_vectors_takes_the_mlp_body():
    model = build_model(ModelConfig(kind="vq-vae", body="mlp", hidden_dims=(16,), latent_dim=3, codebook_size=8,
                                    code_dim=2), DataShape(data_dim=5))
    assert model.codes(torch.randn(4, 5)).shape == (4, 3)


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--codebook-size", "1"], "--codebook-size must be >= 2"),
    (["--code-dim", "0"], "--code-dim must be >= 1"),
    (["--body", "mlp"], "needs a conv body"),
    (["--body", "conv3d"], "--body conv3d is a 3-D body but the data are images"),
    (["--latent-dim", "3"], "--latent-dim does not apply to vq-vae"),
    (["--ema-decay", "0.9", "--codebook-update", "loss"], "--ema-decay acts only with --codebook-update ema"),
    (["--hidden-dims", "16,16,16,16"], "divisible by 16"),
])
def test_bad_vqvae_settings_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, flags, message):
    out = tmp_path / "r"
    code, err = _cli(capsys, "train", "vq-vae", "--data", "digits", "--out", out, "--epochs", "1", *flags)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def _quantizer_steps(batches, rank=0, world=1) -> dict:
    """A few training updates of an EMA quantizer with restarts; rank r of W sees its contiguous batch slice."""
    torch.manual_seed(0)
    q = VectorQuantizer(16, 4, update="ema", restart_threshold=20.0).train()
    for z in batches:  # (B, D, S)
        b = z.shape[0]
        q(z[rank * b // world:(rank + 1) * b // world])
        q.apply_statistics()
    return {k: v.clone() for k, v in q.state_dict().items()}


def _ddp_worker(rank, world, port, batches, out):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    state = _quantizer_steps(batches, rank, world)
    if rank == 0:
        torch.save(state, out)
    dist.destroy_process_group()


def test_distributed_updates_equal_one_process(tmp_path):
    """Two gloo processes: counts and sums all-reduced, restarts drawn from the gathered global batch —
    the same codebook, EMA state and usage as one process on the whole batches."""
    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(6, 4, 5, generator=g) * (1 + i) for i in range(4)]
    single = _quantizer_steps(batches)
    assert int(single["restarts"]) > 0
    mp.spawn(_ddp_worker, args=(2, 29000 + os.getpid() % 1000, batches, tmp_path / "two.pt"), nprocs=2)
    double = torch.load(tmp_path / "two.pt", weights_only=True)
    for k in single:
        torch.testing.assert_close(double[k], single[k], atol=1e-5, rtol=1e-5, msg=k)


def test_quantizer_computes_in_float32_under_bfloat16_autocast():
    torch.manual_seed(0)
    q = VectorQuantizer(64, 8)
    z = torch.randn(4, 8, 5, 5).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z)
    assert out.z_q.dtype == torch.float32 and out.commitment.dtype == torch.float32
    assert torch.equal(out.indices, _brute_force(z.float().movedim(1, -1).reshape(-1, 8), q.codebook.detach())
                       .reshape(4, 5, 5))
