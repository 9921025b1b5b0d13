"""User-facing errors.

Every mistake a user can make (unknown name, missing file, bad values, corrupt checkpoint) raises
:class:`AekitError` with one line saying what is wrong and how to fix it. The CLI prints that line
and exits non-zero; nothing else reaches a CLI user as a traceback.
"""

from __future__ import annotations


class AekitError(Exception):
    """An error caused by input the user can fix; the message is one line."""


def unknown_choice(kind: str, given: str, valid) -> AekitError:
    """Build the standard 'unknown X' error listing the valid choices."""
    choices = ", ".join(sorted(valid))
    return AekitError(f"unknown {kind} '{given}'; choose one of: {choices}")
