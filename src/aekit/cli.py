"""The ``aekit`` command: train | evaluate | sample | reconstruct | interpolate | encode | plot | verify |
list | restore | compress | decompress | traverse | disentangle | score | detect | impute | export | reproduce.

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
    t.add_argument("--codes-from", metavar="RUN", help="train prior: the vq-vae run whose code maps it models "
                                                      "(its data and codebook size come from RUN)")
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
    e.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="a Bernoulli decoder's log p(x) with its likelihood kernel compiled by torch.compile (needs a "
                        "C++ compiler; up to half a minute to compile the first time): --compile from the start, "
                        "--no-compile never; by default it compiles once a log p(x) is estimated at over 3 min. k=5000 "
                        "on the MNIST test set took 654 s instead of 840 s on a 2-core CPU (BENCHMARKS.md §1)")
    _add_data_args(e, with_name=False)
    e.add_argument("--device", default="auto")

    s = sub.add_parser("sample", help="draw samples from the prior and decode them")
    s.add_argument("run")
    s.add_argument("-n", type=int, default=64, help="number of samples")
    s.add_argument("--label", type=int, help="class to generate (cvae)")
    s.add_argument("-o", "--output", default="samples.png", help=".png / .jpg grid, or .npy array")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--prior", metavar="PRIOR_RUN", help="vq-vae: draw code maps from this prior run (aekit train "
                                                       "prior --codes-from RUN) and decode them")

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
    _add_restoration_parsers(sub)
    _add_reproduce_parser(sub)
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
        kind = a.model or base.get("model", {}).get("kind") or ("prior" if a.codes_from else None)
        if not kind:
            raise AekitError("name a model to train, e.g. aekit train vae --data digits (see aekit list)")
        data = a.data or base.get("data", {}).get("name", "digits")
        if kind == "prior" or a.codes_from is not None:  # a prior's data (code maps) and codebook come from its run
            from .models.vqvae import prior_cli_settings

            data, given = prior_cli_settings(kind, a.codes_from, a.data, given)
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
                                  progress=not a.json and sys.stderr.isatty(), reference=train, split=a.split,
                                  compile=a.compile))
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

    if a.prior is not None:  # code maps from a prior run, decoded by the vq-vae
        return _sample_with_prior(a)
    from .capabilities import SAMPLE, require
    from .plots import save_class_samples

    if a.n < 1:
        raise AekitError(f"-n must be >= 1, got {a.n}")
    model = api.load(a.run)
    from .capabilities import CODES, has

    if has(model, CODES) and not has(model, SAMPLE):
        raise AekitError(f"{a.run} is a vq-vae and has no prior over its codes of its own; train one with aekit train "
                         f"prior --codes-from {a.run}, then sample with aekit sample {a.run} --prior PRIOR_RUN")
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


def _sample_with_prior(a) -> None:
    """aekit sample VQ_RUN --prior PRIOR_RUN: n code maps from the prior (timed), decoded by the vq-vae."""
    import torch

    from .models.vqvae import load_prior_pair, sample_with_prior

    if a.n < 1:
        raise AekitError(f"-n must be >= 1, got {a.n}")
    vq, prior = load_prior_pair(a.run, a.prior)
    labels = None
    if prior.num_classes:
        if a.label is not None and not 0 <= a.label < prior.num_classes:
            raise AekitError(f"--label must be in 0..{prior.num_classes - 1}, got {a.label}")
        labels = torch.full((a.n,), a.label) if a.label is not None else torch.arange(a.n) % prior.num_classes
    elif a.label is not None:
        raise AekitError(f"--label needs a class-conditional prior; {a.prior} was trained without "
                         f"--class-conditional")
    torch.manual_seed(a.seed)
    result = sample_with_prior(vq, prior, a.n, labels)
    print(f"sampled {a.n} code maps of {'x'.join(map(str, prior.code_shape))} in {result['seconds']:.2f}s "
          f"({result['maps_per_second']:.1f} maps/s)")
    _save_rows(result["x"], vq.config.shape.image_shape, a.output, nrow=8)


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
    print("user data: a path to a .npy, .npz (x, optional y) or .csv file; series:FILE.csv (timestamp,value[,...]"
          "[,is_anomaly]) read as sliding windows with --window W")


# ----------------------------------------------------------------------------- applications II
# restore (image restoration), compress / decompress (the autoencoder as a codec), traverse and
# disentangle (latent traversals, disentanglement metrics on dsprites)
def _add_restoration_parsers(sub) -> None:
    """restore | compress | decompress | traverse | disentangle, and --degrade on train."""
    from .regularizers import CORRUPTION_CHOICES

    # `--degrade` on train is the restoration vocabulary for the one corruption setting, --corruption
    sub.choices["train"].add_argument("--degrade", dest="corruption", default=None, metavar="KIND",
                                      help="alias of --corruption: " + CORRUPTION_CHOICES)

    r = sub.add_parser("restore", help="restore degraded images with a trained model; PSNR / SSIM against clean",
                       description="Apply RUN to degraded inputs. With --degrade (default: the corruption RUN was "
                                   "trained with) clean inputs are degraded first (fixed --seed) and the restoration, "
                                   "the degraded input and the trivial baseline are scored against them; with "
                                   "--degrade none the inputs are taken as degraded already.")
    r.add_argument("run")
    r.add_argument("--data", default=None, help="inputs: a data set (its --split) or a .npy/.npz/.csv file or "
                                                "images:DIR (all rows); default: RUN's data, --split")
    r.add_argument("--split", default="test", help="train | val | test, for a data set (default test)")
    r.add_argument("--degrade", default=None, metavar="KIND", help="degradation applied to the clean inputs: "
                                                                   + CORRUPTION_CHOICES + "; none: inputs are degraded")
    r.add_argument("--level", type=float, default=None, help="its level (default: RUN's --corruption-level)")
    r.add_argument("-n", type=int, default=None, help="restore the first n inputs (default all)")
    r.add_argument("--seed", type=int, default=12345, help="seed of the degradation")
    r.add_argument("-o", "--output", default="restored.png",
                   help=".png rows (degraded / restored / baseline / clean), .npy restored images (N, C, H, W), "
                        ".npz everything with per-image PSNR and SSIM")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_args(r, with_name=False)

    c = sub.add_parser("compress", help="code images with a trained model: quantized codes, entropy-coded (rANS)",
                       description="Quantize RUN's codes (uniform --step for a continuous code; code indices for a "
                                   "model with discrete codes) and entropy-code them with a factorized model fitted "
                                   "on RUN's training split (kept in RUN/codec/). Prints the measured rate (bits per "
                                   "image and per pixel, from the file's size) and the PSNR of the decoded images.")
    c.add_argument("run")
    c.add_argument("--data", default=None, help="inputs: a data set (its --split) or a .npy/.npz/.csv file or "
                                                "images:DIR (all rows); default: RUN's data, --split")
    c.add_argument("--split", default="test")
    c.add_argument("-n", type=int, default=None, help="the first n inputs (default all)")
    c.add_argument("--step", type=float, default=None, help="quantization step Δ of a continuous code: q = round(z/Δ)")
    c.add_argument("-o", "--output", default="codes.bin")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_args(c, with_name=False)

    d = sub.add_parser("decompress", help="decode a file made by aekit compress with the same run",
                       description="Decode CODES (made by aekit compress RUN) into images: .png grid of the first 64, "
                                   ".npy array (N, C, H, W). A file made by another run is refused.")
    d.add_argument("run")
    d.add_argument("codes")
    d.add_argument("-o", "--output", default="decompressed.png")
    d.add_argument("--symbols", default=None, metavar="FILE.npy", help="also write the decoded integer codes (N, J)")

    t = sub.add_parser("traverse", help="latent traversals: each code dimension swept, the others held fixed",
                       description="One row per latent dimension (most informative first: by KL for a VAE): the "
                                   "decoder mean as that dimension of a test image's code is swept, the rest held "
                                   "at the code. VAE: over [-span, span] (the prior's scale); autoencoder: over "
                                   "mean ± span·std of the split's codes.")
    t.add_argument("run")
    t.add_argument("-o", "--output", default="traversals.png")
    t.add_argument("--index", type=int, default=0, help="which image of the split gives the code")
    t.add_argument("--split", default="test")
    t.add_argument("--span", type=float, default=3.0)
    t.add_argument("--steps", type=int, default=10)
    _add_data_args(t, with_name=False)

    g = sub.add_parser("disentangle", help="β-VAE metric, FactorVAE metric and MIG of a run trained on dsprites",
                       description="The three disentanglement metrics of RUN's posterior means on fresh dsprites "
                                   "combinations, with disentanglement_lib's settings (batch 64; 10,000 points to "
                                   "train and 5,000 to evaluate the classifiers; 10,000 for MIG, 20 bins) times "
                                   "--scale.")
    g.add_argument("run")
    g.add_argument("--scale", type=float, default=1.0, help="fraction of disentanglement_lib's numbers of points")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_args(g, with_name=False)


def _application_inputs(model, data: str | None, split: str, data_dir: str | None, n: int | None):
    """The rows a command applies RUN to: (x, y, image_shape); refuses data of another shape than RUN's."""
    from .data.sources import is_user_file, load_user_file, parameterized_source

    if n is not None and n < 1:
        raise AekitError(f"-n must be >= 1, got {n}")
    if data is None:
        d = _load_split(model, split, data_dir, "cpu")
        x, y, image_shape, what = d.x, d.y, d.image_shape, f"{model.config.data.name} ({split} split)"
    elif is_user_file(data) or data.startswith("images:"):
        source = load_user_file(data, None) if is_user_file(data) else parameterized_source(data).load(data_dir, True)
        x, y, image_shape, what = source.x, source.y, source.image_shape, data
    else:
        from .data import load_data

        if split not in ("train", "val", "test"):
            raise AekitError(f"unknown split '{split}'; choose one of: train, val, test")
        d = getattr(load_data(data, data_dir=data_dir, seed=model.config.data.seed), split)
        x, y, image_shape, what = d.x, d.y, d.image_shape, f"{data} ({split} split)"
    shape = model.config.shape
    if x.shape[1] != shape.data_dim or (image_shape is not None and tuple(image_shape) != tuple(shape.image_shape or ())):
        def describe(dim, img):
            return f"{'x'.join(map(str, img))} images" if img else f"{dim}-dimensional rows"
        raise AekitError(f"{model.run_dir} was trained on {describe(shape.data_dim, shape.image_shape)}, but {what} "
                         f"holds {describe(x.shape[1], image_shape)}; give data of the run's shape")
    if n is not None:
        x, y = x[:n], None if y is None else y[:n]
    if not getattr(model, "num_classes", None):
        y = None
    return x, y, shape.image_shape


