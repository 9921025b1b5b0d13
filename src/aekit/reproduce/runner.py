"""Running claims: one folder per claim with ``result.json``, its figures and a log; REPRODUCTION.md.

Layout under the output folder ``OUT`` (default ``reproduce/``)::

    OUT/<id>/result.json     measured numbers, verdict, anchor, budget, seed, wall time, machine
    OUT/<id>/*.png           the claim's figures
    OUT/<id>/log.txt         what the experiment printed (training lines, warnings, a traceback)
    OUT/<id>/runs/           the training runs (removed at the end unless keep_runs)

A claim runs in a temporary folder beside its final one and replaces it only when it has finished,
so a failed or interrupted run leaves the previous results as they were. ``OUT`` must not itself be
a claim's folder, and ``OUT/<id>`` must be new, or hold results of the same claim (they are
replaced), unless ``force``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from ..errors import AekitError
from .registry import BUDGET_HELP, MNIST, ONNX, SECTIONS, UCR, Claim, Measurement, all_claims, check_budget

RESULT = "result.json"
LOG = "log.txt"
RUNS = "runs"
DEFAULT_OUT = "reproduce"
HOLDS, DOES_NOT_HOLD = "holds", "does not hold"
UCR_FILES = ("135_UCR_Anomaly_InternalBleeding16_TRAIN.csv", "135_UCR_Anomaly_InternalBleeding16_TEST.csv")


# ----------------------------------------------------------------------------- the machine
def machine() -> dict:
    """CPU model, cores, torch version and the device experiments run on."""
    import torch

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    from .. import __version__

    return {"cpu": cpu or "unknown", "cores": os.cpu_count(), "torch": torch.__version__, "device": device,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform(), "aekit": __version__}


# ----------------------------------------------------------------------------- requirements
def mnist_folder(data_dir: str | Path | None) -> Path | None:
    """The folder holding the MNIST IDX files: ``data_dir``, else $AEKIT_DATA_DIR, else aekit's cache folder (each
    also as .../mnist). Claims never download: without the files they are not run."""
    from ..data.sources import data_root

    for root in (data_dir, os.environ.get("AEKIT_DATA_DIR"), data_root(None)):
        if not root:
            continue
        for folder in (Path(root).expanduser(), Path(root).expanduser() / "mnist"):
            if all(any((folder / f"{name}{gz}").is_file() for gz in (".gz", ""))
                   for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
                return folder
    return None


def ucr_folder(data_dir: str | Path | None) -> Path | None:
    """The folder holding UCR series 135 (train and test CSV): beside MNIST's, or under $AEKIT_DATA_DIR."""
    candidates = []
    for root in (data_dir, os.environ.get("AEKIT_DATA_DIR")):
        if root:
            root = Path(root).expanduser()
            candidates += [root / "timeseries", root.parent / "timeseries", root]
    for folder in candidates:
        if all((folder / name).is_file() for name in UCR_FILES):
            return folder
    return None


def missing_requirement(claim: Claim, budget: str, data_dir: str | None) -> str | None:
    """Why the claim cannot run at this budget on this machine, or None."""
    for need in claim.requirements(budget):
        if need == MNIST and mnist_folder(data_dir) is None:
            return "MNIST files not found, pass --data-dir"
        if need == UCR and ucr_folder(data_dir) is None:
            return "UCR series 135 files not found, pass --data-dir (a folder beside timeseries/)"
        if need == ONNX:
            import importlib.util

            if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
                return "onnx / onnxruntime not installed (pip install 'aekit[export]')"
    return None


# ----------------------------------------------------------------------------- output folders
def _read_result(folder: Path) -> dict | None:
    path = folder / RESULT
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {"id": "?"}


def check_out(out: Path, claims: list[Claim], force: bool) -> None:
    """Refuse an output folder that would mix claims' results (one line; nothing is written)."""
    if out.exists() and not out.is_dir():
        raise AekitError(f"--out {out} is a file; give a folder (one subfolder per claim is made in it)")
    own = _read_result(out)
    if own is not None and not force:
        raise AekitError(f"--out {out} holds the results of claim '{own.get('id')}'; give the folder that holds "
                         f"one folder per claim (e.g. {out.parent}), or pass --force")
    for claim in claims:
        folder = out / claim.id
        if not folder.exists() or force:
            continue
        if not folder.is_dir():
            raise AekitError(f"{folder} is a file; remove it or pick another --out (or pass --force)")
        found = _read_result(folder)
        if found is None and any(folder.iterdir()):
            raise AekitError(f"{folder} holds files that are not results of claim '{claim.id}'; pick another --out, "
                             f"or pass --force to replace them")
        if found is not None and found.get("id") != claim.id:
            raise AekitError(f"{folder} holds the results of claim '{found.get('id')}', not '{claim.id}'; pick "
                             f"another --out, or pass --force to replace them")


