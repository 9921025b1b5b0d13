"""``aekit reproduce``: the claims of the autoencoder lineage, one experiment each, with a number, a verdict
and a figure.

    aekit reproduce --list                          # id, claim, measurement, verdict rule, anchor
    aekit reproduce linear-ae-pca --budget quick    # reproduce/linear-ae-pca/result.json and its figure
    aekit reproduce --all --budget quick            # every claim, then reproduce/REPRODUCTION.md

From Python: ``run_claim(get_claim("linear-ae-pca"), "quick")``. The claims live in
:mod:`aekit.reproduce.claims` (one module per part of the lineage); :mod:`~aekit.reproduce.registry`
says what a claim is and :mod:`~aekit.reproduce.runner` how it is run and reported.
"""

from __future__ import annotations

import sys
import textwrap

from ..errors import AekitError
from .registry import BUDGETS, Claim, Measurement, all_claims, check_budget, get_claim, register
from .runner import DEFAULT_OUT, check_out, run_all, run_claim, summary_line

__all__ = ["Claim", "Measurement", "register", "all_claims", "get_claim", "run_claim", "run_all", "BUDGETS",
           "list_text", "cli_reproduce"]


def list_text() -> str:
    """Every claim: id, claim, measurement, verdict rule, anchor and budgets (what --list prints)."""
    blocks = []
    width = 100

    def field(name: str, text: str) -> str:
        return textwrap.fill(text, width, initial_indent=f"  {name:<12} ", subsequent_indent=" " * 15)

    for c in all_claims():
        needs = {b: c.requirements(b) for b in BUDGETS if c.requirements(b)}
        lines = [f"{c.id}  [{c.section}]", field("claim", c.claim), field("measurement", c.measurement),
                 field("verdict", c.rule), field("anchor", c.anchor or "none")]
        lines += [field(f"{b}", c.budgets[b]) for b in BUDGETS]
        if needs:
            lines.append(field("needs", "; ".join(f"{b}: {', '.join(v)}" for b, v in needs.items())))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def cli_reproduce(a) -> None:
    """The ``aekit reproduce`` command (its arguments are parsed in :mod:`aekit.cli`)."""
    from pathlib import Path

    if a.list:
        if a.claim or a.all:
            raise AekitError("--list lists the claims; drop the claim id / --all")
        print(list_text())
        return
    check_budget(a.budget)
    if a.all and a.claim:
        raise AekitError(f"give one claim id or --all, not both (got '{a.claim}' and --all)")
    if not a.all and not a.claim:
        raise AekitError("name a claim to run (aekit reproduce --list shows them) or pass --all")
    if not a.all and (a.report or a.resume):
        raise AekitError("--report and --resume go with --all")
    out = Path(a.out) if a.out else Path(DEFAULT_OUT)
    if a.all:
        results = run_all(a.budget, out, seed=a.seed, data_dir=a.data_dir, force=a.force, keep_runs=a.keep_runs,
                          report=a.report, resume=a.resume)
        report = Path(a.report) if a.report else out / "REPRODUCTION.md"
        counts = {}
        for r in results:
            counts[r["verdict"].split(":")[0]] = counts.get(r["verdict"].split(":")[0], 0) + 1
        print(f"{len(results)} claims: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + f"; wrote {report}")
        if any(r["verdict"].startswith("error") for r in results):
            sys.exit(1)
        return
    claim = get_claim(a.claim)
    check_out(out, [claim], a.force)
    command = (f"aekit reproduce {claim.id} --budget {a.budget}" + (f" --seed {a.seed}" if a.seed else "")
               + (f" --data-dir {a.data_dir}" if a.data_dir else ""))
    result = run_claim(claim, a.budget, out, seed=a.seed, data_dir=a.data_dir, force=a.force,
                       keep_runs=a.keep_runs, command=command, checked=True)
    print(summary_line(result, out / claim.id))
    if result["verdict"].startswith("error"):
        sys.exit(1)