def _cmd_restore(a) -> None:
    import numpy as np

    from . import api
    from .regularizers import build_corruption
    from .restoration import restore, score, degrade

    model = api.load(a.run)
    cfg = model.config
    out = Path(a.output)
    if out.suffix not in (".png", ".npy", ".npz"):
        raise AekitError(f"-o must end in .png, .npy or .npz, got {out.name}")
    trained = build_corruption(cfg.model.corruption, cfg.model.corruption_level, cfg.shape)
    name = a.degrade if a.degrade is not None else cfg.model.corruption
    if a.degrade is None and trained is None:
        raise AekitError(f"{a.run} was trained without a corruption: name the degradation to apply with --degrade KIND, "
                         f"or --degrade none when the inputs are degraded already")
    level = a.level if a.level is not None else cfg.model.corruption_level
    corruption = build_corruption(name, level, cfg.shape)  # checks the name, level and image shape first
    image_shape = cfg.shape.image_shape
    if image_shape is None:
        raise AekitError(f"{a.run} was trained on vectors, not images; restore works on images")
    x, y, _ = _application_inputs(model, a.data, a.split, a.data_dir, a.n)
    rule = corruption if corruption is not None else trained  # how the model's output joins the input
    if corruption is None:  # the inputs are degraded already: no clean reference, no scores
        restored = restore(model, x, rule, y)
        rows, summary = [("input", x), ("restored", restored)], {"corruption": "none (inputs given degraded)",
                                                                 "images": len(x)}
        arrays = {"degraded": x, "restored": restored}
    else:
        reference = None
        if corruption.name == "grayscale":  # its baseline uses the mean chroma of the training images
            reference = _load_split(model, "train", a.data_dir, "cpu").x
        degraded = degrade(x, corruption, a.seed)
        restored = restore(model, degraded, corruption, y)
        baseline = corruption.baseline(degraded, reference)
        from .restoration import RestorationResult

        psnrs, ssims = score(x, {"restored": restored, "baseline": baseline, "degraded": degraded}, image_shape)
        result = RestorationResult(str(corruption), x, degraded, restored, baseline, psnrs, ssims)
        summary = result.summary()
        rows = [("degraded", degraded), ("restored", restored), ("baseline", baseline), ("clean", x)]
        arrays = {"degraded": degraded, "restored": restored, "baseline": baseline, "clean": x, "changed": result.changed,
                  **{f"psnr_{k}": v for k, v in psnrs.items()}, **({f"ssim_{k}": v for k, v in ssims.items()} if ssims else {})}
    if out.suffix == ".png":
        from .plots import save_image_rows

        save_image_rows([(label, v[:16]) for label, v in rows], image_shape, out)
    elif out.suffix == ".npy":
        np.save(out, arrays["restored"].reshape(-1, *image_shape).numpy())
    else:
        np.savez(out, **{k: (v.reshape(-1, *image_shape) if v.ndim == 2 else v).numpy() for k, v in arrays.items()})
    summary = {"run": str(a.run), **summary, "output": str(out)}
    if a.json:
        print(json.dumps(summary))
        return
    print(f"wrote {out}")
    for metric in ("psnr", "ssim"):
        if metric in summary:
            cells = "  ".join(f"{k} {v:.4f}" for k, v in summary[metric].items())
            gain = summary[f"{metric}_gain_over_baseline"]
            scored = summary["images_scored"]
            print(f"{metric.upper()} (mean of {scored} images{'' if scored == summary['images'] else ' the degradation changed'}"
                  f", {summary['corruption']}): {cells}  (gain over baseline {gain:+.4f})")


