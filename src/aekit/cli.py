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
    _add_application_parsers(sub)
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
    model = a.model or base.get("model", {}).get("kind")
    if not model:
        raise AekitError("name a model to train, e.g. aekit train vae --data digits (see aekit list)")
    data = a.data or base.get("data", {}).get("name", "digits")
    settings = {"data_dir": a.data_dir}
    settings.update({("data_seed" if flag == "--data-seed" else name): getattr(a, "data_seed" if flag == "--data-seed" else name)
                     for _, name, flag, _, _ in _setting_flags()})
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


# ----------------------------------------------------------------------------- applications II
# restore (image restoration), compress / decompress (the autoencoder as a codec), traverse and
# disentangle (latent traversals, disentanglement metrics on dsprites)
def _add_application_parsers(sub) -> None:
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
            "interpolate": _cmd_interpolate, "encode": _cmd_encode, "plot": _cmd_plot, "list": _cmd_list}
COMMANDS.update({"restore": _cmd_restore, "compress": _cmd_compress, "decompress": _cmd_decompress,
                 "traverse": _cmd_traverse, "disentangle": _cmd_disentangle})


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
