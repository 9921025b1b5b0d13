"""The model × setting table: every setting either changes a model's result or is refused.

For every kind and every setting (model, training and data fields), the setting is moved off the
kind's default (with whatever setting switches it on, e.g. --kl-schedule linear for --warmup-steps)
and the model trained for a few steps on digits. The run must either be refused with one line, or end
with different weights or a different validation history than the same run without the change. The
presentation settings (device, figures, progress, threads, checkpoint interval) are the exception by
design, and the test checks the opposite for them: they never change a result.
"""

import dataclasses

import pytest
import torch

import aekit
from aekit import runs
from aekit.config import DataConfig, ModelConfig, TrainConfig
from aekit.errors import AekitError
from aekit.models import SPECS
from aekit.models.registry import PRESENTATION, _ENABLERS, possible_settings
from aekit.trainer import cpu_has_bf16

# A value off the default for every setting (the test picks another when the kind's default is this one).
ALTERNATIVES = {
    "latent_dim": [3, 4], "hidden_dims": [(12,), (10,)], "activation": ["tanh", "elu"], "body": ["conv"],
    "likelihood": ["gaussian", "bernoulli"], "sigma": [0.5], "prior": [], "beta": [2.0], "kl_schedule": ["linear"],
    "warmup_steps": [3], "cycle_steps": [2], "free_bits": [0.5], "mc_samples": [3], "iw_samples": [3],
    "method": ["em", "closed-form"], "max_iter": [2], "tol": [0.5], "cd_steps": [3], "persistent": [True],
    "pretrain": ["rbm", "none"], "pretrain_epochs": [2], "corruption": ["masking", "gaussian"],
    "corruption_level": [0.5], "code_activation": ["sigmoid", "identity"], "sparsity": ["l1", "none"],
    "sparsity_weight": [0.5], "sparsity_target": [0.2], "contractive_weight": [0.5, 0.0],
    "epochs": [2], "steps": [2], "batch_size": [128], "drop_last": [True], "lr": [0.05, 0.02], "betas": [(0.5, 0.9)],
    "eps": [1e-2], "weight_decay": [0.1], "momentum": [0.9, 0.5], "lr_schedule": ["cosine"], "grad_clip": [0.01],
    "patience": [1], "seed": [1], "amp": [True],
    "binarize": ["static"], "val_fraction": [0.2], "data_seed": [1], "labels": ["labels.npy"],
    "latent": ["bernoulli", "categorical"], "groups": [2], "estimator": ["score-function", "gumbel-softmax"],
    "baseline": ["moving-average"], "variance_normalization": [True], "baseline_decay": [0.5],
    "baseline_hidden": [20], "temperature": [2.0], "temperature_min": [0.1], "temperature_decay": [0.5],
    "temperature_interval": [1], "algorithm": ["reweighted-wake-sleep", "elbo"], "track_grad_variance": [True],
    "normal_class": [3], "window": [8], "stride": [2], "train_steps": [100],
    "codebook_size": [16], "code_dim": [8], "commitment_weight": [0.5], "codebook_update": ["loss", "ema"],
    "ema_decay": [0.5], "codebook_init": ["uniform", "kmeans"], "restart_threshold": [0.0, 1.0],
    "residual_blocks": [1], "pixelcnn_layers": [2], "pixelcnn_channels": [8], "class_conditional": [True],
}
# Settings that need another one beyond the kind's own enabler to act within a few steps.
TEST_ENABLERS = {
    "temperature_decay": {"temperature_interval": 1},
    "temperature_min": {"temperature_interval": 1, "temperature_decay": 1.0},
    # NVIL divides by max(1, σ̂) of the learning signal, which an untrained decoder keeps below 1 (every
    # binary digit costs ≈ 64 ln 2): a larger learning rate spreads the signal within the few steps
    "variance_normalization": {"lr": 0.05},
    # restarts re-seed codes that go unused: with a few codes per batch vector none is dead in a few steps
    "restart_threshold": {"codebook_size": 256, "codebook_init": "uniform"},
}
# Settings that only add a logged figure (they must add it, and change nothing else).
LOGGING = {"track_grad_variance": "train/grad_log_variance"}
# Settings only some values of which are valid for some kinds; a refusal still counts (it is one line).
DATA_FIELDS = {"binarize", "val_fraction", "data_seed", "labels"}


def _base(kind: str) -> dict:
    """Small, fast settings that the kind uses (a setting it does not use would itself be refused)."""
    usable = possible_settings(SPECS[kind])
    base = {"figures": "none", "progress": False}
    for name, value in (("latent_dim", 2), ("hidden_dims", (12,)), ("batch_size", 256), ("epochs", 1),
                        ("codebook_size", 16), ("code_dim", 8), ("residual_blocks", 1)):
        if name in usable:
            base[name] = value
    if kind == "rbm":
        base["latent_dim"] = 6
    if kind == "vq-vae":
        base["hidden_dims"] = (8, 16)  # the conv body's channel widths
    return base