def _codec_model(run: str):
    from . import api

    model = api.load(run)
    if getattr(model, "num_classes", None):
        raise AekitError(f"{run} is a conditional model: its decoder needs labels the code file does not hold; "
                         f"compress with an unconditional model")
    return model


def _cmd_compress(a) -> None:
    from . import codec
    from .image_metrics import mean_finite, psnr

    model = _codec_model(a.run)
    quantizer = codec.quantizer_for(model, a.step)
    x, y, image_shape = _application_inputs(model, a.data, a.split, a.data_dir, a.n)
    model_file = Path(a.run) / "codec" / quantizer.model_file()
    fitted_now = not model_file.is_file()
    train = _load_split(model, "train", a.data_dir, "cpu").x if fitted_now else None
    report = codec.compress(model, x, a.output, a.step, train)
    x_hat = codec.decompress(model, a.output)  # what a receiver gets: the file decoded
    report.update({"run": str(a.run), "output": a.output, "step": quantizer.step or None,
                   "entropy_model": f"{'fitted on the training split, saved as' if fitted_now else 'read from'} {model_file}",
                   "bits_per_pixel": 8 * report["file_bytes"] / (len(x) * x.shape[1]),
                   "squared_error": float(((x_hat - x) ** 2).sum(1).mean())})
    if image_shape is not None:
        report["psnr"] = mean_finite(psnr(x_hat, x, image_shape))
    if a.json:
        print(json.dumps(report))
        return
    print(f"wrote {a.output}: {len(x)} images in {report['file_bytes']} bytes = {report['bits_per_image']:.1f} bits "
          f"per image, {report['bits_per_pixel']:.4f} bits per pixel (header {report['header_bits']} bits; "
          f"ideal {report['ideal_payload_bits'] / len(x):.1f} bits per image)"
          + (f"; PSNR {report['psnr']:.2f} dB" if "psnr" in report else f"; squared error {report['squared_error']:.3f}"))