# ----------------------------------------------------------------------------- one claim
@contextlib.contextmanager
def _captured(log_path: Path):
    """stdout and stderr (what training prints, warnings) into the claim's log."""
    with open(log_path, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield log


@contextlib.contextmanager
def _clean_state(seed: int):
    """Fixed seeds in; torch's default dtype and thread count restored afterwards."""
    import numpy as np
    import torch

    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _jsonable(value):
    """Measured numbers as plain JSON (tensors and numpy scalars converted, NaN/inf as strings)."""
    import math

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def verdict_of(claim: Claim, measured: dict) -> str:
    return HOLDS if claim.judge(measured) else DOES_NOT_HOLD


def run_claim(claim: Claim, budget: str, out: str | Path = DEFAULT_OUT, *, seed: int = 0, data_dir: str | None = None,
              force: bool = False, keep_runs: bool = False, command: str | None = None, checked: bool = False) -> dict:
    """Run ``claim`` at ``budget`` into ``out/<id>``; returns the result (also written as result.json)."""
    check_budget(budget)
    out = Path(out)
    if not checked:
        check_out(out, [claim], force)
    final = out / claim.id
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{claim.id}.", suffix=".partial", dir=out))
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the results are the user's files like any other
    result = {"id": claim.id, "claim": claim.claim, "measurement": claim.measurement, "rule": claim.rule,
              "anchor": claim.anchor, "section": claim.section, "budget": budget,
              "budget_description": claim.budgets[budget], "seed": seed,
              "command": command or f"aekit reproduce {claim.id} --budget {budget} --seed {seed}",
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine()}
    started = time.perf_counter()
    try:
        reason = missing_requirement(claim, budget, data_dir)
        if reason is not None:
            result.update(verdict=f"not run: {reason}", measured={}, figures=[], headline="")
        else:
            (work / RUNS).mkdir()
            folder = mnist_folder(data_dir) if MNIST in claim.requirements(budget) else data_dir
            with _captured(work / LOG), _clean_state(seed):
                try:
                    measurement = claim.run(budget, work, seed, data_dir=str(folder) if folder else None)
                except AekitError as e:
                    traceback.print_exc()
                    measurement = e
                except Exception as e:  # a bug in an experiment: recorded, and the other claims go on
                    traceback.print_exc()
                    measurement = e
            if isinstance(measurement, Exception):
                kind = "not run" if isinstance(measurement, AekitError) else "error"
                text = str(measurement).splitlines()[0] if str(measurement) else type(measurement).__name__
                result.update(verdict=f"{kind}: {text}", measured={}, figures=[], headline="")
            else:
                if not isinstance(measurement, Measurement):
                    raise TypeError(f"claim {claim.id}: run must return a Measurement, got {type(measurement)}")
                measured = _jsonable(measurement.measured)
                missing = [f for f in measurement.figures if not (work / f).is_file()]
                if missing:
                    raise RuntimeError(f"claim {claim.id} names figures it did not write: {missing}")
                result.update(verdict=verdict_of(claim, measured), measured=measured,
                              figures=list(measurement.figures), headline=claim.headline(measured))
        result["verdict_meaningful"] = budget != "smoke" and result["verdict"] in (HOLDS, DOES_NOT_HOLD)
        result["wall_seconds"] = round(time.perf_counter() - started, 2)
        if not keep_runs:
            shutil.rmtree(work / RUNS, ignore_errors=True)
        (work / RESULT).write_text(json.dumps(result, indent=2) + "\n")
        _replace(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _replace(work: Path, final: Path) -> None:
    """Put the finished folder in place of the old one (the old one is removed only now)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
    work.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def summary_line(result: dict, folder: Path | None = None) -> str:
    budget = result["budget"]
    note = " (smoke: not meaningful)" if budget == "smoke" and result["verdict"] in (HOLDS, DOES_NOT_HOLD) else ""
    head = f" — {result['headline']}" if result.get("headline") else ""
    where = f"  [{folder / RESULT}]" if folder is not None else ""
    return f"{result['id']} ({budget}, {result['wall_seconds']:.0f} s): {result['verdict']}{note}{head}{where}"


# ----------------------------------------------------------------------------- every claim
def run_all(budget: str, out: str | Path = DEFAULT_OUT, *, seed: int = 0, data_dir: str | None = None,
            force: bool = False, keep_runs: bool = False, report: str | Path | None = None, resume: bool = False,
            progress: bool = True, claims: list[Claim] | None = None, echo=None) -> list[dict]:
    """Every claim at ``budget``, one progress bar; writes REPRODUCTION.md (``report``, default OUT/REPRODUCTION.md).

    ``resume``: keep the results already in ``out`` for this budget and seed (but not errors), and run the others.
    """
    from tqdm.auto import tqdm

    check_budget(budget)
    out = Path(out)
    claims = claims if claims is not None else all_claims()
    check_out(out, claims, force)
    command = (f"aekit reproduce --all --budget {budget}" + (f" --seed {seed}" if seed else "") + f" --out {out}"
               + (f" --data-dir {data_dir}" if data_dir else ""))
    report = Path(report) if report is not None else out / "REPRODUCTION.md"
    if report != out / "REPRODUCTION.md":
        command += f" --report {report}"
    results = []
    bar = tqdm(claims, desc=f"reproduce ({budget})", unit="claim", disable=not (progress and sys.stderr.isatty()))
    for claim in bar:
        bar.set_postfix_str(claim.id)
        done = _read_result(out / claim.id) if resume else None
        if (done is not None and done.get("budget") == budget and done.get("seed") == seed and "wall_seconds" in done
                and not str(done.get("verdict", "")).startswith("error")):
            result = done
        else:
            result = run_claim(claim, budget, out, seed=seed, data_dir=data_dir, force=True, keep_runs=keep_runs,
                               command=command, checked=True)
        results.append(result)
        (echo or tqdm.write)(summary_line(result, out / claim.id))
    write_report(results, out, report, budget, command)
    return results


# ----------------------------------------------------------------------------- REPRODUCTION.md
def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_report(results: list[dict], out: Path, report: Path, budget: str, command: str) -> Path:
    """REPRODUCTION.md: one table row per claim (claim, anchor, our figure, verdict, figure file)."""
    report.parent.mkdir(parents=True, exist_ok=True)
    machines = {json.dumps(r["machine"], sort_keys=True): r["machine"] for r in results}
    m = next(iter(machines.values())) if machines else machine()
    counts = {}
    for r in results:
        key = r["verdict"] if r["verdict"] in (HOLDS, DOES_NOT_HOLD) else r["verdict"].split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    total = sum(r.get("wall_seconds", 0) for r in results)
    lines = [
        "# Reproduction: the claims of the lineage, measured",
        "",
        f"Generated by `{command}` ({datetime.date.today().isoformat()}). Each row is one claim: what the",
        "literature says, what aekit measured at this budget, and whether the measurement supports it. The",
        "verdict rule of every claim is listed under the table and in `aekit reproduce --list`; \"does not",
        "hold\" means the numbers at this budget do not support the claim — they are shown, not hidden.",
        "",
        f"* Budget: **{budget}** — {BUDGET_HELP[budget]}; each claim's own budget is in its result.json.",
        f"* Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, device {m['device']}, "
        f"{m['torch_threads']} torch thread(s); aekit {m['aekit']}, Python {m['python']}.",
        "* Verdicts: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + f"; total wall time "
        f"{total / 60:.1f} min.",
        "",
    ]
    if len(machines) > 1:
        lines += ["* Note: the results come from more than one machine (see each result.json).", ""]
    names = {"classical": "The classical line", "vae": "The variational autoencoder family",
             "discrete": "Discrete latents and the Helmholtz machine", "vqvae": "VQ-VAE",
             "applications": "Applications"}
    by_section: dict[str, list[dict]] = {}
    for r in results:
        by_section.setdefault(r.get("section", "applications"), []).append(r)
    order = [s for s in SECTIONS if s in by_section] + [s for s in by_section if s not in SECTIONS]
    for section in order:
        lines += [f"## {names.get(section, section)}", "",
                  "| claim | anchor | our figure | verdict | figure | wall |", "|---|---|---|---|---|---:|"]
        for r in by_section[section]:
            folder = out / r["id"]
            figs = ", ".join(f"[{f}]({os.path.relpath(folder / f, report.parent)})" for f in r.get("figures", []))
            verdict = r["verdict"]
            shown = f"**{verdict}**" if verdict in (HOLDS, DOES_NOT_HOLD) else verdict
            if r["budget"] == "smoke" and verdict in (HOLDS, DOES_NOT_HOLD):
                shown += " (smoke: not meaningful)"
            lines.append(f"| `{r['id']}`: {_cell(r['claim'])} | {_cell(r.get('anchor') or '—')} | "
                         f"{_cell(r.get('headline') or '—')} | {_cell(shown)} | {figs or '—'} | "
                         f"{r.get('wall_seconds', 0):.0f} s |")
        lines.append("")
    lines += ["## Verdict rules", ""]
    for r in results:
        lines.append(f"* `{r['id']}` — {r['rule']} *Measured:* {r['measurement']} *This budget:* "
                     f"{r['budget_description']}")
    lines.append("")
    report.write_text("\n".join(lines))
    return report
