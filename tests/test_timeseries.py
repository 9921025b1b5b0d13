"""Series windows: reading the CSV format, windows and their layout, the splits and their normalization,
window scores mapped back to time steps, the UCR rule, the synthetic anomalies, and a series run end to end."""

import json

import numpy as np
import pytest
import torch

from aekit.api import build_config
from aekit.cli import main
from aekit.config import DataConfig
from aekit.data import load_data
from aekit.data.timeseries import (ANOMALY_KINDS, Series, aggregate_window_scores, make_windows, read_series,
                                   series_normalization, synthetic_series, ucr_rule, window_labels, window_starts,
                                   write_series)
from aekit.errors import AekitError
from aekit.run_data import fit_run


def test_read_write_round_trip_and_the_shared_file_format(tmp_path):
    s = synthetic_series("level-shift", length=300, start=200, span=20, channels=2)
    write_series(s, tmp_path / "s.csv")
    back = read_series(tmp_path / "s.csv")
    assert back.channels == ("value-0", "value-1") and back.values.shape == (300, 2)
    assert np.allclose(back.values, s.values) and np.array_equal(back.labels, s.labels)
    assert back.anomaly_regions() == [(200, 219)]
    (tmp_path / "dates.csv").write_text("timestamp,value\n2020-01-01 00:00,1.5\n2020-01-01 00:01,2.5\n")
    dated = read_series(tmp_path / "dates.csv")
    assert dated.labels is None and dated.timestamps[1] == "2020-01-01 00:01" and dated.values[:, 0].tolist() == [1.5, 2.5]


def ucr_series_path():
    """The shared UCR series: $AEKIT_TIMESERIES_DIR, else ../shared/data/timeseries beside the clone (or its parent)."""
    import os
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    name = "135_UCR_Anomaly_InternalBleeding16_TEST.csv"
    for folder in (os.environ.get("AEKIT_TIMESERIES_DIR"), repo.parent / "shared" / "data" / "timeseries",
                   repo.parents[1] / "shared" / "data" / "timeseries"):
        if folder and (Path(folder) / name).is_file():
            return Path(folder) / name
    pytest.skip("the shared UCR series is not beside this checkout (set AEKIT_TIMESERIES_DIR)")


def test_the_ucr_series_reads_as_its_readme_says():
    path = ucr_series_path()
    s = read_series(path)
    assert len(s) == 7501 and s.channels == ("value",)
    assert s.anomaly_regions() == [(4187, 4198)]


@pytest.mark.parametrize("text, match", [
    ("1,2\n3,4\n", "needs a header line"),
    ("timestamp,value,is_anomaly\n0,1.0,2\n", "must hold 0 or 1"),
    ("timestamp,value\n0,abc\n", "not a number"),
    ("timestamp,value\n0,nan\n", "NaN or infinite"),
    ("timestamp,value\n0,1,2\n", "has 3 fields"),
    ("timestamp,is_anomaly\n0,0\n", "no value column"),
])
def test_malformed_series_files_are_one_line_errors(tmp_path, text, match):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(AekitError, match=match):
        read_series(tmp_path / "bad.csv")


def test_windows_cover_every_step_in_channel_major_rows():
    assert window_starts(10, 4, 3).tolist() == [0, 3, 6]
    assert window_starts(11, 4, 3).tolist() == [0, 3, 6, 7]  # the last window ends at the last step
    values = np.arange(20.0).reshape(10, 2)  # (T, C)
    x, starts = make_windows(values, 4, 3)
    for row, a in zip(x, starts):
        assert np.array_equal(row[:4], values[a:a + 4, 0]) and np.array_equal(row[4:], values[a:a + 4, 1])
    labels = np.zeros(10, dtype=int)
    labels[6] = 1
    assert window_labels(labels, starts, 4).tolist() == [0, 1, 1]  # windows 3..6 and 6..9
    with pytest.raises(AekitError, match="fewer than one window"):
        window_starts(3, 4, 1)
    with pytest.raises(AekitError, match="--window must be >= 1"):
        DataConfig(window=0)
    with pytest.raises(AekitError, match="--stride must be >= 1"):
        DataConfig(stride=-2)


@pytest.mark.parametrize("how", ["mean", "max"])
@pytest.mark.parametrize("stride", [1, 3])
def test_aggregation_equals_brute_force(how, stride):
    rng = np.random.default_rng(0)
    T, W = 50, 7
    starts = window_starts(T, W, stride)
    scores = rng.standard_normal(len(starts))
    got = aggregate_window_scores(scores, starts, W, T, how)
    for t in range(T):
        covering = [s for s, a in zip(scores, starts) if a <= t < a + W]
        assert got[t] == pytest.approx(np.mean(covering) if how == "mean" else np.max(covering))


def test_a_spike_at_t_is_the_top_step_whatever_the_window():
    # window score = 1 when the window contains the spike (plus tiny noise): the mean over covering windows
    # peaks exactly at the spike, for every window length
    rng = np.random.default_rng(0)
    T, t = 400, 217
    for W in (5, 16, 64):
        starts = window_starts(T, W, 1)
        scores = ((starts <= t) & (t < starts + W)).astype(float) + 1e-3 * rng.standard_normal(len(starts))
        assert int(np.argmax(aggregate_window_scores(scores, starts, W, T))) == t


