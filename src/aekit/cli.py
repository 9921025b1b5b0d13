"""The ``aekit`` command: train | evaluate | sample | reconstruct | interpolate | encode | plot | list |
score | detect | impute | export.

User mistakes end with one line on stderr (``aekit: error: ...``) and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import AekitError

EPILOG = "Run `aekit list` for the models, data sets, likelihoods and priors."


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the fix, like every other aekit error.

    Abbreviations are off: ``--latent`` must not silently mean ``--latent-dim`` (and new flags would
    change what an abbreviation means).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise AekitError(f"{message} (see {self.prog} --help)")


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 400,200, got '{text}'") from None


def _add_data_args(p, with_name: bool = True):
    if with_name:
        p.add_argument("--data", default=None, help="data set name or a .npy/.npz/.csv file (default: digits)")
    p.add_argument("--data-dir", default=None, help="folder holding the raw files, e.g. ../shared/data/mnist "
                                                   "(default: $AEKIT_DATA_DIR, else a user cache folder)")


def _setting_flags():
    """(section, field, flag, type, help) for every configurable setting, read off the config dataclasses.

    The comment beside each dataclass field is its help text, so a new setting is a new field —
    the command line follows by itself.
    """
    import dataclasses
    import inspect
    import re

    from .config import DataConfig, ModelConfig, TrainConfig

    renamed = {("data", "name"): None, ("data", "data_dir"): None, ("data", "seed"): "--data-seed",
               ("model", "kind"): None}
    for section, cls in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig)):
        comments = dict(re.findall(r"^\s+(\w+): [^#\n]*#\s*(.*)$", inspect.getsource(cls), re.M))
        for f in dataclasses.fields(cls):
            flag = renamed.get((section, f.name), "--" + f.name.replace("_", "-"))
            if flag is None:
                continue
            yield section, f.name, flag, str(f.type), comments.get(f.name, "")


def _flag_type(type_name: str):
    if type_name.startswith("tuple[int"):
        return _ints
    if type_name.startswith("tuple[float"):
        return lambda text: tuple(float(v) for v in text.split(","))
    for name, conv in (("int", int), ("float", float)):
        if type_name.startswith(name):
            return conv
    return str


def _kind_settings(kind: str | None):
    """(model defaults, train defaults, the settings the kind can use) for ``kind``; all settings when None."""
    from .config import DataConfig, ModelConfig, TrainConfig

    if kind is None:
        return ModelConfig(), TrainConfig(), None
    from .models import get_spec
    from .models.registry import possible_settings

    spec = get_spec(kind)
    model_defaults, train_defaults = spec.effective_defaults()
    return model_defaults, train_defaults, possible_settings(spec)


def _add_setting_flags(parser, kind: str | None = None) -> None:
    """One flag per setting. With a ``kind``, --help shows that model's defaults and hides the settings it
    does not use (they are still parsed, and refused with a clear line if given)."""
    from .config import DataConfig

    model_defaults, train_defaults, usable = _kind_settings(kind)
    title = (f"settings of {kind} (its defaults in brackets; see also --config)" if kind else
             "settings (defaults in brackets; `aekit train MODEL --help` shows one model's own; see also --config)")
    group = parser.add_argument_group(title)
    defaults = {"model": model_defaults, "data": DataConfig(), "train": train_defaults}
    for section, name, flag, type_name, help_text in _setting_flags():
        default = getattr(defaults[section], name)
        dest = "data_seed" if flag == "--data-seed" else name
        hidden = usable is not None and section != "data" and name not in usable
        text = argparse.SUPPRESS if hidden else f"{help_text} [{_show(default)}]".replace("%", "%%")
        if type_name == "bool":
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(flag, dest=dest, type=_flag_type(type_name), default=None, metavar=name.upper(),
                               help=text)


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _given_settings(a) -> dict:
    """The settings the user gave on the command line (flags left at None were not given)."""
    given = {}
    for _, name, flag, _, _ in _setting_flags():
        dest = "data_seed" if flag == "--data-seed" else name
        value = getattr(a, dest, None)
        if value is not None:
            given[dest] = value
    if getattr(a, "data_dir", None) is not None:
        given["data_dir"] = a.data_dir
    return given


def _build_parser(kind: str | None = None) -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="aekit", description="The autoencoder family on PyTorch: train, evaluate, sample, plot.",
                     epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"aekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a model into a run folder (or --resume one)",
                       description="Train a model; the run folder gets config, weights, checkpoint, metrics, "
                                   "TensorBoard events and figures.", epilog=EPILOG)
    t.add_argument("model", nargs="?", help="the model to train (see aekit list)")
    t.add_argument("--resume", metavar="RUN", help="continue RUN from its newest checkpoint; --epochs / --steps set a "
                                                   "new total, and other flags that may change (patience, figures, "
                                                   "progress, threads, device, data-dir) apply from there")
    t.add_argument("--config", metavar="FILE", help="JSON file with sections model / data / train; flags override it")
    t.add_argument("--out", metavar="RUN", help="run folder to create, new or empty (default runs/<model>-<data>)")
    t.add_argument("--force", action="store_true", help="write the run into a non-empty folder that is not a run")
    _add_data_args(t)
    _add_setting_flags(t, kind)

    e = sub.add_parser("evaluate", help="figures of a trained run on a split",
                       description="Negative ELBO and its terms, KL per dimension, active units, importance-sampled "
                                   "log p(x), bits/dim and squared error (nats per example).")
    e.add_argument("run")
    e.add_argument("--split", default="test", help="train | val | test (default test)")
    e.add_argument("--iw-samples", type=int, default=1000, help="k for log p(x) (5000 for reported figures; 0 skips)")
    e.add_argument("--batch-size", type=int, default=500, help="examples per evaluation batch")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    e.add_argument("--which", default="best", help="best | last weights")
    _add_data_args(e, with_name=False)
    e.add_argument("--device", default="auto")

    s = sub.add_parser("sample", help="draw samples from the prior and decode them")
    s.add_argument("run")
    s.add_argument("-n", type=int, default=64, help="number of samples")
    s.add_argument("--label", type=int, help="class to generate (cvae)")
    s.add_argument("-o", "--output", default="samples.png", help=".png / .jpg grid, or .npy array")
    s.add_argument("--seed", type=int, default=0)

    r = sub.add_parser("reconstruct", help="test images beside their reconstructions")
    r.add_argument("run")
    r.add_argument("-n", type=int, default=32)
    r.add_argument("-o", "--output", default="reconstructions.png")
    r.add_argument("--split", default="test")
    _add_data_args(r, with_name=False)

    i = sub.add_parser("interpolate", help="decode straight lines in latent space between test images")
    i.add_argument("run")
    i.add_argument("--pairs", type=int, default=8)
    i.add_argument("--steps", type=int, default=10)
    i.add_argument("-o", "--output", default="interpolation.png")
    i.add_argument("--seed", type=int, default=0)
    _add_data_args(i, with_name=False)

    c = sub.add_parser("encode", help="posterior means (codes) of a split to .npy (or .npz with labels)")
    c.add_argument("run")
    c.add_argument("-o", "--output", default="z.npy")
    c.add_argument("--split", default="test")
    c.add_argument("--tensorboard", action="store_true",
                   help="also write the codes, labels and a sprite of the inputs to RUN/tb for TensorBoard's "
                        "embedding projector (tensorboard --logdir runs/)")
    c.add_argument("--limit", type=int, default=10000, help="at most this many rows in the projector (default 10000)")
    _add_data_args(c, with_name=False)

    pl = sub.add_parser("plot", help="training curves of a run (objective, reconstruction and KL apart)")
    pl.add_argument("run")
    pl.add_argument("-o", "--output", default=None, help="default RUN/curves.png")

    v = sub.add_parser("verify", help="check every file of a run folder against its checksums")
    v.add_argument("run")

    sub.add_parser("list", help="models, data sets, likelihoods and priors")
    _add_application_parsers(sub)
    return parser


# ----------------------------------------------------------------------------- commands
def _cmd_train(a) -> None:
    from . import api
    from .config import read_config_file
    from .trainer import distributed_context

    given = _given_settings(a)
    if a.resume:
        if a.model or a.config or a.out:
            raise AekitError("--resume RUN continues a run with its own model and config; drop the MODEL, "
                             "--config and --out arguments")
        if a.data:  # where the run's own data now is (checked against its fingerprint)
            given["name"] = a.data
        model = api.resume(a.resume, **given)
        run_dir = model.run_dir
    else:
        base = read_config_file(a.config) if a.config else {}
        kind = a.model or base.get("model", {}).get("kind")
        if not kind:
            raise AekitError("name a model to train, e.g. aekit train vae --data digits (see aekit list)")
        data = a.data or base.get("data", {}).get("name", "digits")
        model = api.train(kind, data, out=a.out, force=a.force, base=base, **given)
        run_dir = model.run_dir
    if distributed_context()[0] == 0:
        print(f"run: {run_dir}")


def _load_split(model, split: str, data_dir: str | None, device, with_train: bool = False):
    from dataclasses import replace

    from .trainer import prepare_data

    if split not in ("train", "val", "test"):
        raise AekitError(f"unknown split '{split}'; choose one of: train, val, test")
    cfg = model.config
    if data_dir is not None:
        cfg = cfg.replace(data=replace(cfg.data, data_dir=data_dir))
    splits = prepare_data(cfg, device)
    return (getattr(splits, split), splits.train) if with_train else getattr(splits, split)


def _cmd_evaluate(a) -> None:
    from . import api
    from .evaluate import evaluate_model, format_table
    from .trainer import resolve_device

    device = resolve_device(a.device)
    model = api.load(a.run, which=a.which, device=device)
    data, train = _load_split(model, a.split, a.data_dir, device, with_train=True)
    results = {"run": str(a.run), "model": model.config.model.kind, "split": a.split}
    results.update(evaluate_model(model, data, iw_samples=a.iw_samples, batch_size=a.batch_size,
                                  progress=not a.json and sys.stderr.isatty(), reference=train))
    print(json.dumps(results) if a.json else format_table(results, f"{a.run} ({a.split} split, nats per example)"))


def _save_rows(x, image_shape, output: str, nrow: int, labelled=None) -> None:
    """x (N, D) to ``output``: a .npy array, or an image grid (``labelled(path)`` draws a labelled one)."""
    import numpy as np

    from .plots import save_image_grid

    from .plots import image_format
    from .runs import atomic_write

    out = Path(output)
    if out.suffix == ".npy":
        atomic_write(out, lambda f: np.save(f, x.cpu().numpy()))
    elif image_shape is not None:
        image_format(out)
        if labelled is not None:
            labelled(out)
        else:
            save_image_grid(x, image_shape, out, nrow=nrow)
    else:
        raise AekitError("vector data cannot be drawn as an image grid; write -o FILE.npy instead")
    print(f"wrote {out}")


def _cmd_sample(a) -> None:
    import torch

    from . import api

    from .capabilities import SAMPLE, require
    from .plots import save_class_samples

    if a.n < 1:
        raise AekitError(f"-n must be >= 1, got {a.n}")
    model = api.load(a.run)
    require(model, SAMPLE, "aekit sample")
    torch.manual_seed(a.seed)
    labels, labelled, n = None, None, a.n
    num_classes = getattr(model, "num_classes", None)
    shape = model.config.shape.image_shape
    if num_classes:
        if a.label is not None and not 0 <= a.label < num_classes:
            raise AekitError(f"--label must be in 0..{num_classes - 1}, got {a.label}")
        if a.label is not None:
            labels = torch.full((n,), a.label)
        else:  # every class, in whole rows: column k holds class k
            n = -(-n // num_classes) * num_classes
            labels = torch.arange(n) % num_classes
            labelled = lambda out: save_class_samples(x, shape, out, num_classes)  # noqa: E731
    elif a.label is not None:
        raise AekitError("--label needs a conditional model (cvae)")
    x = model.sample(n, labels)
    _save_rows(x, shape, a.output, nrow=8, labelled=labelled)


def _cmd_reconstruct(a) -> None:
    import torch

    from . import api

    model = api.load(a.run)
    data = _load_split(model, a.split, a.data_dir, "cpu")
    x, y = data.x[:a.n], None if data.y is None else data.y[:a.n]
    from .plots import save_reconstructions

    with torch.no_grad():
        recon = model.reconstruct(x, y)
    pairs = torch.stack([x, recon], 1).reshape(-1, x.shape[1])  # (2n, D): input, reconstruction, ...
    _save_rows(pairs, data.image_shape, a.output, nrow=16,
               labelled=lambda out: save_reconstructions(x, recon, data.image_shape, out))


def _cmd_interpolate(a) -> None:
    import torch

    from . import api
    from .plots import interpolate

    model = api.load(a.run)
    data = _load_split(model, "test", a.data_dir, "cpu")
    g = torch.Generator().manual_seed(a.seed)
    idx = torch.randperm(len(data), generator=g)[: 2 * a.pairs]
    if len(idx) < 2 * a.pairs:
        raise AekitError(f"the test split has {len(data)} rows, too few for {a.pairs} pairs")
    ia, ib = idx[: a.pairs], idx[a.pairs:]
    ya = None if data.y is None else data.y[ia]
    yb = None if data.y is None else data.y[ib]
    x = interpolate(model, data.x[ia], data.x[ib], a.steps, ya, yb)
    _save_rows(x, data.image_shape, a.output, nrow=a.steps)  # one interpolation per row


def _cmd_encode(a) -> None:
    import numpy as np
    import torch

    from . import api

    model = api.load(a.run)
    data = _load_split(model, a.split, a.data_dir, "cpu")
    with torch.no_grad():
        z = torch.cat([model.embed(data.x[s:s + 1000], None if data.y is None else data.y[s:s + 1000])
                       for s in range(0, len(data), 1000)]).numpy()
    out = Path(a.output)
    if out.suffix == ".npz":
        np.savez(out, z=z, **({"y": data.y.numpy()} if data.y is not None else {}))
    else:
        np.save(out, z)
    print(f"wrote {out} {z.shape}")
    if a.tensorboard:
        from .features import write_projector

        folder = write_projector(model.run_dir / "tb", z, data, limit=a.limit, tag=f"{model.config.model.kind}-{a.split}")
        print(f"wrote the embedding projector to {folder} (tensorboard --logdir {model.run_dir.parent})")


def _cmd_plot(a) -> None:
    from . import runs
    from .plots import save_curves

    cfg = runs.load_config(a.run)
    history = runs.read_metrics(a.run)
    if not history:
        raise AekitError(f"{a.run} has no metrics yet (metrics.jsonl is empty or missing)")
    from .models import get_spec

    if not get_spec(cfg.model.kind).gradient_trained:
        raise AekitError(f"{cfg.model.kind} is fitted in one go, so it has no training curves; its figures are in "
                         f"aekit evaluate {a.run}")
    out = Path(a.output) if a.output else Path(a.run) / "curves.png"
    save_curves(history, out)
    print(f"wrote {out}")


def _cmd_verify(a) -> None:
    from . import runs

    checked = runs.verify_run(a.run)
    print(f"{a.run}: {len(checked)} files intact ({', '.join(checked[:3])}{', ...' if len(checked) > 3 else ''})")


def _cmd_list(a) -> None:
    from .data import list_datasets
    from .likelihoods import LIKELIHOOD_HELP
    from .models import MODEL_HELP
    from .priors import PRIOR_HELP

    for title, entries in (("models", MODEL_HELP), ("data sets", list_datasets()),
                           ("likelihoods", LIKELIHOOD_HELP), ("priors", PRIOR_HELP)):
        print(f"{title}:")
        width = max(len(k) for k in entries)
        for k, v in entries.items():
            print(f"  {k:<{width}}  {v}")
    print("user data: a path to a .npy, .npz (x, optional y) or .csv file")


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "sample": _cmd_sample, "reconstruct": _cmd_reconstruct,
            "interpolate": _cmd_interpolate, "encode": _cmd_encode, "plot": _cmd_plot, "verify": _cmd_verify, "list": _cmd_list}


def _kind_in(argv: list[str]) -> str | None:
    """The model of ``aekit train MODEL ...`` (so its --help can show that model's settings), if known."""
    if len(argv) >= 2 and argv[0] == "train" and not argv[1].startswith("-"):
        from .models import SPECS

        return argv[1] if argv[1] in SPECS else None
    return None


# ----------------------------------------------------------------------------- applications
def _add_application_parsers(sub) -> None:
    """score | detect | impute | export: the applications of a trained run."""
    from .anomaly import SCORES

    score_help = "; ".join(f"{name}: {spec.help}" for name, spec in SCORES.items())

    def scoring(p, output: str):
        p.add_argument("run")
        p.add_argument("--data", default=None, help="a .npy/.npz/.csv file of rows, or series:FILE.csv for a run "
                                                   "trained on a series (default: the run's own --split)")
        p.add_argument("--labels", default=None, help="0/1 label file for --data (1 = anomalous), if the file has none")
        p.add_argument("--split", default="test", help="train | val | test, without --data (default test)")
        p.add_argument("--samples", type=int, default=10, help="L draws of z for neg-elbo and "
                                                              "reconstruction-probability (default 10)")
        p.add_argument("--iw-samples", type=int, default=1000, help="k importance samples for a VAE's "
                                                                   "log-likelihood (default 1000)")
        p.add_argument("--aggregate", default="mean", help="series: per-step score from the windows covering the "
                                                          "step, mean | max (default mean)")
        p.add_argument("--seed", type=int, default=0, help="seed of the scores' random draws")
        p.add_argument("--contamination", type=float, default=None,
                       help="fit the detection threshold so this share of training scores lies above it; "
                            "saved as RUN/detector.json")
        p.add_argument("--quantile", type=float, default=None, help="fit the threshold at this quantile of the "
                                                                   "training scores instead")
        p.add_argument("-o", "--output", default=output, help=f"CSV of the scores (default {output})")
        p.add_argument("--figure", default=None, help="PNG: the series with its score and labelled region, or "
                                                     "a histogram of row scores by label")
        p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary line")

    sc = sub.add_parser("score", help="anomaly scores of a run's test split or of new data, with AUROC / AUPRC / F1",
                        description="Anomaly scores (higher = more anomalous) to CSV, and the detection metrics when "
                                    "labels are known; --contamination / --quantile also fits and saves the "
                                    "detection threshold. Scores: " + score_help)
    scoring(sc, "scores.csv")
    sc.add_argument("--score", default=None, help="the score (default: the model's first of "
                                                  + ", ".join(SCORES) + ")")

    dt = sub.add_parser("detect", help="flag anomalous rows (or time steps) of new data with the run's saved threshold",
                        description="Scores the data with the score and threshold saved in RUN/detector.json (or "
                                    "fits a new threshold with --contamination / --quantile) and writes each row's "
                                    "score and flag.")
    scoring(dt, "flags.csv")
    dt.add_argument("--score", default=None, help="with --contamination / --quantile: the score to threshold")

    im = sub.add_parser("impute", help="fill the missing entries (NaN) of a file with a trained run",
                        description="Imputes NaN entries: exact conditional (ppca), importance sampling (MIWAE), "
                                    "pseudo-Gibbs or Metropolis-within-Gibbs (VAEs), iterated reconstruction (any).")
    im.add_argument("run")
    im.add_argument("--data", required=True, help=".npy/.npz/.csv file of rows with NaN marking missing entries")
    im.add_argument("-o", "--output", default="filled.npy", help=".npy (or .csv) for the filled rows")
    im.add_argument("--method", default=None, help="exact | importance | gibbs | metropolis | iterate "
                                                   "(default: the first the model supports, in that order)")
    im.add_argument("--samples", type=int, default=1000, help="K importance samples (default 1000)")
    im.add_argument("--iterations", type=int, default=200, help="chain steps, or reconstruction iterations (200)")
    im.add_argument("--burn-in", type=int, default=None, help="chain steps left out of the average (default half)")
    im.add_argument("--seed", type=int, default=0)

    ex = sub.add_parser("export", help="write a run's encoder, decoder and anomaly scorer as ONNX or TorchScript",
                        description="DIR gets encoder, decoder and scorer graphs (dynamic batch) and manifest.json. "
                                    "ONNX needs the optional extra: pip install 'aekit[export]'.")
    ex.add_argument("run")
    ex.add_argument("--format", default="onnx", help="onnx | torchscript (default onnx)")
    ex.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the exported files")
    ex.add_argument("--score", default=None, help="the deterministic score the scorer computes "
                                                  "(default: the model's first exportable one)")
    ex.add_argument("--which", default="best", help="best | last weights")


def _score_settings(a):
    from .anomaly import ScoreSettings
    from .data.timeseries import AGGREGATIONS

    if a.samples < 1 or a.iw_samples < 1:
        raise AekitError(f"--samples and --iw-samples must be >= 1, got {a.samples} and {a.iw_samples}")
    if a.aggregate not in AGGREGATIONS:
        from .errors import unknown_choice
        raise unknown_choice("aggregation", a.aggregate, AGGREGATIONS)
    return ScoreSettings(samples=a.samples, iw_samples=a.iw_samples)


def _report(a, results: dict, line: str) -> None:
    print(json.dumps(results) if a.json else line)


def _score_and_report(a, *, detect: bool) -> None:
    from . import api
    from .anomaly import (RunSplits, fit_run_detector, get_score, load_detector, save_detector, score_target,
                          settings_of, summary, target_metrics, target_scores, threshold_rule, write_scores_csv)

    model = api.load(a.run)
    fit = a.contamination is not None or a.quantile is not None
    if fit:
        threshold_rule(a.contamination, a.quantile)
    settings = _score_settings(a)
    detector = None
    if detect and not fit:
        detector = load_detector(a.run)
        settings = settings_of(detector)
        score_name = detector.score
    else:
        score_name = get_score(model, a.score).name
    progress = not a.json and sys.stderr.isatty()
    splits = RunSplits(model.config)  # read at most once by this command
    target = score_target(model, a.data, split=a.split, labels=a.labels, splits=splits)
    seed = detector.seed if detector is not None else a.seed
    aggregate = detector.aggregate or a.aggregate if detector is not None else a.aggregate
    scores = target_scores(model, target, score=score_name, settings=settings, seed=seed, aggregate=aggregate,
                           progress=progress, splits=splits)
    metrics = target_metrics(target, scores)
    if fit:
        detector = fit_run_detector(model, score=score_name, contamination=a.contamination, quantile=a.quantile,
                                    settings=settings, seed=a.seed, aggregate=a.aggregate, progress=progress,
                                    splits=splits)
    flags = detector.flag(scores) if detect else None
    # Everything is computed: only now are files written.
    write_scores_csv(a.output, target, scores, flags)
    if fit:
        save_detector(a.run, detector)
    if a.figure:
        from .plots import save_score_histogram, save_series_scores

        threshold = detector.threshold if detector is not None else None
        if target.series is not None:
            save_series_scores(target.series, scores, Path(a.figure), threshold=threshold,
                               title=f"{model.config.model.kind}: {score_name} per time step ({target.origin})")
        else:
            save_score_histogram(scores, target.labels, Path(a.figure), threshold=threshold,
                                 title=f"{model.config.model.kind}: {score_name} ({target.origin})")
    results = {"run": str(a.run), "model": model.config.model.kind, "score": score_name, "data": target.origin,
               "per": target.per, "count": len(scores), **metrics, "output": str(a.output)}
    if detector is not None:
        results.update({"threshold": detector.threshold, "threshold_rule": f"{detector.rule} {detector.value:g}"})
    if flags is not None:
        results["flagged"] = int(flags.sum())
    if not metrics and target.note:
        results["note"] = f"no metrics: {target.note}"
    line = f"{score_name} per {target.per} of {target.origin}: " + summary(
        {k: v for k, v in results.items() if k not in ("run", "model", "score", "data", "per")})
    _report(a, results, line)


def _cmd_score(a) -> None:
    _score_and_report(a, detect=False)


def _cmd_detect(a) -> None:
    _score_and_report(a, detect=True)


def _cmd_impute(a) -> None:
    import numpy as np

    from . import api
    from .anomaly import _read_rows
    from .impute import impute

    model = api.load(a.run)
    x, _, origin = _read_rows(a.data, None)
    raw_shape = np.load(a.data, allow_pickle=False).shape if Path(a.data).suffix.lower() == ".npy" else None
    if x.shape[1] != model.config.shape.data_dim:
        raise AekitError(f"{origin} has rows of {x.shape[1]} values but the run was trained on "
                         f"{model.config.shape.data_dim}; give data of the run's shape")
    out = Path(a.output)
    if out.suffix.lower() not in (".npy", ".csv"):
        raise AekitError(f"-o must name a .npy or .csv file, got {out}")
    filled = impute(model, x, method=a.method, samples=a.samples, iterations=a.iterations, burn_in=a.burn_in,
                    seed=a.seed).numpy()
    from .runs import atomic_write, atomic_write_text

    if out.suffix.lower() == ".npy":
        atomic_write(out, lambda f: np.save(f, filled.reshape(raw_shape) if raw_shape else filled))
    else:
        atomic_write_text(out, "\n".join(",".join(repr(float(v)) for v in row) for row in filled) + "\n")
    missing = int(np.isnan(x.numpy()).sum())
    rows = int(np.isnan(x.numpy()).any(1).sum())
    print(f"imputed {missing} missing entries in {rows} of {len(x)} rows of {origin}: wrote {out}")


def _cmd_export(a) -> None:
    from . import api
    from .export import export_run, require_format

    require_format(a.format)
    model = api.load(a.run, which=a.which)
    manifest = export_run(model, a.output, a.format, score=a.score)
    files = ", ".join(manifest["files"].values())
    print(f"wrote {files} and manifest.json to {a.output} (score: {manifest['score']})")


COMMANDS.update({"score": _cmd_score, "detect": _cmd_detect, "impute": _cmd_impute, "export": _cmd_export})


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = _build_parser(_kind_in(argv))
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return 0
        COMMANDS[args.command](args)
        return 0
    except AekitError as e:
        print(f"aekit: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `aekit list | head`
        sys.stderr.close()
        return 0
    except OSError as e:  # a file that could not be written or read, outside the paths that say so themselves
        from .runs import write_error

        print(f"aekit: error: {write_error(Path(e.filename or '?'), e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aekit: interrupted; a training run resumes with aekit train --resume RUN", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
