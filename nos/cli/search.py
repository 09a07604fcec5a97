"""`nos search`: run or resume a particle-GA search (spec §4) into ``search_runs/NAME/``.

With no flags it runs a small search with the suite fitness (LR-tuned Adam as the
reference on the tasks of the ``search`` suite, :mod:`nos.search.fitness`), sized to
finish in minutes on a 2-core machine. ``--fitness paper`` scores with the paper's
protocol on one task and its presets (``--task cifar10 --preset paper``), and
``--particles 50 --steps 5 --children 7 --init-factor 10`` is the paper's scale.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from nos.cli._args import nonnegative_int, positive_int, task_help
from nos.cli._step import add_step_flags, check_data, step_fields
from nos.errors import NosError
from nos.executors import EXECUTORS
from nos.search.config import FITNESSES
from nos.search.fitness import LR_SCHEMES
from nos.training.registry import PRESETS, get_task, suite_names

#: The small default search: 60 initial candidates, 10 particles x 5 steps x 7 children.
SMALL = {"particles": 10, "steps": 5, "children": 7, "init_factor": 6}
#: The default search with the suite fitness (see the README's Performance section).
SUITE_SMALL = {
    "particles": 6,
    "steps": 4,
    "children": 4,
    "init_factor": 4,
    "tries": 2,
    "rescore_top": 3,
    "rescore_seeds": 3,
}
#: Seeds of the default search's initial population (``--seed-from ""`` for none).
DEFAULT_SEEDS = ("zoo:adam", "zoo:rmsprop", "zoo:nesterov", "zoo:momentum")
#: Flags that define the search; a resumed run keeps its own and refuses new ones.
_SEARCH_FLAGS = (
    "grammar",
    "fitness",
    "suite",
    "lr_scheme",
    "hurdle",
    "task",
    "preset",
    "init_preset",
    "strategy",
    "particles",
    "steps",
    "children",
    "init_factor",
    "tries",
    "budget",
    "seed",
    "no_dedup",
    "elitist",
    "no_reeval",
    "seed_from",
    "rescore_top",
    "rescore_seeds",
    "eval_seeds",
    "timeout",
    "fake",
)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search for optimizers with the particle GA",
        description=__doc__.split("\n\n")[0],
    )
    a = p.add_argument
    a("--grammar", help="grammar name or file (default morgan2024)")
    a(
        "--fitness",
        choices=FITNESSES,
        help="suite (default): LR-tuned Adam as the reference on a suite of tasks, scored by "
        "validation loss; paper: the paper's LR sweep, thresholds and accuracy on one task",
    )
    a(
        "--suite",
        help=f"the suite fitness's suite (default search; known: {', '.join(suite_names())})",
    )
    a(
        "--lr-scheme",
        choices=LR_SCHEMES,
        help="how the suite fitness finds a candidate's LR on its first rung (default matched)",
    )
    a(
        "--hurdle",
        type=_positive_float,
        help="rung 0 passes when log(reference loss / candidate loss) >= -HURDLE (default 1.2)",
    )
    a(
        "--task",
        help=f"the paper fitness's task (default digits), or the suite fitness's only task: "
        f"{task_help()}",
    )
    a(
        "--preset",
        help="fitness preset of the particle phase (default: the task's own; "
        f"known: {', '.join(PRESETS)})",
    )
    a(
        "--init-preset",
        help="cheaper preset for the initial population (default: the "
        "task's own, or --preset when that is given)",
    )
    a("--strategy", help="search algorithm: paper (default)")
    a(
        "--particles",
        type=positive_int,
        help=f"particles n (default {SMALL['particles']}; paper 50)",
    )
    a(
        "--steps",
        type=positive_int,
        help=f"steps K per particle (default {SMALL['steps']}; paper 5)",
    )
    a(
        "--children",
        type=positive_int,
        help=f"children M per step (default {SMALL['children']}; paper 7)",
    )
    a(
        "--init-factor",
        type=positive_int,
        help=f"initial population = factor x particles (default {SMALL['init_factor']}; paper 10)",
    )
    a("--tries", type=positive_int, help="evaluations per child slot when they fail (4)")
    a("--budget", help="hard stop: evaluations (200) or wall time (90s, 10m, 2h)")
    a("--workers", type=positive_int, help="worker processes (default: number of cores)")
    a(
        "--executor",
        choices=tuple(EXECUTORS),
        help="where evaluations run (default local; ray: pip install 'nos[ray]')",
    )
    a(
        "--address",
        help="ray: the cluster, auto or HOST:PORT of its head (default: a Ray "
        "instance started for this run)",
    )
    a("--cpus-per-eval", type=_positive_float, help="ray: CPUs each evaluation holds (1)")
    a(
        "--screen-workers",
        type=nonnegative_int,
        help="driver-side processes that run the integrity check and the keys of new "
        "candidates (default 0: the driver itself); the decisions do not depend on it",
    )
    a(
        "--gpus-per-eval",
        type=_nonnegative_float,
        help="ray: GPUs each evaluation holds, fractions pack several on one GPU (0)",
    )
    a("--seed", type=int, help="random seed of the search (default 0)")
    a("--name", help="run name (default: time, grammar, task and seed)")
    a("--resume", metavar="NAME", help="resume an interrupted run with its own settings")
    a(
        "--force",
        action="store_true",
        help="resume even though nos, torch or the grammar changed since the run began",
    )
    a("--root", default="search_runs", help="folder of the runs (default search_runs)")
    a(
        "--no-dedup",
        action="store_true",
        default=None,
        help="train duplicates across particles again (the reference's behaviour)",
    )
    a(
        "--elitist",
        action="store_true",
        default=None,
        help="move a particle only to a child at least as fit",
    )
    a(
        "--no-reeval",
        action="store_true",
        default=None,
        help="skip the full-fitness re-evaluation of each starting particle",
    )
    a(
        "--seed-from",
        help="comma list of seeds for the initial population: zoo:NAME, an "
        "imported log (.jsonl) or a run",
    )
    a("--rescore-top", type=nonnegative_int, help="re-score the final top k with more seeds (0)")
    a("--rescore-seeds", type=positive_int, help="seeds of the re-scoring (5)")
    a("--eval-seeds", type=positive_int, help="seeds per evaluation during the search (1)")
    a(
        "--timeout",
        type=_positive_float,
        help="wall-clock seconds per evaluation (default: none; the presets bound every "
        "evaluation in steps). A timeout depends on load: it is recorded as retryable and "
        "trained again on --resume",
    )
    a("--top", type=positive_int, default=5, help="hall-of-fame rows to print (5)")
    a("--data-dir", help="folder of the on-disk data sets (cifar10, flowers102)")
    a("--device", help="where evaluations train: cpu (default), cuda, cuda:N or auto")
    add_step_flags(p, workers_per_gpu=True)  # GPU: --precision ... --workers-per-gpu
    a("--no-progress", action="store_true", help="no progress bar")
    a(
        "--no-tensorboard",
        action="store_true",
        help="do not write TensorBoard event files into the run directory",
    )
    a("--fake", help=argparse.SUPPRESS)  # JSON options of the test-only task 'fake'
    p.set_defaults(run=_run_search)


def _config(args: argparse.Namespace) -> Any:
    from nos.search.config import SearchConfig, parse_budget

    fitness = args.fitness
    if fitness is None:
        # a paper preset asks for the paper's protocol; the fake task has no fitness
        fitness = "paper" if args.preset or args.init_preset or args.task == "fake" else "suite"
    values: dict[str, Any] = {"grammar": "morgan2024", "fitness": fitness}
    if fitness == "suite":
        values.update(task="", seed_from=DEFAULT_SEEDS, **SUITE_SMALL)
        for flag in ("preset", "init_preset"):
            if getattr(args, flag) is not None:
                raise NosError(f"--{flag.replace('_', '-')} belongs to --fitness paper")
    else:
        values.update(task="digits", preset="quick", **SMALL)
        for flag in ("suite", "lr_scheme", "hurdle"):
            if getattr(args, flag) is not None:
                raise NosError(f"--{flag.replace('_', '-')} belongs to --fitness suite")
    for flag in (
        "grammar",
        "task",
        "suite",
        "lr_scheme",
        "hurdle",
        "preset",
        "init_preset",
        "strategy",
        "particles",
        "steps",
        "children",
        "init_factor",
        "tries",
        "seed",
        "rescore_top",
        "rescore_seeds",
        "eval_seeds",
    ):
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    if args.timeout is not None:
        values["timeout_s"] = args.timeout
    if args.budget is not None:
        values["budget_evals"], values["budget_s"] = parse_budget(args.budget)
    values["dedup"] = not args.no_dedup
    values["elitist"] = bool(args.elitist)
    values["reeval"] = not args.no_reeval
    if args.seed_from is not None:
        values["seed_from"] = tuple(s.strip() for s in args.seed_from.split(",") if s.strip())
    if args.fake is not None:
        try:
            fake = json.loads(args.fake)
        except ValueError:
            raise NosError(f"--fake must be a JSON object, got {args.fake!r}") from None
        if not isinstance(fake, dict):
            raise NosError(f"--fake must be a JSON object, got {args.fake!r}")
        values["fake"] = fake
    if values["task"] not in ("", "fake"):
        info = get_task(values["task"])
        if not info.presets and not {"search", "holdout"} & set(info.suites):
            raise NosError(
                f"task {info.name} has no fitness preset: it is one of nos bench's unseen "
                "tasks, kept out of every search"
            )
    if fitness == "suite":
        if not values["task"]:
            from nos.training.registry import suite

            suite(values.get("suite", "search"))  # a one-line error for an unknown suite
    elif values["task"] != "fake":
        info = get_task(values["task"])
        if args.preset is None and not info.presets:
            raise NosError(
                f"task {info.name} ({info.kind}) has no preset of the paper's protocol; "
                "use --fitness suite"
            )
        if args.preset is None:
            values["preset"] = info.presets["particle"].name
            if args.init_preset is None:
                values["init_preset"] = info.presets["init"].name
    return SearchConfig(**values)


class _Bar:
    """A tqdm bar on stderr with the best fitness so far (no bar without tqdm or a TTY)."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(
                total=total, unit="eval", file=sys.stderr, dynamic_ncols=True, disable=None
            )

    def __call__(self, info: dict[str, Any]) -> None:
        if self.bar is None:
            return
        n = info["evaluations"]
        if n > self.bar.total:
            self.bar.total = n
        self.bar.n = n
        best = info.get("best")
        self.bar.set_postfix_str(
            f"{info['phase']} best={best:.4f} cached={info['cached']}"
            if best is not None
            else info["phase"],
            refresh=False,
        )
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _device(text: str) -> str:
    """The device's canonical name, checked here so that a bad one fails before any run."""
    if text == "cpu":
        return text  # no torch import for the common case
    from nos.training.device import resolve_device

    return str(resolve_device(text))


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _execution(args: argparse.Namespace, old: Any = None) -> Any:
    """The execution settings from the flags (on resume: over the run's last ones)."""
    from nos.search.session import Execution

    old = old or Execution(executor="local", workers=0)
    executor = args.executor or old.executor
    ray_flags = [
        f for f in ("address", "cpus_per_eval", "gpus_per_eval") if getattr(args, f) is not None
    ]
    if executor != "ray" and ray_flags:
        flag = "--" + ray_flags[0].replace("_", "-")
        raise NosError(f"{flag} applies to --executor ray only")
    values = {
        "executor": executor,
        "workers": args.workers if args.workers is not None else old.workers,
        "screen_workers": (
            args.screen_workers if args.screen_workers is not None else old.screen_workers
        ),
        "data_dir": args.data_dir or old.data_dir,
        "device": _device(args.device) if args.device else old.device,
        "tensorboard": old.tensorboard and not args.no_tensorboard,
        **step_fields(args, old),  # GPU
    }
    if executor == "ray":
        from nos.executors.ray import check_resources

        cpus, gpus = check_resources(
            args.cpus_per_eval if args.cpus_per_eval is not None else old.cpus_per_eval,
            args.gpus_per_eval if args.gpus_per_eval is not None else old.gpus_per_eval,
        )
        # "cuda" inside a Ray worker is the GPU that Ray assigned (CUDA_VISIBLE_DEVICES)
        values.update(
            address=args.address if args.address is not None else old.address,
            cpus_per_eval=cpus,
            gpus_per_eval=gpus,
            device="cuda" if gpus > 0 else "cpu",
        )
    return Execution(**values)


