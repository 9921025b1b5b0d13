"""The codec: rANS round trips, rates against the ideal code length, the file format, and aekit compress / decompress."""

import json

import numpy as np
import pytest
import torch

from aekit.cli import main
from aekit.codec import (HEADER_BYTES, TOTAL, CodeIndices, FactorizedModel, decode_symbols, encode_symbols,
                         quantize_frequencies, rans_decode, rans_encode)


def _symbols(n=3000, scales=(0.5, 2.0, 6.0, 1.0), seed=0):
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0, scales, size=(n, len(scales)))).astype(np.int64)


def test_frequencies_are_positive_and_sum_to_the_total():
    for probs in (np.array([1.0]), np.array([0.999999, 1e-6]), np.random.default_rng(0).dirichlet(np.ones(300))):
        f = quantize_frequencies(probs)
        assert f.sum() == TOTAL and f.min() >= 1


@pytest.mark.parametrize("count, lanes", [(1, 1), (7, 3), (1000, 1), (1000, 8), (4096, 256)])
def test_rans_round_trips_any_symbol_sequence(count, lanes):
    rng = np.random.default_rng(count)
    freqs = quantize_frequencies(rng.dirichlet(np.full(40, 0.3)))  # skewed: some symbols have frequency 1
    starts = np.cumsum(freqs) - freqs
    symbols = rng.choice(40, count, p=freqs / TOTAL)
    states, words = rans_encode(starts[symbols], freqs[symbols], lanes)

    def lookup(positions, slots):
        s = np.searchsorted(starts, slots.astype(np.int64), side="right") - 1
        return s, starts[s], freqs[s]

    assert np.array_equal(rans_decode(states, words, count, lookup), symbols)
    ideal = -np.log2(freqs[symbols] / TOTAL).sum()
    actual = 16 * len(words) + 32 * lanes
    assert actual <= ideal + 32 * lanes + 16 * lanes + 1e-9  # at most the final states and a word per lane more
    if count >= 1000:
        assert actual >= ideal - 32 * lanes  # no coder beats the model's code length by more than the flushed state


