"""Codes as features: the TensorBoard projector files read back, and the linear probe against a peer."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from aekit.api import build_config
from aekit.cli import main
from aekit.features import linear_probe, read_projector, stratified_subset, trustworthiness
from aekit.run_data import fit_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("features")
    return fit_run(build_config("vae", "digits", hidden_dims=(32,), latent_dim=3, epochs=2, figures="none",
                                progress=False), folder / "vae")


def test_encode_writes_the_embedding_projector(run, tmp_path, capsys):
    from aekit.run_data import prepare_run_data

    assert main(["encode", str(run.run_dir), "--tensorboard", "-o", str(tmp_path / "z.npy"), "--limit", "50"]) == 0
    z = np.load(tmp_path / "z.npy")
    tb = run.run_dir / "tb"
    config = read_projector(tb)
    (entry,) = [e for e in config.embeddings if e.tensor_name == "vae-test"]
    tensors = np.loadtxt(tb / entry.tensor_path, delimiter="\t")
    assert tensors.shape == (50, 3) and np.allclose(tensors, z[:50], atol=1e-5)
    test = prepare_run_data(run.config).test
    labels = np.loadtxt(tb / entry.metadata_path, dtype=int)
    assert np.array_equal(labels, test.y[:50].numpy())
    assert list(entry.sprite.single_image_dim) == [8, 8]
    sprite = plt.imread(tb / entry.sprite.image_path)  # (rows·8, cols·8, C) in [0, 1]
    cols = math.ceil(math.sqrt(50))
    assert sprite.shape[:2] == (math.ceil(50 / cols) * 8, cols * 8)
    for i in (0, 17, 49):  # tile i of the sprite is input i
        r, k = divmod(i, cols)
        tile = sprite[r * 8:(r + 1) * 8, k * 8:(k + 1) * 8, 0]
        assert np.allclose(tile, test.x[i].reshape(8, 8).numpy(), atol=1 / 255 + 1e-6)
    assert any(p.name.startswith("events.out.tfevents") for p in tb.iterdir())
    # a second tag is added beside the first, not over it
    assert main(["encode", str(run.run_dir), "--tensorboard", "--split", "val", "-o", str(tmp_path / "v.npy")]) == 0
    assert {e.tensor_name for e in read_projector(tb).embeddings} == {"vae-test", "vae-val"}
    capsys.readouterr()


def test_linear_probe_matches_scikit_learn_and_uses_the_asked_labels():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    idx = stratified_subset(y[:1000], 100, seed=0)
    assert len(idx) == 100 and set(np.unique(y[:1000][idx])) == set(range(10))
    scaler = StandardScaler().fit(x[:1000][idx])
    peer = LogisticRegression(max_iter=1000).fit(scaler.transform(x[:1000][idx]), y[:1000][idx])
    expected = peer.score(scaler.transform(x[1000:]), y[1000:])
    assert linear_probe(x[:1000], y[:1000], x[1000:], y[1000:], num_labels=100) == pytest.approx(expected)
    assert linear_probe(x[:1000], y[:1000], x[1000:], y[1000:]) > expected  # all labels beat 100


def test_trustworthiness_of_an_isometry_is_one_and_of_noise_is_low():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 2))
    rotated = x @ np.array([[0.6, -0.8], [0.8, 0.6]])
    assert trustworthiness(np.c_[x, np.zeros((300, 3))], rotated) == pytest.approx(1.0)
    assert trustworthiness(x, rng.standard_normal((300, 2))) < 0.7
