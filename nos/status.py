"""The outcome of an evaluation, shared by the fitness protocol, the executors and the search.

A :class:`Status` is a ``str`` enum: it compares equal to its value and serialises as it, so
run files keep plain strings (``"ok"``, ``"failed_threshold"``, ...) and old runs still read.
"""

from __future__ import annotations

import enum

__all__ = ["Status"]


class Status(enum.StrEnum):
    """Outcomes of an evaluation, best first (:meth:`worst` uses this order)."""

    OK = "ok"
    FAILED_THRESHOLD = "failed_threshold"
    DIVERGED = "diverged"
    TIMEOUT = "timeout"
    ERROR = "error"

    @property
    def rank(self) -> int:
        """Position in the best-first order."""
        return list(Status).index(self)

    @classmethod
    def worst(cls, statuses: list[Status] | list[str]) -> Status:
        """The worst of several statuses (for a multi-seed evaluation)."""
        return max((cls(s) for s in statuses), key=lambda s: s.rank)

    @classmethod
    def parse(cls, value: object) -> Status | None:
        """The status spelled ``value``, or None for an unknown spelling."""
        try:
            return cls(str(value))
        except ValueError:
            return None
