"""Errors raised at the boundaries (grammar files, candidate text, run files).

Each carries a one-line message that names the problem; the CLI prints it and exits 1.
"""

from __future__ import annotations

__all__ = ["CandidateError", "GrammarError", "NosError"]


class NosError(Exception):
    """A user-facing error: bad input, reported in one line without a traceback."""


class GrammarError(NosError):
    """A grammar file is malformed or describes an unusable search space."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path, self.line, self.problem = path, line, message
        where = path or "<grammar>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {message}")


class CandidateError(NosError):
    """Candidate text that cannot be read, or a candidate outside its grammar."""

    def __init__(self, message: str, *, position: int | None = None):
        self.position, self.problem = position, message
        if position is not None:
            message = f"{message} (at position {position})"
        super().__init__(message)
