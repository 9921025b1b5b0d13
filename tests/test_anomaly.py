"""Anomaly scores, their metrics, the detection threshold, the one-class protocol, and the score / detect commands.

The synthetic set: normal points near a 2-D subspace of R^8 (x = Wz + 0.1ε), anomalies pushed off it
by 2 along a direction orthogonal to span(W), i.e. 20 noise standard deviations. Every model that
learns the subspace must rank them above the normal points; binary patterns serve the RBM.
"""

import json

import numpy as np
import pytest
import torch

from aekit.anomaly import (SCORES, ScoreSettings, binary_labels, detection_metrics, fit_detector, get_score,
                           load_detector, save_detector, score_samples, scores_for, subspace_anomaly_problem)
from aekit.api import build_config
from aekit.cli import main
from aekit.errors import AekitError
from aekit.run_data import fit_run

D, Q = 8, 2
FAST = dict(figures="none", progress=False, latent_dim=2)
KINDS = {
    "ae": dict(likelihood="gaussian", hidden_dims=(32,), epochs=8, batch_size=64),
    "dae": dict(likelihood="gaussian", hidden_dims=(32,), epochs=8, batch_size=64),
    "vae": dict(likelihood="gaussian", sigma=0.3, hidden_dims=(32,), epochs=8, batch_size=64),
    "iwae": dict(likelihood="gaussian", sigma=0.3, hidden_dims=(32,), epochs=8, batch_size=64),
    "miwae": dict(likelihood="gaussian", sigma=0.3, hidden_dims=(32,), epochs=8, batch_size=64),
    "deep-ae": dict(likelihood="gaussian", hidden_dims=(32,), epochs=8, batch_size=64),
    "pca": dict(),
    "ppca": dict(),
}


