"""One search session: a run directory, an executor and an evaluator wired to the driver.

This is the layer the ``nos search`` command calls (and a Python user may call):

* :func:`create_run` makes ``search_runs/NAME/`` with the resolved configuration;
* :func:`open_run` reopens one to resume it (the ``[search]`` table is the source of truth);
* :func:`execute` builds the executor and the job factory, resolves ``seed_from`` and runs
  :func:`nos.search.driver.run_search` until the end or a budget, then writes ``done``.

Fitness: with ``fitness = "suite"`` (:mod:`nos.search.fitness`) the workers run
``nos.search.worker:suite_job``; before the search the reference (LR-tuned Adam on every
task of the suite) is computed on the same workers and kept in ``reference.json``, which a
resumed run reads back instead of training it again. With ``fitness = "paper"`` every
registered task (:mod:`nos.training.registry`) is evaluated by
:func:`nos.training.protocol.evaluate` (``nos.search.worker:evaluate_job``). The task
``fake`` (:mod:`nos.search.fake`, for tests and benchmarks of the machinery) scores by a
hash and trains nothing.

Unless ``Execution.tensorboard`` is off, the run directory gets TensorBoard event files
(:mod:`nos.search.live`).
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nos.errors import NosError
from nos.search.config import SearchConfig
from nos.search.fitness import FitnessSpec, Reference, fitness_for
from nos.search.seeds import resolve_seeds
from nos.search.store import DEFAULT_ROOT, RunStore, load_run
from nos.search.suite_jobs import (
    candidate_payload,
    compute_reference,
    executor_batches,
    reference_seeds,
)
from nos.symbolic.grammar import load_grammar
from nos.training.spec import EvalSpec

__all__ = [
    "FAKE_TASK",
    "REFERENCE_FILE",
    "Execution",
    "changes_since_creation",
    "create_run",
    "default_name",
    "execute",
    "fitness_spec",
    "open_run",
    "read_reference",
    "source_digest",
    "worker_execution",
]

log = logging.getLogger(__name__)

FAKE_TASK = "fake"
REFERENCE_FILE = "reference.json"
_PACKAGES = ("nos", "torch", "numpy", "sympy", "deap", "multiprocess", "ray")


@dataclass(frozen=True)
class Execution:
    """How a run is executed; free to change on resume (decisions do not depend on it)."""

    executor: str = "local"
    workers: int = 0  # 0: the number of cores
    device: str = "cpu"
    data_dir: str = ""
    tensorboard: bool = True  # event files for a live view in the run directory
    address: str = ""  # ray: "" (a local instance), "auto" or HOST:PORT
    cpus_per_eval: float = 1.0  # ray: resources each evaluation declares
    gpus_per_eval: float = 0.0
    screen_workers: int = 0  # driver-side processes screening candidates (0: in the driver)
    # --- GPU: the training step and packing (nos.training.fast, nos.training.device) ---
    workers_per_gpu: int = 1
    precision: str = "fp32"
    compile: str = "off"
    cuda_graph: bool = False
    channels_last: str = "auto"  # auto, on, off
    batch_sweep: bool = False

    def pinning(self) -> Any:
        """One GPU per local worker (a :class:`nos.training.device.Pinning`), or None."""
        if self.executor != "local" or not self.device.startswith("cuda"):
            return None
        from nos.training.device import worker_pinning

        return worker_pinning(self.device, self.workers_per_gpu, self.workers or None)

    # --- end GPU ---

    @property
    def n_workers(self) -> int:
        if self.executor == "serial":
            return 1
        if self.executor == "ray":
            return self.workers  # 0: the cluster's capacity
        pinning = self.pinning()  # GPU: workers_per_gpu x GPUs unless --workers
        if pinning is not None:
            return int(pinning.workers)
        return self.workers or os.cpu_count() or 1

    def executor_options(self) -> dict[str, Any]:
        if self.executor != "ray":
            return {}
        return {
            "address": self.address or None,
            "cpus_per_eval": self.cpus_per_eval,
            "gpus_per_eval": self.gpus_per_eval,
        }


def source_digest() -> str:
    """A hash of nos's own source files: the code a run's decisions depend on."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    out["nos_source"] = source_digest()
    return out


#: What a resumed run compares with its creation: (section, key, what it is called).
_GUARDED = (
    ("versions", "nos", "nos version"),
    ("versions", "nos_source", "nos source"),
    ("versions", "torch", "torch version"),
    ("grammar", "digest", "grammar"),
)