def _result(out) -> tuple[dict, list]:
    weights = {k: v.clone() for k, v in aekit.load(out, which="last").state_dict().items()}
    history = [h.get("val/loss") for h in runs.read_metrics(out)]
    return weights, history


def _same(a, b) -> bool:
    (wa, ha), (wb, hb) = a, b
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa) and ha == hb


def _settings_of(kind):
    fields = [f.name for f in dataclasses.fields(ModelConfig) if f.name != "kind"]
    fields += [f.name for f in dataclasses.fields(TrainConfig)]
    fields += ["binarize", "val_fraction", "data_seed", "labels", "normal_class", "window", "stride", "train_steps"]
    return fields


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory):
    """A small vq-vae on digits: the prior kind is trained on its codes."""
    run = tmp_path_factory.mktemp("vq") / "vq"
    aekit.train("vq-vae", "digits", out=run, codebook_size=16, code_dim=8, hidden_dims=(8, 16), residual_blocks=1,
                epochs=1, figures="none", progress=False)
    return run


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_every_setting_changes_the_result_or_is_refused(kind, tmp_path, request):
    import numpy as np

    np.save(tmp_path / "labels.npy", np.zeros(1797, dtype=np.int64))
    base = _base(kind)
    data = "digits"
    if kind == "prior":  # a prior models the code maps of a vq-vae run: its data and K come from that run
        from aekit.models.vqvae import CODES_DATASET, prior_settings

        data = CODES_DATASET
        base = prior_settings(request.getfixturevalue("vq_run"), {**base, "pixelcnn_layers": 2, "pixelcnn_channels": 8})
    defaults = {**dataclasses.asdict(SPECS[kind].effective_defaults()[0]),
                **dataclasses.asdict(SPECS[kind].effective_defaults()[1]),
                "binarize": DataConfig().binarize, "val_fraction": DataConfig().val_fraction, "data_seed": 0,
                "labels": None, "normal_class": None, "window": None, "stride": 1, "train_steps": None}
    reference_runs: dict[tuple, tuple] = {}
    table = {}
    for i, name in enumerate(_settings_of(kind)):
        if name in PRESENTATION or name == "checkpoint_seconds":
            continue
        if name == "amp" and not cpu_has_bf16():
            continue  # float32 there, said in one line: tests/test_evaluation.py checks that fallback
        enabling = {**_ENABLERS.get(name, {}), **TEST_ENABLERS.get(name, {})}
        if "lr" in enabling and "lr" not in possible_settings(SPECS[kind]):
            del enabling["lr"]
        if name == "patience":
            enabling = {"lr": 1e-12, "epochs": 3} if "lr" in possible_settings(SPECS[kind]) else {}
        start = {**base, **enabling}
        current = start.get(name, defaults.get(name))
        if name == "estimator":  # "auto" means the latent's own estimator: another value must differ from that
            from aekit.estimators import resolve_estimator

            current = resolve_estimator(start.get("latent", defaults.get("latent")), current)
        choices = [v for v in ALTERNATIVES[name] if v != current]
        if not choices:
            continue
        value = choices[0]
        if name == "labels":
            value = str(tmp_path / value)
        changed = {**start, name: value}
        try:
            out = tmp_path / f"{i}-{name}"
            aekit.train(kind, data, out=out, **changed)
        except AekitError as e:
            assert "\n" not in str(e)
            table[name] = "refused"
            continue
        key = tuple(sorted(start.items()))
        if key not in reference_runs:
            ref = tmp_path / f"{i}-{name}-reference"
            aekit.train(kind, data, out=ref, **start)
            reference_runs[key] = _result(ref)
        if name in LOGGING:  # its running statistics are extra buffers; the parameters must be untouched
            (weights, history), (ref_weights, ref_history) = _result(out), reference_runs[key]
            assert history == ref_history and all(torch.equal(weights[k], v) for k, v in ref_weights.items()), name
            assert LOGGING[name] in runs.read_metrics(out)[-1], f"{kind}: --{name} logged nothing"
            table[name] = "logs"
            continue
        assert not _same(_result(out), reference_runs[key]), f"{kind}: --{name.replace('_', '-')} {value} was accepted but changed nothing"
        table[name] = "acts"
    assert "acts" in table.values(), (kind, table)  # a kind refusing everything would pass vacuously


def test_presentation_settings_never_change_a_result(tmp_path):
    base = {"latent_dim": 2, "hidden_dims": (12,), "batch_size": 256, "epochs": 2, "figures": "none", "progress": False}
    aekit.train("vae", "digits", out=tmp_path / "a", **base)
    aekit.train("vae", "digits", out=tmp_path / "b", **{**base, "figures": "epoch", "threads": 1, "device": "cpu",
                                                         "checkpoint_seconds": 1e-9, "figure_seconds": 0.0})
    assert _same(_result(tmp_path / "a"), _result(tmp_path / "b"))
