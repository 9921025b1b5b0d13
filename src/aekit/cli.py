"""The ``aekit`` command: train | evaluate | sample | reconstruct | interpolate | encode | plot | list.

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
    """argparse, but a usage mistake is one line naming the fix, like every other aekit error."""

    def error(self, message):
        raise AekitError(f"{self.prog}: {message} (see {self.prog} --help)")


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


def _add_setting_flags(parser) -> None:
    group = parser.add_argument_group("settings (defaults in brackets; see also --config)")
    from .config import DataConfig, ModelConfig, TrainConfig

    defaults = {"model": ModelConfig(), "data": DataConfig(), "train": TrainConfig()}
    for section, name, flag, type_name, help_text in _setting_flags():
        default = getattr(defaults[section], name)
        dest = "data_seed" if flag == "--data-seed" else name
        text = f"{help_text} [{default}]".replace("%", "%%")
        if type_name == "bool":
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(flag, dest=dest, type=_flag_type(type_name), default=None, metavar=name.upper(),
                               help=text)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aekit", description="The autoencoder family on PyTorch: train, evaluate, sample, plot.",
                     epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a model into a run folder (or --resume one)",
                       description="Train a model; the run folder gets config, weights, checkpoint, metrics, "
                                   "TensorBoard events and figures.", epilog=EPILOG)
    t.add_argument("model", nargs="?", help="the model to train (see aekit list)")
    t.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint (to --epochs TOTAL if given)")
    t.add_argument("--config", metavar="FILE", help="JSON file with sections model / data / train; flags override it")
    t.add_argument("--out", metavar="RUN", help="run folder to create (default runs/<model>-<data>)")
    t.add_argument("--codes-from", metavar="RUN", help="train prior: the vq-vae run whose code maps it models "
                                                      "(its data and codebook size come from RUN)")
    _add_data_args(t)
    _add_setting_flags(t)

    e = sub.add_parser("evaluate", help="figures of a trained run on a split",
                       description="Negative ELBO and its terms, KL per dimension, active units, importance-sampled "
                                   "log p(x), bits/dim and squared error (nats per example).")
    e.add_argument("run")
    e.add_argument("--split", default="test", help="train | val | test (default test)")
    e.add_argument("--iw-samples", type=int, default=1000, help="k for log p(x) (5000 for reported figures; 0 skips)")
    e.add_argument("--batch-size", type=int, default=500)
    e.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    e.add_argument("--which", default="best", help="best | last weights")
    _add_data_args(e, with_name=False)
    e.add_argument("--device", default="auto")

    s = sub.add_parser("sample", help="draw samples from the prior and decode them")
    s.add_argument("run")
    s.add_argument("-n", type=int, default=64, help="number of samples")
    s.add_argument("--label", type=int, help="class to generate (cvae)")
    s.add_argument("-o", "--output", default="samples.png", help=".png grid or .npy array")
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
    _add_data_args(c, with_name=False)

    pl = sub.add_parser("plot", help="training curves of a run (objective, reconstruction and KL apart)")
    pl.add_argument("run")
    pl.add_argument("-o", "--output", default=None, help="default RUN/curves.png")

    sub.add_parser("list", help="models, data sets, likelihoods and priors")
    return parser


# ----------------------------------------------------------------------------- commands
def _cmd_train(a) -> None:
    from . import api
    from .config import read_config_file

    if a.resume:
        if a.model:
            raise AekitError("give either a MODEL or --resume RUN, not both")
        model = api.resume(a.resume, epochs=a.epochs, steps=a.steps)
        print(f"run: {model.run_dir}")
        return
    base = read_config_file(a.config) if a.config else {}
    model = a.model or base.get("model", {}).get("kind") or ("prior" if a.codes_from else None)
    if not model:
        raise AekitError("name a model to train, e.g. aekit train vae --data digits (see aekit list)")
    data = a.data or base.get("data", {}).get("name", "digits")
    settings = {"data_dir": a.data_dir}
    settings.update({("data_seed" if flag == "--data-seed" else name): getattr(a, "data_seed" if flag == "--data-seed" else name)
                     for _, name, flag, _, _ in _setting_flags()})
    # --- vqvae helper: a prior's data (code maps) and codebook size come from its --codes-from run
    if model == "prior" or a.codes_from is not None:
        from .models.vqvae import prior_cli_settings

        data, settings = prior_cli_settings(model, a.codes_from, a.data, settings)
    cfg = api.build_config(model, data, base=base, **settings)
    from .trainer import check_names, fit

    check_names(cfg)
    out = Path(a.out) if a.out else api.default_run_dir(cfg)
    if (out / "config.json").exists():
        raise AekitError(f"{out} already holds a run; continue it with aekit train --resume {out}, or pick another --out")
    fit(cfg, out)
    print(f"run: {out}")


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


def _save_rows(x, image_shape, output: str, nrow: int) -> None:
    import numpy as np

    from .plots import save_image_grid

    out = Path(output)
    if out.suffix == ".npy":
        np.save(out, x.cpu().numpy())
    elif image_shape is not None:
        save_image_grid(x, image_shape, out, nrow=nrow)
    else:
        raise AekitError("vector data cannot be drawn as an image grid; write -o FILE.npy instead")
    print(f"wrote {out}")


def _cmd_sample(a) -> None:
    import torch

    from . import api

    if a.prior is not None:  # vqvae helper: code maps from a prior run, decoded by the vq-vae
        return _sample_with_prior(a)
    model = api.load(a.run)
    if a.n < 1:
        raise AekitError(f"-n must be >= 1, got {a.n}")
    torch.manual_seed(a.seed)
    labels = None
    if model.num_classes:
        if a.label is not None and not 0 <= a.label < model.num_classes:
            raise AekitError(f"--label must be in 0..{model.num_classes - 1}, got {a.label}")
        labels = torch.full((a.n,), a.label) if a.label is not None else torch.arange(a.n) % model.num_classes
    elif a.label is not None:
        raise AekitError("--label needs a conditional model (cvae)")
    x = model.sample(a.n, labels)
    _save_rows(x, model.config.shape.image_shape, a.output, nrow=8)


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
    with torch.no_grad():
        recon = model.reconstruct(x, y)
    pairs = torch.stack([x, recon], 1).reshape(-1, x.shape[1])  # (2n, D): input, reconstruction, ...
    _save_rows(pairs, data.image_shape, a.output, nrow=16)  # columns: input, reconstruction


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


def _cmd_plot(a) -> None:
    from . import runs
    from .plots import save_curves

    runs.load_config(a.run)
    history = runs.read_metrics(a.run)
    if not history:
        raise AekitError(f"{a.run} has no metrics yet (metrics.jsonl is empty or missing)")
    out = Path(a.output) if a.output else Path(a.run) / "curves.png"
    save_curves(history, out)
    print(f"wrote {out}")


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
            "interpolate": _cmd_interpolate, "encode": _cmd_encode, "plot": _cmd_plot, "list": _cmd_list}


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    try:
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
    except KeyboardInterrupt:
        print("aekit: interrupted; a training run resumes with aekit train --resume RUN", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