def changes_since_creation(config: dict[str, Any], grammar_digest: str) -> list[str]:
    """What differs between the code and grammar a run was created with and today's.

    Fields an older run did not record are not compared.
    """
    now = {"versions": _versions(), "grammar": {"digest": grammar_digest}}
    out = []
    for section, key, label in _GUARDED:
        then = config.get(section, {}).get(key)
        today = now[section].get(key)
        if then is not None and then != today:
            out.append(f"{label} {then} -> {today}")
    return out


def default_name(config: SearchConfig) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}_{Path(config.grammar).stem}_{config.target}_s{config.seed}"


def create_run(
    config: SearchConfig,
    execution: Execution,
    *,
    name: str | None = None,
    root: str | Path = DEFAULT_ROOT,
) -> RunStore:
    """A new run directory holding the full resolved configuration."""
    grammar = load_grammar(config.grammar)
    full = {
        "search": config.to_dict(),
        "execution": asdict(execution),
        "versions": _versions(),
        "grammar": {"name": grammar.name, "path": grammar.path, "digest": grammar.digest},
    }
    return RunStore.create(name or default_name(config), full, grammar.text, root)


def open_run(
    name: str, root: str | Path = DEFAULT_ROOT, *, force: bool = False
) -> tuple[RunStore, SearchConfig, Execution]:
    """Reopen a run to resume it: its store, search settings and last execution settings.

    A run resumed with other code (nos version or source, torch version) or another
    grammar could make other decisions than the ones on record; that is refused unless
    ``force``.
    """
    store = RunStore.resume(name, root)
    try:
        config = SearchConfig.from_dict(store.config["search"])
        execution = Execution(**store.config.get("execution", {}))
        grammar = load_grammar(store.path / "grammar.toml")
    except (NosError, TypeError) as exc:
        store.close()
        raise NosError(f"{store.path / 'config.toml'}: {exc}") from None
    changed = changes_since_creation(store.config, grammar.digest)
    if changed and not force:
        store.close()
        raise NosError(
            f"run {store.path.name} was created with other code or grammar ({'; '.join(changed)}); "
            "its record may not replay: resume anyway with --force"
        )
    return store, config, execution


# ------------------------------------------------------------------------------ execute


def fitness_spec(config: SearchConfig) -> FitnessSpec:
    """The suite fitness of a run: its suite, or its one task."""
    tasks = (config.task,) if config.task else ()
    return fitness_for(config.suite, tasks, lr_scheme=config.lr_scheme, hurdle=config.hurdle)


def _eval_seeds(config: SearchConfig) -> tuple[list[int], list[int]]:
    """The search's seeds and the re-scoring's (as the engine derives them)."""
    search = [config.seed + i for i in range(config.eval_seeds)]
    rescore = [config.seed + 1000 + i for i in range(config.rescore_seeds)] * bool(
        config.rescore_top
    )
    return search, rescore


def read_reference(run_dir: str | Path) -> Reference | None:
    """The reference of a run directory, or ``None`` if it has none."""
    path = Path(run_dir) / REFERENCE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Reference.from_dict(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NosError(f"{path}: unreadable reference ({exc})") from None


def worker_execution(execution: Execution) -> dict[str, Any]:
    """The execution settings as a worker sees them: a GPU-pinned worker (one GPU in its
    ``CUDA_VISIBLE_DEVICES``) knows its GPU as ``cuda``, whatever index was asked for."""
    pinning = execution.pinning()
    plain = asdict(execution)
    if pinning is not None:
        plain["device"] = pinning.device
    return plain


def ensure_reference(
    store: RunStore, config: SearchConfig, execution: Execution, run_batch: Any
) -> Reference:
    """The run's reference: read from ``reference.json``, or computed and written there.

    A stored reference whose fitness or seeds differ from the run's is an error (the run
    directory was edited); it is never silently recomputed.
    """
    spec = fitness_spec(config)
    search, rescore = _eval_seeds(config)
    seeds = reference_seeds(search, rescore)
    ref = read_reference(store.path)
    if ref is not None:
        missing = [s for s in seeds for info in ref.tasks.values() if str(s) not in info["loss"]]
        if ref.fitness != spec.to_dict() or missing or str(search[0]) not in ref.rung0:
            raise NosError(
                f"{store.path / REFERENCE_FILE} does not belong to this run's fitness; "
                "move it away to compute it again"
            )
        log.info("reference read from %s", store.path / REFERENCE_FILE)
        return ref
    started = time.monotonic()
    ref = compute_reference(spec, seeds, search[:1], run_batch, worker_execution(execution))
    data = {**ref.to_dict(), "wall_s": round(time.monotonic() - started, 3)}
    tmp = store.path / f".{REFERENCE_FILE}.tmp"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, store.path / REFERENCE_FILE)
    return ref