def test_rans_detects_a_damaged_stream():
    freqs = np.full(4, TOTAL // 4)
    starts = np.cumsum(freqs) - freqs
    symbols = np.random.default_rng(0).integers(0, 4, 500)
    states, words = rans_encode(starts[symbols], freqs[symbols], 2)

    def lookup(positions, slots):
        s = (slots.astype(np.int64) // (TOTAL // 4))
        return s, starts[s], freqs[s]
    with pytest.raises(ValueError):
        rans_decode(states, words[:-3], 500, lookup)


def test_factorized_model_round_trips_codes_with_escapes_exactly():
    train, test = _symbols(seed=0), _symbols(800, seed=1)
    test[0, 0], test[5, 2], test[7, 3] = 10 ** 9, -(10 ** 12), 57  # far outside the training range
    model = FactorizedModel.fit(train)
    states, words, escapes = encode_symbols(test, model)
    assert np.array_equal(decode_symbols(states, words, escapes, test.shape, model), test)
    # on data from the training distribution the rate is the model's cross-entropy, within the lanes' states
    clean = _symbols(20000, seed=2)
    states, words, escapes = encode_symbols(clean, model)
    actual = 32 * len(states) + 16 * len(words) + 8 * len(escapes)
    ideal = model.ideal_bits(clean)
    assert ideal <= actual <= 1.005 * ideal + 32 * len(states)
    # and the model's cross-entropy is close to the true entropy of the rounded Gaussians
    from scipy.stats import norm

    entropy = 0.0
    for s in (0.5, 2.0, 6.0, 1.0):
        k = np.arange(-60, 61)
        p = norm.cdf(k + 0.5, scale=s) - norm.cdf(k - 0.5, scale=s)
        p = p[p > 0]
        entropy += -(p * np.log2(p)).sum()
    assert ideal / len(clean) == pytest.approx(entropy, rel=0.01)


def _train_run(tmp_path, name, kind="ae", epochs=2, seed=0):
    flags = ["--data", "digits", "--epochs", str(epochs), "--hidden-dims", "32", "--latent-dim", "6", "--no-progress",
             "--figures", "none", "--seed", str(seed)]
    assert main(["train", kind, "--out", str(tmp_path / name), *flags]) == 0
    return tmp_path / name


def test_compress_decompress_round_trips_codes_and_the_file_size_is_the_reported_rate(tmp_path, capsys):
    import aekit
    from aekit.codec import UniformQuantizer

    run = _train_run(tmp_path, "ae")
    capsys.readouterr()
    assert main(["compress", str(run), "--step", "0.25", "-o", str(tmp_path / "c.bin"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    size = (tmp_path / "c.bin").stat().st_size
    assert 8 * size == report["header_bits"] + report["payload_bits"] and report["header_bits"] == 8 * HEADER_BYTES
    assert report["bits_per_image"] == pytest.approx(8 * size / report["images"])
    assert report["payload_bits"] == report["state_bits"] + report["word_bits"] + report["escape_bits"]
    assert report["ideal_payload_bits"] <= report["payload_bits"] <= 1.01 * report["ideal_payload_bits"] + report["state_bits"]
    assert (run / "codec" / "uniform-step0.25.npz").is_file()  # the entropy model, fitted on the training split

    assert main(["decompress", str(run), str(tmp_path / "c.bin"), "-o", str(tmp_path / "d.npy"),
                 "--symbols", str(tmp_path / "s.npy")]) == 0
    model = aekit.load(run)
    from aekit.trainer import prepare_data

    test = prepare_data(model.config).test
    quantizer = UniformQuantizer(0.25)
    expected = quantizer.symbols(model, test.x)
    assert np.array_equal(np.load(tmp_path / "s.npy"), expected)  # bit-exact codes
    decoded = np.load(tmp_path / "d.npy")
    assert decoded.shape == (len(test), 1, 8, 8)
    np.testing.assert_allclose(decoded.reshape(len(test), -1), quantizer.decode(model, expected).numpy())
    psnr = report["psnr"]
    from aekit.image_metrics import psnr as psnr_fn

    assert psnr == pytest.approx(float(psnr_fn(torch.from_numpy(decoded).reshape(len(test), -1), test.x, (1, 8, 8)).mean()),
                                 rel=1e-5)
    # a finer step costs more bits and gives better images
    capsys.readouterr()
    assert main(["compress", str(run), "--step", "0.05", "-o", str(tmp_path / "fine.bin"), "--json"]) == 0
    fine = json.loads(capsys.readouterr().out)
    assert fine["bits_per_image"] > report["bits_per_image"] and fine["squared_error"] < report["squared_error"]


def test_decompressing_with_another_run_or_a_damaged_file_is_one_line(tmp_path, capsys):
    run = _train_run(tmp_path, "a", epochs=1)
    other = _train_run(tmp_path, "b", epochs=1, seed=1)
    assert main(["compress", str(run), "--step", "0.5", "-o", str(tmp_path / "c.bin"), "-n", "20"]) == 0
    capsys.readouterr()

    def one_line(argv, match):
        code = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and match in err, err

    one_line(["decompress", other, tmp_path / "c.bin", "-o", tmp_path / "x.png"], "was made by another run")
    data = (tmp_path / "c.bin").read_bytes()
    (tmp_path / "short.bin").write_bytes(data[:-2])
    one_line(["decompress", run, tmp_path / "short.bin", "-o", tmp_path / "x.png"], "is truncated")
    (tmp_path / "junk.bin").write_bytes(b"\x89PNG not codes")
    one_line(["decompress", run, tmp_path / "junk.bin", "-o", tmp_path / "x.png"], "is not an aekit code file")
    one_line(["compress", run, "-o", tmp_path / "y.bin"], "give the quantization step")
    one_line(["compress", run, "--step", "0", "-o", tmp_path / "y.bin"], "--step must be a finite quantization step > 0")
    (run / "codec" / "uniform-step0.5.npz").unlink()  # the entropy model the file was made with is gone
    one_line(["decompress", run, tmp_path / "c.bin", "-o", tmp_path / "x.png"], "has no entropy model")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.bin").exists()


class _Indices(torch.nn.Module):
    """A stand-in for a vector-quantized model's code face: codes(x) → indices, decode_codes(indices) → x̂."""

    capabilities = frozenset({"codes"})
    num_codes = 8

    def codes(self, x):
        return (x * 7.999).floor().long().reshape(len(x), 2, -1)  # (N, 2, D/2) indices in 0..7

    def decode_codes(self, codes):
        return codes.reshape(len(codes), -1).float() / 8 + 1 / 16


def test_discrete_codes_are_coded_as_they_are():
    from aekit.codec import quantizer_for

    model = _Indices()
    quantizer = quantizer_for(model, None)
    assert isinstance(quantizer, CodeIndices)
    x = torch.rand(200, 6, generator=torch.Generator().manual_seed(0))
    symbols = quantizer.symbols(model, x)
    entropy = FactorizedModel.fit(symbols, quantizer.alphabet(model))
    assert list(entropy.sizes) == [8] * 6  # the whole alphabet 0..7, whatever the training codes used
    states, words, escapes = encode_symbols(symbols, entropy)
    assert escapes == b"" and np.array_equal(decode_symbols(states, words, escapes, symbols.shape, entropy), symbols)
    assert torch.allclose(quantizer.decode(model, symbols), (x * 8).floor() / 8 + 1 / 16)