def _run_search(args: argparse.Namespace) -> int:
    from nos.search.session import create_run, execute, open_run

    if args.resume:
        given = [
            f"--{f.replace('_', '-')}" for f in _SEARCH_FLAGS if getattr(args, f, None) is not None
        ]
        if given or args.name:
            drop = ", ".join(given) or "--name"
            raise NosError(f"--resume keeps the run's own settings; drop {drop}")
        store, config, execution = open_run(args.resume, args.root, force=args.force)
        if store.finished():
            store.close()
            print(f"run {args.resume} has already ended; see: nos show {args.resume}")
            return 0
        try:
            execution = _execution(args, execution)
        except NosError:
            store.close()
            raise
        for warning in store.warnings:
            print(f"nos: warning: {warning}", file=sys.stderr)
    else:
        config = _config(args)
        execution = _execution(args)
        execution.pinning()  # GPU: a bad --workers-per-gpu fails before the run exists
        if config.task != "fake":
            check_data(config.task, execution.data_dir)  # missing files: one line, now
        store = create_run(config, execution, name=args.name, root=args.root)
    name = store.path.name
    bar = _Bar(config.nominal_evaluations, enabled=not args.no_progress)
    t0 = time.monotonic()
    where = (
        f"{execution.n_workers} worker(s)"
        if execution.executor != "ray"
        else f"at {execution.address or 'a local instance'}, {execution.cpus_per_eval:g} CPU"
        f" + {execution.gpus_per_eval:g} GPU per evaluation"
    )
    print(
        f"run {store.path} ({'resumed, ' if args.resume else ''}{execution.executor} "
        f"executor, {where})",
        file=sys.stderr,
    )
    try:
        outcome = execute(store, config, execution, progress=bar)
    except KeyboardInterrupt:
        bar.close()
        store.close()
        print(f"nos: interrupted; resume with: nos search --resume {name}", file=sys.stderr)
        return 130
    finally:
        bar.close()
    store.close()
    _print_summary(name, args.root, outcome, time.monotonic() - t0, args.top)
    return 0


