"""The job function that worker processes run for real tasks (``nos.search.worker:evaluate_job``).

It is kept apart from the driver's modules so that a worker imports only what an
evaluation needs. The payload is :meth:`nos.training.protocol.EvalSpec.to_dict`; the result is
:meth:`nos.training.protocol.EvalResult.to_dict`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate_job", "suite_job"]


def evaluate_job(payload: dict[str, Any]) -> dict[str, Any]:
    from nos.training.protocol import evaluate
    from nos.training.spec import EvalSpec

    return evaluate(EvalSpec.from_dict(payload)).to_dict()


def suite_job(payload: dict[str, Any]) -> dict[str, Any]:
    """A job of the suite fitness (:func:`nos.search.suite_eval.run_job`)."""
    from nos.search.suite_eval import run_job

    return run_job(payload)
