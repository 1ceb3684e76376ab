"""Errors a user can cause. Each carries a one-line message; the CLI prints it and exits 2."""

from __future__ import annotations


class LrlabError(ValueError):
    """A user error: bad input, bad argument, missing data. One line, no traceback."""


class SpecError(LrlabError):
    """A schedule spec that cannot be parsed or resolved.

    ``spec`` and ``pos`` (0-based character offset, or None) locate the problem; the
    message already names the position, e.g. ``unknown phase 'cosin' at position 11``.
    """

    def __init__(self, message: str, spec: str | None = None, pos: int | None = None) -> None:
        self.spec = spec
        self.pos = pos
        if spec is not None and pos is not None:
            message = f"{message} at position {pos} in {spec!r}"
        super().__init__(message)
