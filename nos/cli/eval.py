"""`nos eval OPTIMIZER ...`: compare optimizers on a proxy task with the fitness protocol.

Each optimizer (candidate text, ``zoo:NAME`` or ``torch:NAME``) is evaluated once per seed
with :func:`nos.training.protocol.evaluate_factory` (spec §5.3 protocol, the preset's budgets). The
command prints a table of the best validation accuracy (mean ± std over the seeds that
finished), the final-run steps until the validation accuracy first reached the target, and
the tuned LR; it writes ``learning_curves.png`` and ``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from nos.cli._args import positive_int, task_help
from nos.cli._step import CHANNELS_LAST, add_step_flags, step_fields
from nos.errors import NosError
from nos.training.registry import PRESETS, get_preset, get_task


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="compare optimizers on a proxy task")
    p.add_argument(
        "optimizers",
        nargs="+",
        metavar="OPTIMIZER",
        help="candidate text, zoo:NAME or torch:NAME (adam, sgd, ...)",
    )
    p.add_argument("--grammar", default="morgan2024", help="grammar of candidate texts")
    p.add_argument(
        "--task", default=None, metavar="TASK", help=f"{task_help()} (default: the preset's)"
    )
    p.add_argument(
        "--preset",
        default=None,
        help=f"{', '.join(PRESETS)} (default: the task's particle-phase preset, or quick)",
    )
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--out", default="nos-eval", help="output directory (default nos-eval)")
    p.add_argument(
        "--target",
        type=float,
        default=None,
        help="validation accuracy for 'steps to target' (default: the preset's)",
    )
    p.add_argument("--flip", action="store_true", help="negate candidate updates")
    p.add_argument("--data-dir", default=None, help="data directory (default $NOS_DATA)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per evaluation")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    add_step_flags(p)
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch intra-op threads (default 1: the proxy networks are small)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a preset field, e.g. final_epochs=10",
    )
    p.set_defaults(run=_run_eval)


def _overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise NosError(f"--set expects FIELD=VALUE, got {item!r}")
        try:
            value: Any = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                value = {"true": True, "false": False}.get(text.lower(), text)
        out[key.strip()] = value
    return out


def _factory(spec: str, grammar: str, flip: bool, compile: bool = False) -> Any:
    from nos.optim.factories import factory_for

    try:
        return factory_for(spec, grammar, flip=flip, compile=compile)
    except ImportError as exc:
        raise NosError(f"{spec}: needs a module this installation lacks ({exc})") from None
    except (KeyError, LookupError) as exc:
        raise NosError(f"{spec}: unknown name ({exc})") from None


def _summary(spec: str, results: list[Any], target: float) -> dict[str, Any]:
    ok = [r for r in results if r.status == "ok"]
    fits = [r.fitness for r in ok]
    steps = [s for r in ok for s in r.steps_to(target) if s is not None]
    lrs = [r.lr for r in ok if r.lr is not None]
    return {
        "optimizer": spec,
        "seeds": len(results),
        "ok": len(ok),
        "statuses": dict(Counter(r.status for r in results)),
        "mean": statistics.fmean(fits) if fits else None,
        "std": statistics.pstdev(fits) if len(fits) > 1 else (0.0 if fits else None),
        "steps_to_target": statistics.median(steps) if steps else None,
        "reached_target": len(steps),
        "lr": Counter(lrs).most_common(1)[0][0] if lrs else None,
    }


def _table(rows: list[dict[str, Any]], target: float) -> str:
    header = ["optimizer", "ok", "best val acc", f"steps to {target:g}", "tuned lr"]
    lines = []
    for row in rows:
        acc = "-" if row["mean"] is None else f"{row['mean']:.4f} ± {row['std']:.4f}"
        steps = (
            "-"
            if row["steps_to_target"] is None
            else f"{row['steps_to_target']:g} ({row['reached_target']}/{row['ok']})"
        )
        lr = "-" if row["lr"] is None else f"{row['lr']:g}"
        name = row["optimizer"] if len(row["optimizer"]) <= 40 else row["optimizer"][:37] + "..."
        lines.append([name, f"{row['ok']}/{row['seeds']}", acc, steps, lr])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(line.rstrip() for line in out)


def _plot(path: Path, curves: dict[str, list[Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for spec, results in curves.items():
        runs = [r for r in results if r.curves and r.curves[0]]
        if not runs:
            continue
        length = max(len(r.curves[0]) for r in runs)
        # Runs that stopped early end there: pad with NaN and average what remains.
        grid = np.full((len(runs), length), np.nan)
        for i, r in enumerate(runs):
            grid[i, : len(r.curves[0])] = r.curves[0]
        steps = np.arange(1, length + 1) * runs[0].steps_per_epoch
        counts = np.sum(~np.isnan(grid), axis=0)
        mean = np.nansum(grid, axis=0) / np.maximum(counts, 1)
        low = np.where(
            counts > 0, np.nanmin(np.where(np.isnan(grid), np.inf, grid), axis=0), np.nan
        )
        high = np.where(
            counts > 0, np.nanmax(np.where(np.isnan(grid), -np.inf, grid), axis=0), np.nan
        )
        label = spec if len(spec) <= 40 else spec[:37] + "..."
        (line,) = ax.plot(steps, mean, label=label)
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("final-run steps")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _run_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nos.training.device import resolve_device
    from nos.training.protocol import evaluate_factory
    from nos.training.spec import StepOptions
    from nos.training.tasks import worker_init

    # The proxy networks are small: extra intra-op threads only contend for the cores.
    worker_init(threads=args.threads)

    if args.preset is not None:
        preset = get_preset(args.preset)
    elif args.task is not None:
        if not get_task(args.task).presets:
            raise NosError(f"task {args.task} has no fitness preset (bench it: nos bench --tasks)")
        preset = get_task(args.task).presets["particle"]
    else:
        preset = get_preset("quick")
    task = get_task(args.task or preset.task).name
    device = str(resolve_device(args.device))
    if args.timeout is not None and not args.timeout > 0:
        raise NosError("--timeout must be positive")
    overrides = _overrides(args.overrides)
    target = preset.target if args.target is None else args.target
    if not 0.0 < target <= 1.0:
        raise NosError(f"--target must be an accuracy in (0, 1], got {target:g}")
    fields = step_fields(args)
    batch_sweep = fields.pop("batch_sweep")
    fields["channels_last"] = CHANNELS_LAST[fields["channels_last"]]
    options = StepOptions(**fields)
    factories = {
        spec: _factory(spec, args.grammar, args.flip, options.compile_update)
        for spec in args.optimizers
    }
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NosError(f"cannot create output directory {out}: {exc.strerror}") from None

    seeds = list(range(args.seeds))
    results: dict[str, list[Any]] = {spec: [] for spec in factories}
    with tqdm(
        total=len(factories) * len(seeds),
        desc="nos eval",
        unit="run",
        file=sys.stderr,
        disable=None,
    ) as bar:
        for spec, factory in factories.items():
            for seed in seeds:
                bar.set_postfix_str(f"{spec[:24]} seed {seed}")
                results[spec].append(
                    evaluate_factory(
                        factory,
                        task,
                        preset,
                        seed,
                        timeout_s=args.timeout,
                        data_dir=args.data_dir,
                        device=device,
                        overrides=overrides,
                        batch_sweep=batch_sweep,
                        options=options,
                    )
                )
                bar.update()

    rows = [_summary(spec, rs, target) for spec, rs in results.items()]
    print(f"task {task}, preset {preset.name}, {len(seeds)} seed(s)")
    print(_table(rows, target))
    _plot(out / "learning_curves.png", results, f"{task} ({preset.name} preset)")
    config = next(iter(results.values()))[0].config
    report = {
        "task": task,
        "preset": preset.name,
        "seeds": seeds,
        "target": target,
        "config": config,
        "optimizers": [
            {**row, "runs": [r.to_dict() for r in results[row["optimizer"]]]} for row in rows
        ],
    }
    text = json.dumps(report, indent=1, default=_json_default)
    (out / "results.json").write_text(text + "\n")
    print(f"wrote {out / 'learning_curves.png'} and {out / 'results.json'}")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
