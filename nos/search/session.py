"""One search session: a run directory, an executor and an evaluator wired to the driver.

This is the layer the ``nos search`` command calls (and a Python user may call):

* :func:`create_run` makes ``search_runs/NAME/`` with the resolved configuration;
* :func:`open_run` reopens one to resume it (the ``[search]`` table is the source of truth);
* :func:`execute` builds the executor and the job factory, resolves ``seed_from`` and runs
  :func:`nos.search.driver.run_search` until the end or a budget, then writes ``done``.

Tasks: every task of :mod:`nos.tasks` is evaluated by :func:`nos.evaluate.evaluate` in the
workers (``nos.search.worker:evaluate_job``). The task ``fake`` (:mod:`nos.search.fake`,
for tests and benchmarks of the machinery) scores by a hash and trains nothing.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import json
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nos.errors import CandidateError, NosError
from nos.search.config import SearchConfig
from nos.store import DEFAULT_ROOT, RunStore, load_run

__all__ = ["FAKE_TASK", "Execution", "create_run", "default_name", "execute", "open_run",
           "resolve_seeds"]

log = logging.getLogger(__name__)

FAKE_TASK = "fake"
_PACKAGES = ("nos", "torch", "numpy", "sympy", "deap", "multiprocess")


@dataclass(frozen=True)
class Execution:
    """How a run is executed; free to change on resume (decisions do not depend on it)."""

    executor: str = "local"
    workers: int = 0  # 0: the number of cores
    device: str = "cpu"
    data_dir: str = ""

    @property
    def n_workers(self) -> int:
        if self.executor == "serial":
            return 1
        return self.workers or os.cpu_count() or 1


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def default_name(config: SearchConfig) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}_{Path(config.grammar).stem}_{config.task}_s{config.seed}"


def create_run(config: SearchConfig, execution: Execution, *, name: str | None = None,
               root: str | Path = DEFAULT_ROOT) -> RunStore:
    """A new run directory holding the full resolved configuration."""
    from nos.grammar import load_grammar

    grammar = load_grammar(config.grammar)
    full = {"search": config.to_dict(), "execution": asdict(execution),
            "versions": _versions(), "grammar": {"name": grammar.name, "path": grammar.path}}
    return RunStore.create(name or default_name(config), full, grammar.text, root)


def open_run(name: str, root: str | Path = DEFAULT_ROOT) -> tuple[RunStore, SearchConfig,
                                                                    Execution]:
    """Reopen a run to resume it: its store, search settings and last execution settings."""
    store = RunStore.resume(name, root)
    try:
        config = SearchConfig.from_dict(store.config["search"])
        execution = Execution(**store.config.get("execution", {}))
    except (NosError, TypeError) as exc:
        store.close()
        raise NosError(f"{store.path / 'config.toml'}: {exc}") from None
    return store, config, execution


# -------------------------------------------------------------------------------- seeds


def _zoo_text(name: str) -> str:
    try:
        from nos import zoo  # type: ignore[attr-defined]
    except ImportError:
        raise NosError(f"zoo:{name}: the optimizer zoo is not available") from None
    for getter in ("get", "candidate", "lookup"):
        fn = getattr(zoo, getter, None)
        if callable(fn):
            try:
                entry = fn(name)
            except (KeyError, LookupError, NosError):
                raise NosError(f"no zoo optimizer named {name!r}") from None
            break
    else:
        table = getattr(zoo, "ZOO", {})
        if name not in table:
            raise NosError(f"no zoo optimizer named {name!r}")
        entry = table[name]
    for attr in ("text", "candidate"):
        value = getattr(entry, attr, None)
        if value is not None:
            return value if isinstance(value, str) else str(value)
    return str(entry)


def _log_texts(path: Path) -> list[str]:
    """Candidate texts of a JSONL file, best first: an imported reference log
    (``nos import-log``) or a run's ``evaluations.jsonl``."""
    scored: list[tuple[float, int, str]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise NosError(f"{path}: cannot read seeds: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if number == len(lines):
                log.warning("%s:%d: corrupt last line skipped", path, number)
                continue
            raise NosError(f"{path}:{number}: not a JSON record") from None
        if not isinstance(rec, dict):
            continue
        if rec.get("type") == "eval":
            text, fit = rec.get("candidate"), rec.get("fitness")
            ok = rec.get("status") == "ok"
        else:
            text, fit = rec.get("canonical"), rec.get("val_acc")
            ok = not rec.get("failed", False)
        if ok and isinstance(text, str) and isinstance(fit, int | float):
            scored.append((-float(fit), number, text))
    scored.sort()
    out, seen = [], set()
    for _f, _n, text in scored:
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def resolve_seeds(sources: tuple[str, ...] | list[str], grammar: Any,
                  root: str | Path = DEFAULT_ROOT) -> list[Any]:
    """Candidates for the initial population from ``zoo:NAME``, JSONL files or runs."""
    from nos.candidate import parse
    from nos.search.report import hall_of_fame

    out = []
    for source in sources:
        if source.startswith("zoo:"):
            texts = [_zoo_text(source[4:])]
        elif source.endswith(".jsonl") and Path(source).is_file():
            texts = _log_texts(Path(source))
        else:
            try:
                data = load_run(source, root)
            except NosError:
                raise NosError(f"seed source {source!r} is neither zoo:NAME, a .jsonl file "
                               "nor a run") from None
            texts = [row["candidate"] for row in hall_of_fame(data.records, k=10**6)]
        for text in texts:
            try:
                out.append(parse(text, grammar))
            except CandidateError as exc:
                if source.startswith("zoo:"):
                    raise NosError(f"{source} is not in grammar {grammar.name}: {exc}") from None
                log.warning("seed %r from %s skipped: %s", text, source, exc)
    return out


# ------------------------------------------------------------------------------ execute


def _job_setup(config: SearchConfig, execution: Execution, grammar_path: str
               ) -> tuple[str, Callable[[Any], dict[str, Any]]]:
    """The worker function and the job factory of the run's task."""
    if config.task == FAKE_TASK:
        from nos.search.fake import job_payload

        return "nos.search.fake:evaluate", functools.partial(job_payload, options=config.fake)

    def real_job(request: Any) -> dict[str, Any]:
        entry = request.entry
        preset = config.cheap_preset if request.stage == "init" else config.preset
        return {
            "candidate": entry.candidate.text, "grammar": grammar_path, "task": config.task,
            "preset": preset, "seeds": list(request.seeds), "flip": entry.check.flip,
            "lr_hint": entry.check.lr, "lr_grid": "paper", "timeout_s": config.timeout_s,
            "data_dir": execution.data_dir or None, "device": execution.device,
            "batch_sweep": False, "overrides": {},
        }

    return "nos.search.worker:evaluate_job", real_job


def hard_timeout(config: SearchConfig) -> float:
    """The executor's kill limit: the evaluator's own (soft) timeout plus a margin."""
    return config.timeout_s * 1.25 + 30.0


def execute(store: RunStore, config: SearchConfig, execution: Execution, *,
            progress: Callable[[dict[str, Any]], None] | None = None,
            checkpoint_every_s: float = 30.0) -> Any:
    """Run (or resume) the search of ``store``; returns the driver's SearchOutcome."""
    from nos.executors import make_executor
    from nos.grammar import load_grammar
    from nos.search.driver import run_search

    grammar_path = str((store.path / "grammar.toml").resolve())
    grammar = load_grammar(grammar_path)
    seeds = resolve_seeds(config.seed_from, grammar, store.path.parent)
    function, job_factory = _job_setup(config, execution, grammar_path)
    try:
        executor = make_executor(execution.executor, function, workers=execution.n_workers,
                                 timeout_s=hard_timeout(config))
    except ValueError as exc:
        raise NosError(str(exc)) from None
    try:
        outcome = run_search(config, grammar, job_factory=job_factory, executor=executor,
                             store=store, seeds=seeds, progress=progress,
                             checkpoint_every_s=checkpoint_every_s)
    finally:
        executor.close()
    store.finish({"status": outcome.status, "stop_reason": outcome.stop_reason,
                  "evaluations": store.evaluations, "cached": outcome.cached,
                  "rejections": outcome.rejections, "elapsed_s": round(outcome.elapsed_s, 3)})
    return outcome
