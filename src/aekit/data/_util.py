"""Small helpers shared by the data modules."""

from __future__ import annotations


def one_line(error: BaseException) -> str:
    """An exception's message collapsed to one line, for embedding in an AekitError."""
    return " ".join(str(error).split()) or type(error).__name__