def test_ucr_rule():
    s = Series(np.zeros((1000, 1)), np.r_[np.zeros(500), np.ones(10), np.zeros(490)].astype(int), [""] * 1000,
               ("value",), "x")
    scores = np.zeros(1000)
    scores[605] = 1
    assert ucr_rule(scores, s)["ucr_hit"] is True  # 605 ≤ 509 + 100
    scores[605], scores[611] = 0, 1
    assert ucr_rule(scores, s)["ucr_hit"] is False


@pytest.mark.parametrize("kind", list(ANOMALY_KINDS))
def test_synthetic_anomalies_change_the_labelled_steps_only(kind):
    clean = synthetic_series("spike", seed=3)
    clean.values[1500] -= 4.0  # undo the spike: the clean series
    s = synthetic_series(kind, seed=3)
    changed = np.flatnonzero(np.abs(s.values[:, 0] - clean.values[:, 0]) > 1e-9)
    assert set(changed) <= set(np.flatnonzero(s.labels)) and len(changed) > 0
    assert s.labels[:1000].sum() == 0


def test_splits_normalize_with_the_training_part_only(tmp_path):
    s = synthetic_series("level-shift")
    write_series(s, tmp_path / "a.csv")
    s.values[1200:] *= 10  # a different test part: the normalization must not move
    write_series(s, tmp_path / "b.csv")
    a = load_data(f"series:{tmp_path / 'a.csv'}", window=32, stride=4, train_steps=1000)
    b = load_data(f"series:{tmp_path / 'b.csv'}", window=32, stride=4, train_steps=1000)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.x, b.val.x)
    norm = series_normalization(read_series(tmp_path / "a.csv"), 1000)
    assert np.allclose(norm.loc, s.values[:1000].mean(0)) and np.allclose(norm.scale, s.values[:1000].std(0))
    # validation windows start after the training ones end: no shared step
    assert len(a.val) == len(window_starts(100, 32, 4)) and len(a.test) == len(window_starts(2000, 32, 4))
    assert a.test.y.sum() > 0 and a.train.y.sum() == 0
    # multivariate: C channels give rows of C·W values, each channel normalized on its own
    write_series(synthetic_series("frequency", channels=3), tmp_path / "c3.csv")
    c3 = load_data(f"series:{tmp_path / 'c3.csv'}", window=16, stride=8, train_steps=1000)
    assert c3.train.x.shape[1] == 3 * 16
    per_channel = c3.train.x.reshape(len(c3.train), 3, 16)
    assert torch.allclose(per_channel.mean((0, 2)), torch.zeros(3), atol=0.05)
    with pytest.raises(AekitError, match="needs --window"):
        load_data(f"series:{tmp_path / 'a.csv'}")
    with pytest.raises(AekitError, match="--window, --stride and --train-steps are for series data"):
        load_data("digits", window=8)
    with pytest.raises(AekitError, match="fewer than one window"):
        load_data(f"series:{tmp_path / 'a.csv'}", window=200, train_steps=1000)


@pytest.fixture(scope="module")
def series_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    write_series(synthetic_series("spike"), folder / "spike.csv")
    write_series(synthetic_series("level-shift", channels=2), folder / "shift2.csv")
    cfg = build_config("ae", f"series:{folder / 'spike.csv'}", window=32, stride=1, train_steps=1000,
                       likelihood="gaussian", hidden_dims=(64,), latent_dim=4, epochs=6, figures="none", progress=False)
    return folder, fit_run(cfg, folder / "run")


def test_an_injected_spike_is_the_top_scoring_step(series_run, tmp_path, capsys):
    folder, model = series_run
    out = tmp_path / "steps.csv"
    assert main(["score", str(folder / "run"), "-o", str(out), "--json", "--figure", str(tmp_path / "s.png"),
                 "--contamination", "0.01"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["per"] == "time step" and r["count"] == 2000
    assert r["top_step"] == 1500 and r["ucr_hit"] is True and r["auroc"] > 0.99
    rows = np.genfromtxt(out, delimiter=",", names=True)
    assert rows.dtype.names == ("timestamp", "score", "is_anomaly") and int(np.argmax(rows["score"])) == 1500
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    # new data: the detector flags the anomalous steps of another series with the training threshold
    write_series(synthetic_series("spike", start=700, seed=5), tmp_path / "other.csv")
    assert main(["detect", str(folder / "run"), "--data", f"series:{tmp_path / 'other.csv'}",
                 "-o", str(tmp_path / "f.csv"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["top_step"] == 700 and r["flagged"] >= 1
    flags = np.genfromtxt(tmp_path / "f.csv", delimiter=",", names=True)
    assert flags["anomalous"][700] == 1


def test_series_bad_input(series_run, tmp_path, capsys):
    folder, _ = series_run
    out = tmp_path / "never.csv"

    def one_line(*argv, match):
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err

    one_line("score", folder / "run", "--data", f"series:{folder / 'shift2.csv'}", "-o", out,
             match="has 2 value column(s) but the run was trained on 1")
    write_series(synthetic_series("spike", length=20, start=5), tmp_path / "short.csv")
    one_line("score", folder / "run", "--data", f"series:{tmp_path / 'short.csv'}", "-o", out,
             match="fewer than one window of 32")
    np.save(tmp_path / "rows.npy", np.zeros((4, 32), dtype=np.float32))
    one_line("score", folder / "run", "--data", tmp_path / "rows.npy", "-o", out, match="give --data series:FILE.csv")
    one_line("score", folder / "run", "--aggregate", "median", "-o", out, match="unknown aggregation 'median'")
    assert not out.exists()