def _print_summary(name: str, root: str, outcome: Any, wall_s: float, top: int) -> None:
    from nos.search.report import hall_of_fame
    from nos.search.store import load_run

    data = load_run(name, root)
    hof = hall_of_fame(data.records, top)
    state = outcome.status + (f" ({outcome.stop_reason})" if outcome.stop_reason else "")
    print(
        f"run {name}: {state}; {len(data.evals)} evaluations "
        f"({outcome.trained} trained now, {outcome.replayed} from the record, "
        f"{outcome.cached} answered by dedup) in {wall_s:.1f}s"
    )
    if outcome.timeouts:
        print(
            f"nos: warning: {outcome.timeouts} evaluation(s) ran past --timeout; their slots "
            f"count as failures in this session and are trained again by "
            f"nos search --resume {name}",
            file=sys.stderr,
        )
    if not hof:
        print("no candidate has a fitness yet")
        return
    print(f"hall of fame (top {len(hof)}, unique by fingerprint):")
    print(f"  {'rank':>4}  {'fitness':>7}  {'rescore':>7}  {'size':>4}  candidate")
    for row in hof:
        mark = ">>>>" if row["rank"] == 1 else f"{row['rank']:>4}"
        again = f"{row['rescore']:.4f}" if row["rescore"] is not None else "-"
        print(f"  {mark}  {row['fitness']:.4f}  {again:>7}  {row['size']:>4}  {row['candidate']}")
    print(f"export the winner: nos export {name} --rank 1 -o best_optimizer.py")
