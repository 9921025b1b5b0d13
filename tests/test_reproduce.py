"""aekit reproduce: every claim runs end to end at the smoke budget, its verdict rule can say "does not hold", and
bad input is one line with exit status 2 and nothing overwritten."""

import json

import pytest

from aekit.cli import main
from aekit.reproduce import all_claims, get_claim, list_text, run_all, run_claim
from aekit.reproduce.registry import BUDGETS, MNIST, Claim
from aekit.reproduce.runner import DOES_NOT_HOLD, HOLDS, RESULT, missing_requirement, verdict_of
from conftest import mnist_dir

CLAIMS = all_claims()
IDS = [c.id for c in CLAIMS]
RESULT_FIELDS = {"id", "claim", "measurement", "rule", "anchor", "budget", "budget_description", "seed", "verdict",
                 "verdict_meaningful", "measured", "figures", "headline", "wall_seconds", "machine", "command"}
MACHINE_FIELDS = {"cpu", "cores", "torch", "device"}


def _data_dir():
    path = mnist_dir()
    return str(path) if path is not None else None


# ----------------------------------------------------------------------------- every claim, smoke budget
@pytest.mark.parametrize("claim_id", IDS)
def test_every_claim_runs_at_the_smoke_budget_and_writes_its_result(claim_id, tmp_path):
    claim = get_claim(claim_id)
    result = run_claim(claim, "smoke", tmp_path, seed=0, data_dir=_data_dir())
    folder = tmp_path / claim_id
    on_disk = json.loads((folder / RESULT).read_text())
    assert on_disk == result
    assert RESULT_FIELDS <= set(result), RESULT_FIELDS - set(result)
    assert MACHINE_FIELDS <= set(result["machine"])
    assert result["budget"] == "smoke" and result["verdict_meaningful"] is False
    reason = missing_requirement(claim, "smoke", _data_dir())
    if reason is not None:  # e.g. the UCR series or onnx absent on this machine: said so, never a verdict
        assert result["verdict"] == f"not run: {reason}"
        return
    assert result["verdict"] in (HOLDS, DOES_NOT_HOLD), (result["verdict"], (folder / "log.txt").read_text()[-3000:])
    # the verdict is a pure function of the numbers in result.json
    assert result["verdict"] == verdict_of(claim, on_disk["measured"])
    assert result["measured"] and result["headline"] == claim.headline(on_disk["measured"])
    assert result["figures"] and all((folder / f).stat().st_size > 1000 for f in result["figures"])
    assert not (folder / "runs").exists()  # training runs removed unless --keep-runs
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left behind


# ----------------------------------------------------------------------------- verdict rules
@pytest.mark.parametrize("claim_id", IDS)
def test_every_verdict_rule_rejects_numbers_that_contradict_the_claim(claim_id):
    claim = get_claim(claim_id)
    assert claim.contradicting
    for numbers in claim.contradicting:
        assert claim.judge(numbers) is False, numbers
    for numbers in claim.supporting:  # and the rule is not "never": numbers that support the claim pass
        assert claim.judge(numbers) is True, numbers


def test_every_claim_is_described_for_every_budget_and_listed():
    text = list_text()
    for c in CLAIMS:
        assert c.claim and c.measurement and c.rule and set(BUDGETS) <= set(c.budgets)
        assert c.supporting, f"{c.id} has no supporting numbers for the test of its rule"
        assert f"{c.id}  [{c.section}]" in text
    assert len(set(IDS)) == len(IDS)
    for expected in ("linear-ae-pca", "ppca-em", "rbm-pretraining", "ae-not-a-generator", "elbo-gap", "iwae-k",
                     "reparam-vs-sf", "beta-rate-distortion", "posterior-collapse", "ws-shifter", "sf-unbiased"):
        assert expected in IDS


def test_results_are_deterministic_given_seed_and_budget(tmp_path):
    claim = get_claim("linear-ae-pca")
    a = run_claim(claim, "smoke", tmp_path / "a", seed=3)
    b = run_claim(claim, "smoke", tmp_path / "b", seed=3)
    assert a["measured"] == b["measured"]