def _cmd_decompress(a) -> None:
    import numpy as np

    from . import codec

    model = _codec_model(a.run)
    if not Path(a.codes).is_file():
        raise AekitError(f"code file {a.codes} does not exist")
    out = Path(a.output)
    if out.suffix not in (".png", ".npy"):
        raise AekitError(f"-o must end in .png or .npy, got {out.name}")
    symbols = codec.decompress(model, a.codes, symbols_only=True)
    x_hat = codec.header_quantizer(codec.read_header(Path(a.codes))).decode(model, symbols)
    image_shape = model.config.shape.image_shape
    if a.symbols:
        np.save(a.symbols, symbols)
    if out.suffix == ".npy":
        np.save(out, (x_hat.reshape(-1, *image_shape) if image_shape else x_hat).numpy())
    else:
        if image_shape is None:
            raise AekitError("vector data cannot be drawn as an image grid; write -o FILE.npy instead")
        from .plots import save_image_grid

        save_image_grid(x_hat[:64], image_shape, out, nrow=8)
    print(f"wrote {out} ({len(x_hat)} images)" + (f" and {a.symbols}" if a.symbols else ""))


def _cmd_traverse(a) -> None:
    import torch

    with torch.no_grad():
        _traverse(a)


def _traverse(a) -> None:
    import torch

    from . import api
    from .capabilities import POSTERIOR, has
    from .plots import latent_traversal, save_traversals

    model = api.load(a.run)
    if a.steps < 2:
        raise AekitError(f"--steps must be >= 2, got {a.steps}")
    data = _load_split(model, a.split, a.data_dir, "cpu")
    if data.image_shape is None:
        raise AekitError("traversals are drawn as images; this run was trained on vectors")
    if not 0 <= a.index < len(data):
        raise AekitError(f"--index must be in 0..{len(data) - 1}, got {a.index}")
    x = data.x[:1000]
    y = None if data.y is None or not model.num_classes else data.y[:1000]
    codes = model.embed(x, y)  # (n, J)
    if has(model, POSTERIOR) and hasattr(model, "prior"):
        from .objectives import kl_per_dimension

        kl = kl_per_dimension(model.encode(x, y), model.prior()).mean(0)  # (J,) nats
        order = torch.argsort(kl, descending=True).tolist()
        values = torch.linspace(-a.span, a.span, a.steps)
        labels = [f"z{j}  KL {float(kl[j]):.2f}" for j in order]
    else:
        order = list(range(codes.shape[1]))
        mean, std = codes.mean(0), codes.std(0)
        values = mean[:, None] + a.span * std[:, None] * torch.linspace(-1, 1, a.steps)  # (J, S)
        labels = [f"z{j}" for j in order]
    index = slice(a.index, a.index + 1)
    grid = latent_traversal(model, data.x[index], values, order, None if y is None else data.y[index])
    save_traversals(grid, data.image_shape, Path(a.output), labels)
    print(f"wrote {a.output} ({len(order)} dimensions x {a.steps} steps)")


