"""The claims of the lineage: one :class:`Claim` per checkable statement, registered by id.

A claim is data plus two functions:

* ``run(budget, out, seed, data_dir=None) -> Measurement``: the experiment, through aekit's public
  face only (``aekit.train`` / ``aekit.load`` / ``aekit.resume``, ``aekit.evaluate.evaluate_model``,
  the estimators and the applications' public functions). It writes its figures into ``out`` and
  returns the measured numbers (a JSON-able dict) and the figure files.
* ``verdict(measured) -> bool``: whether the numbers support the claim — a pure function of the
  measured numbers, nothing else, so a reader can recompute it from ``result.json``.

``headline(measured) -> str`` is the one-line figure the tables show beside the verdict. Each claim
carries numbers that contradict it (``contradicting``) and numbers that support it
(``supporting``): the tests feed both to ``verdict``, so no rule can pass everything.

Adding claims is a one-file change: a new module in :mod:`aekit.reproduce.claims` that calls
:func:`register`; :func:`all_claims` imports every module of that package.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import AekitError

BUDGETS = ("smoke", "quick", "full")
BUDGET_HELP = {
    "smoke": "seconds: checks the experiment runs end to end (its verdict is not meaningful)",
    "quick": "a few minutes per claim on a 2-core CPU",
    "full": "the papers' budget (meant for a GPU)",
}
# The order of the lineage: claims are listed section by section, in registration order within one.
SECTIONS = ("classical", "vae", "discrete", "vqvae", "applications")

# Things a claim may need that a machine may lack; the runner checks them before running.
MNIST = "mnist"          # the MNIST IDX files (--data-dir / $AEKIT_DATA_DIR)
UCR = "ucr"              # the UCR anomaly series in the shared timeseries folder
ONNX = "onnx"            # the optional extra aekit[export]


@dataclass(frozen=True)
class Measurement:
    """What an experiment returns: the measured numbers and the figure files it wrote (names in ``out``)."""

    measured: dict[str, Any]
    figures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Claim:
    id: str                                   # short id, the command's argument
    claim: str                                # the claim, one sentence
    measurement: str                          # what is measured, one or two sentences
    rule: str                                 # the verdict rule, in words (``verdict`` in code)
    verdict: Callable[[dict], bool]           # pure function of the measured numbers
    headline: Callable[[dict], str]           # the figure the tables show
    run: Callable[..., Measurement]           # run(budget, out, seed, data_dir=None)
    anchor: str | None                        # paper and figure / table / equation, or None
    budgets: Mapping[str, str]                # what each budget runs, in words (full: the papers' budget)
    section: str = "applications"
    needs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # budget -> requirements (MNIST, UCR, ONNX)
    supporting: tuple[dict, ...] = ()         # numbers for which the verdict must be True (tests)
    contradicting: tuple[dict, ...] = ()      # numbers that contradict the claim: verdict False (tests)

    def __post_init__(self):
        missing = [b for b in BUDGETS if b not in self.budgets]
        if missing:
            raise ValueError(f"claim {self.id} does not describe budget(s) {missing}")
        if not self.contradicting:
            raise ValueError(f"claim {self.id} needs numbers that contradict it (contradicting=...)")

    def requirements(self, budget: str) -> tuple[str, ...]:
        return tuple(self.needs.get(budget, ()))

    def judge(self, measured: dict) -> bool:
        return bool(self.verdict(measured))


_CLAIMS: dict[str, Claim] = {}
_loaded = False


def register(claim: Claim) -> Claim:
    """Add ``claim`` to the registry (an id may be registered once)."""
    if claim.id in _CLAIMS and _CLAIMS[claim.id] is not claim:
        raise ValueError(f"claim id '{claim.id}' is registered twice")
    _CLAIMS[claim.id] = claim
    return claim


def _load() -> None:
    global _loaded
    if _loaded:
        return
    from . import claims

    for info in sorted(pkgutil.iter_modules(claims.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{claims.__name__}.{info.name}")
    _loaded = True


def all_claims() -> list[Claim]:
    """Every registered claim, in the order of the lineage (section, then registration)."""
    _load()
    order = {s: i for i, s in enumerate(SECTIONS)}
    indexed = list(enumerate(_CLAIMS.values()))
    return [c for _, c in sorted(indexed, key=lambda ic: (order.get(ic[1].section, len(SECTIONS)), ic[0]))]


def get_claim(claim_id: str) -> Claim:
    _load()
    if claim_id not in _CLAIMS:
        raise AekitError(f"unknown claim '{claim_id}'; choose one of: {', '.join(c.id for c in all_claims())} "
                         f"(aekit reproduce --list)")
    return _CLAIMS[claim_id]


def check_budget(budget: str) -> str:
    if budget not in BUDGETS:
        raise AekitError(f"unknown budget '{budget}'; choose one of: {', '.join(BUDGETS)}")
    return budget