def _job_setup(
    config: SearchConfig,
    execution: Execution,
    grammar_path: str,
    reference: Reference | None = None,
) -> tuple[str, Callable[[Any], dict[str, Any]]]:
    """The worker function and the job factory of the run's task."""
    if config.task == FAKE_TASK:
        from nos.search.fake import job_payload

        return "nos.search.fake:evaluate", functools.partial(job_payload, options=config.fake)
    plain = worker_execution(execution)
    device = plain["device"]

    if config.fitness == "suite":
        spec = fitness_spec(config)
        search, _ = _eval_seeds(config)

        def suite_job(request: Any) -> dict[str, Any]:
            if reference is None:
                raise RuntimeError("the suite fitness needs its reference first")
            entry = request.entry
            return candidate_payload(
                candidate=entry.candidate.text,
                grammar=grammar_path,
                flip=entry.check.flip,
                seeds=request.seeds,
                rung0_seed=search[0],
                spec=spec,
                reference=reference,
                full=request.stage != "init",
                execution=plain,
                timeout_s=config.soft_timeout_s,
            )

        return "nos.search.worker:suite_job", suite_job

    def real_job(request: Any) -> dict[str, Any]:
        entry = request.entry
        preset = config.cheap_preset if request.stage == "init" else config.preset
        return EvalSpec(
            candidate=entry.candidate.text,
            grammar=grammar_path,
            task=config.task,
            preset=preset,
            seeds=tuple(request.seeds),
            flip=entry.check.flip,
            lr_hint=entry.check.lr,
            lr_grid="paper",
            timeout_s=config.soft_timeout_s,
            data_dir=execution.data_dir or None,
            device=device,
            batch_sweep=execution.batch_sweep,  # GPU: the training step
            precision=execution.precision,
            compile=execution.compile,
            cuda_graph=execution.cuda_graph,
            channels_last={"on": True, "off": False}.get(execution.channels_last),
        ).to_dict()

    return "nos.search.worker:evaluate_job", real_job


class _Observed:
    """The run store, with every appended record also shown to the live view."""

    def __init__(self, store: RunStore, view: Any):
        self.store, self.view = store, view

    def recorded(self, cache_id: str) -> dict[str, Any] | None:
        return self.store.recorded(cache_id)

    def append(self, record: dict[str, Any]) -> None:
        self.store.append(record)
        self.view.observe(record)

    def append_once(self, record: dict[str, Any]) -> None:
        self.store.append_once(record)

    def checkpoint(self, state: dict[str, Any]) -> None:
        self.store.checkpoint(state)

    def elapsed_before(self) -> float:
        return self.store.elapsed_before()


def execute(
    store: RunStore,
    config: SearchConfig,
    execution: Execution,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every_s: float = 30.0,
) -> Any:
    """Run (or resume) the search of ``store``; returns the driver's SearchOutcome."""
    from nos.executors import make_executor
    from nos.search.driver import run_search

    grammar_path = str((store.path / "grammar.toml").resolve())
    grammar = load_grammar(grammar_path)
    seeds = resolve_seeds(config.seed_from, grammar, store.path.parent)
    suite = config.fitness == "suite" and config.task != FAKE_TASK
    function, _ = _job_setup(config, execution, grammar_path)
    pinning = execution.pinning()  # GPU: CUDA_VISIBLE_DEVICES per worker
    pinned = {} if pinning is None else {"worker_env": pinning.envs}
    try:
        executor = make_executor(
            execution.executor,
            function,
            workers=execution.n_workers,
            timeout_s=config.kill_after_s,
            **execution.executor_options(),
            **pinned,
        )
    except ValueError as exc:
        raise NosError(str(exc)) from None
    view = None
    try:
        reference = None
        if suite:
            reference = ensure_reference(store, config, execution, executor_batches(executor))
        _, job_factory = _job_setup(config, execution, grammar_path, reference)
        recorder: Any = store
        if execution.tensorboard:
            from nos.search.live import LiveView

            view = LiveView(store.path, load_run(store.path).records)
            recorder = _Observed(store, view)
        outcome = run_search(
            config,
            grammar,
            job_factory=job_factory,
            executor=executor,
            store=recorder,
            seeds=seeds,
            progress=progress,
            checkpoint_every_s=checkpoint_every_s,
            screen_workers=execution.screen_workers,
        )
    finally:
        executor.close()
        if view is not None:
            view.close()
    store.finish(
        {
            "status": outcome.status,
            "stop_reason": outcome.stop_reason,
            "evaluations": store.evaluations,
            "cached": outcome.cached,
            "timeouts": outcome.timeouts,
            "rejections": outcome.rejections,
            "elapsed_s": round(outcome.elapsed_s, 3),
        }
    )
    return outcome