def _cmd_disentangle(a) -> None:
    from . import api
    from .disentanglement import dsprites_space, evaluate_disentanglement

    model = api.load(a.run)
    data_dir = a.data_dir or model.config.data.data_dir
    space = dsprites_space(model.config.data.name, data_dir)
    result = evaluate_disentanglement(model, space, seed=a.seed, scale=a.scale, progress=sys.stderr.isatty())
    result = {"run": str(a.run), "factors": list(space.factor_names), **result}
    if a.json:
        print(json.dumps(result))
        return
    s = result["summary"]
    print(f"{a.run} on {model.config.data.name} (factors: {', '.join(space.factor_names)}; scale {a.scale:g} of "
          f"disentanglement_lib's points)")
    print(f"  beta-VAE metric    {s['beta_vae_metric']:.4f}  (train {result['beta_vae']['train_accuracy']:.4f})")
    print(f"  FactorVAE metric   {s['factor_vae_metric']:.4f}  (train {result['factor_vae']['train_accuracy']:.4f}, "
          f"{result['factor_vae']['num_active_dims']} active dimensions)")
    print(f"  MIG                {s['mig']:.4f}  (per factor: "
          + ", ".join(f"{n} {v:.3f}" for n, v in zip(space.factor_names, result['mig']['mig_per_factor'])) + ")")


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "sample": _cmd_sample, "reconstruct": _cmd_reconstruct,
            "interpolate": _cmd_interpolate, "encode": _cmd_encode, "plot": _cmd_plot, "verify": _cmd_verify, "list": _cmd_list}