# ----------------------------------------------------------------------------- requirements
def test_a_claim_needing_mnist_is_not_run_without_the_files(tmp_path, monkeypatch):
    monkeypatch.delenv("AEKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # aekit's cache folder: empty too
    claim = get_claim("ppca-em")
    assert MNIST in claim.requirements("quick")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_claim(claim, "quick", tmp_path / "out", data_dir=str(empty))
    assert result["verdict"] == "not run: MNIST files not found, pass --data-dir"
    assert result["measured"] == {} and result["figures"] == [] and result["verdict_meaningful"] is False


# ----------------------------------------------------------------------------- the CLI and bad input
def test_list_shows_every_claim_with_its_rule_and_anchor(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for c in CLAIMS:
        assert c.id in out
    assert "verdict" in out and "anchor" in out and "Baldi & Hornik" in out


def test_a_claim_from_the_cli_prints_one_summary_line(tmp_path, capsys):
    assert main(["reproduce", "ppca-em", "--budget", "smoke", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ppca-em (smoke") and "not meaningful" in lines[0]
    assert json.loads((tmp_path / "ppca-em" / RESULT).read_text())["id"] == "ppca-em"
    # rerunning the same claim into its own folder replaces its results
    assert main(["reproduce", "ppca-em", "--budget", "smoke", "--out", str(tmp_path)]) == 0


@pytest.mark.parametrize("argv, fragment", [
    (["reproduce", "no-such-claim", "--budget", "smoke"], "unknown claim 'no-such-claim'; choose one of: linear-ae-pca"),
    (["reproduce", "ppca-em", "--budget", "huge"], "unknown budget 'huge'; choose one of: smoke, quick, full"),
    (["reproduce", "--all", "--budget", "huge"], "unknown budget 'huge'"),
    (["reproduce", "--budget", "smoke"], "name a claim to run"),
    (["reproduce", "ppca-em", "--all"], "not both"),
    (["reproduce", "ppca-em", "--report", "r.md"], "--report and --resume go with --all"),
])
def test_bad_input_is_one_line_with_exit_2(argv, fragment, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # nothing written


def test_an_output_folder_holding_another_claims_results_is_refused_unless_forced(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", "ppca-em", "--budget", "smoke", "--out", str(out)]) == 0
    capsys.readouterr()
    (out / "ppca-em-speed").mkdir()
    foreign = out / "ppca-em-speed" / RESULT
    foreign.write_text(json.dumps({"id": "ppca-em"}))  # a copied folder: another claim's results under this id
    before = foreign.read_text()
    assert main(["reproduce", "ppca-em-speed", "--budget", "smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds the results of claim 'ppca-em'" in err and "--force" in err and err.count("\n") == 1
    assert foreign.read_text() == before
    # --out naming one claim's folder (not the folder of claim folders) is refused too
    own = (out / "ppca-em" / RESULT).read_text()
    assert main(["reproduce", "ppca-em-speed", "--budget", "smoke", "--out", str(out / "ppca-em")]) == 2
    assert "holds the results of claim 'ppca-em'" in capsys.readouterr().err
    assert (out / "ppca-em" / RESULT).read_text() == own and not (out / "ppca-em" / "ppca-em-speed").exists()
    # a folder of the user's files under the claim's name
    (out / "ppca-em-speed" / RESULT).unlink()
    (out / "ppca-em-speed" / "notes.txt").write_text("mine")
    assert main(["reproduce", "ppca-em-speed", "--budget", "smoke", "--out", str(out)]) == 2
    assert "not results of claim 'ppca-em-speed'" in capsys.readouterr().err
    assert (out / "ppca-em-speed" / "notes.txt").read_text() == "mine"
    # --force replaces them
    assert main(["reproduce", "ppca-em-speed", "--budget", "smoke", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "ppca-em-speed" / RESULT).read_text())["id"] == "ppca-em-speed"


# ----------------------------------------------------------------------------- --all and REPRODUCTION.md
def _broken_run(budget, out, seed, data_dir=None):
    raise RuntimeError("a bug in the experiment")


BROKEN = Claim(id="broken", claim="c", measurement="m", rule="r", verdict=lambda m: True, headline=lambda m: "",
               run=_broken_run, anchor=None, budgets={b: b for b in BUDGETS}, contradicting=({},))


def test_all_writes_reproduction_md_with_one_row_per_claim_and_records_errors(tmp_path):
    claims = [get_claim("ppca-em"), get_claim("elbo-gap"), BROKEN]
    report = tmp_path / "REPRODUCTION.md"
    lines = []
    results = run_all("smoke", tmp_path / "out", claims=claims, report=report, progress=False, echo=lines.append)
    assert [r["id"] for r in results] == ["ppca-em", "elbo-gap", "broken"]
    assert len(lines) == 3 and lines[2].startswith("broken (smoke")
    assert results[2]["verdict"] == "error: a bug in the experiment"
    assert "RuntimeError" in (tmp_path / "out" / "broken" / "log.txt").read_text()
    text = report.read_text()
    assert "| claim | anchor | our figure | verdict | figure | wall |" in text
    assert "`ppca-em`" in text and "`elbo-gap`" in text and "error: a bug in the experiment" in text
    assert "(out/ppca-em/ppca-em.png)" in text and (tmp_path / "out" / "ppca-em" / "ppca-em.png").is_file()
    assert "Machine:" in text and "aekit reproduce --all --budget smoke" in text
    # --resume keeps finished results of this budget and seed
    before = (tmp_path / "out" / "elbo-gap" / RESULT).read_text()
    again = run_all("smoke", tmp_path / "out", claims=claims[:2], report=report, resume=True, progress=False,
                    echo=lines.append)
    assert (tmp_path / "out" / "elbo-gap" / RESULT).read_text() == before and again[1] == results[1]


# ----------------------------------------------------------------------------- the helpers moved out of the benchmarks
def test_breast_cancer_problem_removes_the_notebooks_entries_without_touching_numpys_global_state():
    import numpy as np

    from aekit.data.incomplete import breast_cancer_problem

    state = np.random.get_state()
    full, missing = breast_cancer_problem()
    assert np.random.get_state()[1].tolist() == state[1].tolist()
    n, p = full.shape
    assert (n, p) == (569, 30) and int(np.isnan(missing).sum()) == n * p // 2
    np.random.seed(1234)  # the notebook's own calls
    expected = np.zeros(n * p, bool)
    expected[np.random.choice(n * p, n * p // 2, replace=False)] = True
    np.random.set_state(state)
    assert np.array_equal(np.isnan(missing).ravel(), expected)
    assert np.allclose(full.mean(0), 0) and np.allclose(full.std(0), 1)


def test_gaussian_conditional_is_the_two_dimensional_closed_form():
    import numpy as np

    from aekit.data.incomplete import gaussian_conditional

    W, mu, s2 = np.array([[2.0], [1.0]]), np.array([0.5, -1.0]), 0.5
    C = W @ W.T + s2 * np.eye(2)  # [[4.5, 2], [2, 1.5]]
    x = np.array([[3.0, np.nan], [np.nan, 0.0], [1.0, 2.0]])
    got = gaussian_conditional(W, mu, s2, x)
    assert got[0, 1] == pytest.approx(mu[1] + C[1, 0] / C[0, 0] * (3.0 - mu[0]))
    assert got[1, 0] == pytest.approx(mu[0] + C[0, 1] / C[1, 1] * (0.0 - mu[1]))
    assert np.array_equal(got[2], x[2])


def test_jpeg_rate_at_interpolates_log_rate_linearly_in_psnr_and_png_is_lossless():
    import math

    import numpy as np

    from aekit.image_codecs import jpeg_rate_at, pillow_rates

    curve = [{"psnr": 10.0, "bits": math.e}, {"psnr": 20.0, "bits": math.e ** 2}]
    assert jpeg_rate_at(15.0, curve, "bits") == pytest.approx(math.e ** 1.5)
    assert jpeg_rate_at(25.0, curve, "bits") is None and jpeg_rate_at(5.0, curve, "bits") is None
    images = (np.random.default_rng(0).random((16, 8, 8)) * 255).astype(np.uint8)
    per_file, tiled, decoded = pillow_rates(images, "PNG", optimize=True)
    assert np.array_equal(decoded, images) and 0 < tiled < per_file  # headers amortized over the tiled file


def test_sample_scores_and_fitted_gaussian():
    import torch

    from aekit.generation import fitted_gaussian, sample_scores

    codes = torch.randn(500, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0, 0.5]) + 3
    g = fitted_gaussian(codes)
    centred = codes.double() - codes.double().mean(0)
    torch.testing.assert_close(g.mean, codes.double().mean(0))
    torch.testing.assert_close(g.covariance_matrix, centred.T @ centred / 500, atol=1e-4, rtol=1e-4)
    train_x = torch.rand(50, 4)
    sure = torch.nn.Linear(4, 3)
    with torch.no_grad():
        sure.weight.zero_()
        sure.bias.copy_(torch.tensor([30.0, 0.0, 0.0]))  # always class 0, with certainty
    s = sample_scores(train_x[:10], sure, train_x)
    assert s["nn_distance"] == pytest.approx(0.0, abs=1e-3) and s["max_prob"] == pytest.approx(1.0)  # cdist rounds
    assert s["entropy"] == pytest.approx(0.0, abs=1e-6) and s["classes"] == [10, 0, 0]