def _binary_set(seed=0):
    """Four 16-bit prototypes with 5% of the bits flipped (normal) against uniform random bits (anomalous)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 2, (4, 16))

    def normal(n):
        rows = prototypes[rng.integers(0, 4, n)]
        return np.abs(rows - (rng.random(rows.shape) < 0.05))

    test = np.r_[normal(300), rng.integers(0, 2, (300, 16))]
    return normal(1500).astype(np.float32), test.astype(np.float32), np.r_[np.zeros(300), np.ones(300)]


@pytest.fixture(scope="module")
def subspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("subspace")
    train, test, labels = subspace_anomaly_problem(0, D, Q)
    np.save(folder / "train.npy", train)
    np.savez(folder / "test.npz", x=test, y=labels)
    return folder, train, test, labels


@pytest.fixture(scope="module")
def runs(subspace):
    folder, *_ = subspace
    return {kind: fit_run(build_config(kind, str(folder / "train.npy"), **FAST, **kw), folder / kind)
            for kind, kw in KINDS.items()}


SETTINGS = ScoreSettings(samples=5, iw_samples=100)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_score_ranks_off_subspace_points_above_normal_ones(kind, runs, subspace):
    _, train, test, labels = subspace
    model = runs[kind]
    names = scores_for(model)
    assert "reconstruction" in names and "squared-error" in names
    rng = np.random.default_rng(1)
    for name in names:
        scores = score_samples(model, torch.from_numpy(test), score=name, settings=SETTINGS)
        assert np.isfinite(scores).all()
        auroc = detection_metrics(scores, labels)["auroc"]
        assert auroc >= 0.95, (kind, name, auroc)
        shuffled = detection_metrics(rng.permutation(scores), labels)["auroc"]
        assert abs(shuffled - 0.5) < 0.08, (kind, name, shuffled)


def test_rbm_free_energy_and_likelihood_rank_random_bits_above_prototypes(tmp_path):
    train, test, labels = _binary_set()
    np.save(tmp_path / "bits.npy", train)
    model = fit_run(build_config("rbm", str(tmp_path / "bits.npy"), latent_dim=16, epochs=20, lr=0.05, batch_size=50,
                                 figures="none", progress=False), tmp_path / "rbm")
    assert scores_for(model)[0] == "free-energy"
    free = score_samples(model, torch.from_numpy(test), score="free-energy")
    assert detection_metrics(free, labels)["auroc"] >= 0.95
    model.ais_temperatures = 500  # log Z only shifts the score; a short AIS keeps the test fast
    nll = score_samples(model, torch.from_numpy(test), score="log-likelihood", reference=torch.from_numpy(train))
    # −log p(v) = F(v) + log Z: the same ranking, shifted by the log-partition estimate
    assert np.allclose(nll - free, (nll - free)[0], atol=1e-3)


def test_scores_a_model_does_not_define_are_named(runs):
    with pytest.raises(AekitError, match="ae defines no log-likelihood score; it defines: reconstruction, squared-error"):
        get_score(runs["ae"], "log-likelihood")
    with pytest.raises(AekitError, match="vae defines no free-energy score; it defines: neg-elbo, log-likelihood"):
        get_score(runs["vae"], "free-energy")
    with pytest.raises(AekitError, match="unknown anomaly score 'surprise'"):
        get_score(runs["vae"], "surprise")
    assert get_score(runs["ppca"], None).name == "log-likelihood"  # exact, PPCA's default
    assert get_score(runs["vae"], None).name == "neg-elbo"


def test_scores_follow_their_formulas(runs, subspace):
    _, _, test, _ = subspace
    x = torch.from_numpy(test[:50])
    ppca = runs["ppca"]
    # exact −log p(x) under N(μ, WWᵀ + σ²I), by a dense computation
    C = (ppca.W @ ppca.W.T + ppca.noise_variance * torch.eye(D)).double()
    d = (x - ppca.mean).double()
    dense = 0.5 * ((d @ torch.linalg.inv(C)) * d).sum(-1) + 0.5 * torch.logdet(C) + 0.5 * D * np.log(2 * np.pi)
    assert np.allclose(score_samples(ppca, x, score="log-likelihood"), dense.numpy(), atol=1e-3)  # float32 model
    # reconstruction under a fixed-σ Gaussian: ‖x − x̂‖² / 2σ² + (D/2) log 2πσ²
    ae = runs["ae"]
    sq = score_samples(ae, x, score="squared-error")
    assert np.allclose(score_samples(ae, x, score="reconstruction"), sq / 2 + 0.5 * D * np.log(2 * np.pi), rtol=1e-5)
    # fixed seed: stochastic scores repeat exactly, and change with the seed
    vae = runs["vae"]
    a = score_samples(vae, x, score="reconstruction-probability", settings=SETTINGS, seed=3)
    assert np.array_equal(a, score_samples(vae, x, score="reconstruction-probability", settings=SETTINGS, seed=3))
    assert not np.array_equal(a, score_samples(vae, x, score="reconstruction-probability", settings=SETTINGS, seed=4))


def test_metrics_against_brute_force():
    rng = np.random.default_rng(0)
    labels = (rng.random(300) < 0.3).astype(int)
    scores = rng.standard_normal(300) + labels
    m = detection_metrics(scores, labels)
    pos, neg = scores[labels == 1], scores[labels == 0]
    assert m["auroc"] == pytest.approx((pos[:, None] > neg[None, :]).mean())  # Mann–Whitney, no ties
    best = 0.0
    for t in np.unique(scores):
        flag = scores >= t
        tp = (flag & (labels == 1)).sum()
        if tp:
            best = max(best, 2 * tp / (flag.sum() + labels.sum()))
    assert m["best_f1"] == pytest.approx(best)
    assert m["num_anomalous"] == labels.sum()
    assert detection_metrics(scores, np.zeros(300))["auroc"] is None  # one class: undefined, not an error


def test_labels_must_be_binary():
    assert binary_labels([0, 1, 1]).tolist() == [0, 1, 1]
    assert binary_labels(np.array([True, False])).tolist() == [1, 0]
    with pytest.raises(AekitError, match="metrics need binary labels.*holds 0, 1, 2"):
        binary_labels([0, 1, 2])


def test_threshold_by_contamination_and_quantile(tmp_path):
    scores = np.arange(1000, dtype=float)
    d = fit_detector(scores, score="reconstruction", contamination=0.05)
    assert d.flag(scores).mean() == pytest.approx(0.05, abs=0.002)
    q = fit_detector(scores, score="reconstruction", quantile=0.9)
    assert q.flag(scores).mean() == pytest.approx(0.1, abs=0.002)
    save_detector(tmp_path, d)
    assert load_detector(tmp_path) == d
    for bad, match in (({"contamination": 0.0}, "--contamination must be in"), ({"quantile": 1.5}, "--quantile"),
                       ({"contamination": 0.1, "quantile": 0.9}, "not both"), ({}, "needs --contamination")):
        with pytest.raises(AekitError, match=match):
            fit_detector(scores, score="reconstruction", **bad)


def test_one_class_protocol_splits():
    from aekit.data import load_data

    full = load_data("digits")
    one = load_data("digits", normal_class=3)
    assert one.train.y.unique().tolist() == [0] and one.val.y.unique().tolist() == [0]
    assert len(one.train) == int((full.train.y == 3).sum()) and len(one.val) == int((full.val.y == 3).sum())
    assert torch.equal(one.train.x, full.train.x[full.train.y == 3])
    assert torch.equal(one.test.x, full.test.x)  # every test row, in order
    assert torch.equal(one.test.y, (full.test.y != 3).long())
    with pytest.raises(AekitError, match="--normal-class must be one of the classes 0..9"):
        load_data("digits", normal_class=12)


def _one_line_error(capsys, *argv, match):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aekit: error:") and match in lines[0], err


def test_score_and_detect_commands(runs, subspace, tmp_path, capsys):
    folder, train, test, labels = subspace
    run = folder / "vae"
    out = tmp_path / "scores.csv"
    assert main(["score", str(run), "--data", str(folder / "test.npz"), "--contamination", "0.02", "-o", str(out),
                 "--samples", "3", "--json", "--figure", str(tmp_path / "hist.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["score"] == "neg-elbo" and result["auroc"] >= 0.95 and result["count"] == len(test)
    rows = np.genfromtxt(out, delimiter=",", names=True)
    assert rows.dtype.names == ("index", "score", "label") and len(rows) == len(test)
    assert (tmp_path / "hist.png").read_bytes()[:4] == b"\x89PNG"
    detector = load_detector(run)
    assert detector.score == "neg-elbo" and detector.rule == "contamination" and detector.samples == 3
    np.save(tmp_path / "new.npy", test)
    assert main(["detect", str(run), "--data", str(tmp_path / "new.npy"), "-o", str(tmp_path / "flags.csv"),
                 "--json"]) == 0
    flagged = json.loads(capsys.readouterr().out)["flagged"]
    flags = np.genfromtxt(tmp_path / "flags.csv", delimiter=",", names=True)
    assert flags["anomalous"].sum() == flagged
    assert np.array_equal(flags["anomalous"] == 1, flags["score"] > detector.threshold)
    assert flags["anomalous"][300:].mean() > 0.5 and flags["anomalous"][:300].mean() < 0.1  # c = 2% of train


def test_score_bad_input_is_one_line_and_writes_nothing(runs, subspace, tmp_path, capsys):
    folder, _, test, labels = subspace
    out = tmp_path / "never.csv"
    ae, vae = folder / "ae", folder / "vae"
    _one_line_error(capsys, "score", ae, "--score", "log-likelihood", "-o", out,
                    match="ae defines no log-likelihood score; it defines: reconstruction, squared-error")
    _one_line_error(capsys, "score", vae, "--score", "free-energy", "-o", out, match="vae defines no free-energy score")
    np.save(tmp_path / "wide.npy", np.zeros((5, D + 1), dtype=np.float32))
    _one_line_error(capsys, "score", ae, "--data", tmp_path / "wide.npy", "-o", out,
                    match=f"rows of {D + 1} values but the run was trained on {D}")
    np.savez(tmp_path / "three.npz", x=test, y=np.arange(len(test)) % 3)
    _one_line_error(capsys, "score", ae, "--data", tmp_path / "three.npz", "-o", out,
                    match="metrics need binary labels, 0 (normal) or 1 (anomalous)")
    nan = test.copy()
    nan[4, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    _one_line_error(capsys, "score", ae, "--data", tmp_path / "nan.npy", "-o", out, match="holds NaN")
    _one_line_error(capsys, "detect", ae, "-o", out, match="has no detection threshold yet")
    _one_line_error(capsys, "score", ae, "--contamination", "2", "-o", out, match="--contamination must be in (0, 1)")
    _one_line_error(capsys, "score", ae, "--data", "series:" + str(tmp_path / "x.csv"), "-o", out,
                    match="was not trained on a series")
    assert not out.exists() and not (folder / "ae" / "detector.json").exists()


def test_extension_point_registers_a_new_score(runs, subspace):
    from aekit.anomaly import AnomalyScore, register_score

    _, _, test, labels = subspace
    register_score(AnomalyScore("code-norm", "‖f(x)‖² (test only)", (), lambda m, x, y, s: m.embed(x).pow(2).sum(-1)))
    try:
        assert "code-norm" in scores_for(runs["ae"])
        assert score_samples(runs["ae"], torch.from_numpy(test), score="code-norm").shape == (len(test),)
    finally:
        SCORES.pop("code-norm")