COMMANDS.update({"restore": _cmd_restore, "compress": _cmd_compress, "decompress": _cmd_decompress,
                 "traverse": _cmd_traverse, "disentangle": _cmd_disentangle})


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


# ----------------------------------------------------------------------------- reproduce
def _add_reproduce_parser(sub) -> None:
    """reproduce: the lineage's claims, one experiment each (aekit.reproduce)."""
    p = sub.add_parser("reproduce", help="check the claims of the lineage one by one: a number, a verdict, a figure",
                       description="Runs the experiment behind one claim of the autoencoder lineage (or --all) and "
                                   "writes OUT/ID/result.json (measured numbers, verdict, anchor, budget, wall time, "
                                   "machine) with its figures; --all also writes REPRODUCTION.md.")
    p.add_argument("claim", nargs="?", metavar="ID", help="the claim to run (aekit reproduce --list)")
    p.add_argument("--list", action="store_true", help="list the claims: id, claim, measurement, verdict rule, anchor")
    p.add_argument("--all", action="store_true", help="run every claim (one progress bar) and write REPRODUCTION.md")
    p.add_argument("--budget", default="quick", help="smoke (seconds; checks it runs, verdict not meaningful) | quick "
                                                     "(minutes on a CPU) | full (the papers' budget, for a GPU) "
                                                     "(default quick)")
    p.add_argument("--out", default=None, metavar="DIR", help="folder for the results, one subfolder per claim "
                                                            "(default reproduce/)")
    p.add_argument("--seed", type=int, default=0, help="seed of every experiment (default 0)")
    p.add_argument("--force", action="store_true", help="write even where a folder holds other results or files")
    p.add_argument("--keep-runs", action="store_true", help="keep the training runs (OUT/ID/runs/)")
    p.add_argument("--report", default=None, metavar="FILE", help="with --all: where REPRODUCTION.md goes "
                                                                  "(default OUT/REPRODUCTION.md)")
    p.add_argument("--resume", action="store_true", help="with --all: keep results already in OUT for this budget "
                                                         "and seed, run the rest")
    _add_data_args(p, with_name=False)


def _cmd_reproduce(a) -> None:
    from .reproduce import cli_reproduce

    cli_reproduce(a)


COMMANDS["reproduce"] = _cmd_reproduce


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the process's own command line (the console script, python -m aekit): the process is ours
        from .threads import flush_denormals

        flush_denormals()  # before torch's first parallel region, or its worker threads miss it
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
