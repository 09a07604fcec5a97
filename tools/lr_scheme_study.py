"""Which LR scheme of the suite fitness predicts how optimizers rank on tasks it never saw?

For a fixed set of optimizers (zoo entries and one-mutation variants of Adam, RMSProp and
Nesterov in the morgan2024 grammar), this measures side by side in one run:

* the suite fitness on the ``search`` suite under each LR scheme (``matched``,
  ``decades``, ``paper``; see :mod:`nos.search.fitness`), and the rung-0 score alone;
* a bench-style score on validation tasks outside the search suite (``tools/transfer.py``:
  the LR tuned per task over a half-decade grid, paired seeds, the test split), as the
  mean clipped log ratio of test losses to tuned Adam;

and prints, per scheme, the Spearman and Kendall rank correlations between the fitness and
the validation score, the training steps per evaluation and the share stopped at rung 0::

    python tools/lr_scheme_study.py --workers 2 --trials 8 --seeds 2 -o study.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transfer import REFERENCE, compare, run_batches, transfer

ZOO = [
    "zoo:adam",
    "zoo:adamw",
    "zoo:rmsprop",
    "zoo:lion",
    "zoo:momentum",
    "zoo:nesterov",
    "zoo:sgd",
    "zoo:addsign",
    "zoo:powersign",
    "zoo:opt1",
    "zoo:opt3",
    "zoo:opt10",
]
PARENTS = ["zoo:adam", "zoo:rmsprop", "zoo:nesterov"]
VALIDATION = ["gratings", "forecast", "checkerboard", "quadratic"]
SCHEMES = ("matched", "decades", "paper")


def mutants(n: int, seed: int) -> list[tuple[str, bool]]:
    """``n`` distinct one-mutation children of the parents that pass the integrity check."""
    from nos.search.seeds import resolve_seeds
    from nos.symbolic.check import check_candidate
    from nos.symbolic.grammar import load_grammar
    from nos.symbolic.mutate import MutationError, mutate_candidate

    grammar = load_grammar("morgan2024")
    parents = resolve_seeds(PARENTS, grammar)
    rnd = random.Random(seed)
    out: dict[str, bool] = {}
    while len(out) < n:
        parent = parents[len(out) % len(parents)]
        try:
            child = mutate_candidate(parent, rnd).child
        except MutationError:
            continue
        check = check_candidate(child)
        if check.passed and child.text not in out:
            out[child.text] = check.flip
    return list(out.items())


def rankdata(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = rankdata(a), rankdata(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va and vb else 0.0


def kendall(a: list[float], b: list[float]) -> float:
    n, s = len(a), 0
    for i in range(n):
        for j in range(i + 1, n):
            x, y = a[i] - a[j], b[i] - b[j]
            s += (x > 0) - (x < 0) if y > 0 else ((x < 0) - (x > 0) if y < 0 else 0)
    return 2 * s / (n * (n - 1)) if n > 1 else 0.0


def fitness_scores(
    optimizers: list[tuple[str, bool]], workers: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Per scheme: each optimizer's suite fitness (rung 0 and 1), steps and status."""
    from nos.search.fitness import fitness_for
    from nos.search.suite_jobs import candidate_payload, compute_reference

    def batches(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return run_batches(payloads, workers)

    out: dict[str, dict[str, Any]] = {}
    tuned = None
    for scheme in SCHEMES:
        spec = fitness_for("search", lr_scheme=scheme)
        if tuned is None:
            ref = compute_reference(spec, [seed], [seed], batches)
            tuned = ref
        else:  # the tuning of Adam per task is the same; only rung 0 differs by scheme
            ref = compute_reference(spec.replace(tasks=spec.tasks[:1]), [seed], [seed], batches)
            ref.tasks = tuned.tasks
            ref.fitness = spec.to_dict()
        payloads = [
            candidate_payload(
                candidate=text,
                grammar="morgan2024",
                flip=flip,
                seeds=[seed],
                rung0_seed=seed,
                spec=spec,
                reference=ref,
                full=True,
            )
            for text, flip in optimizers
        ]
        out[scheme] = {
            text: result for (text, _), result in zip(optimizers, batches(payloads), strict=True)
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=12)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output")
    args = parser.parse_args(argv)
    started = time.monotonic()
    optimizers = [(z, False) for z in ZOO] + mutants(args.mutants, args.seed)
    fitness = fitness_scores(optimizers, args.workers, args.seed)
    labelled = [(text, "morgan2024", flip, text) for text, flip in optimizers]
    if REFERENCE not in dict(optimizers):
        labelled.append((REFERENCE, "morgan2024", False, REFERENCE))
    held = transfer(
        labelled, VALIDATION, trials=args.trials, seeds=args.seeds, workers=args.workers
    )
    table = compare(held, VALIDATION)
    names = [text for text, _ in optimizers]
    validation = [table[n]["score"] if n in table else -1.0 for n in names]
    print(
        f"{len(names)} optimizers, validation tasks {', '.join(VALIDATION)} "
        f"({args.trials} LR trials, {args.seeds} seeds), {time.monotonic() - started:.0f} s"
    )
    summary: dict[str, Any] = {}
    for scheme in SCHEMES:
        res = fitness[scheme]
        scores = [float(res[n]["fitness"]) if res[n].get("status") == "ok" else -2.0 for n in names]
        rung0 = [float(res[n].get("suite", {}).get("rung0_score", -2.0) or -2.0) for n in names]
        steps = statistics.fmean(int(res[n].get("steps") or 0) for n in names)
        steps0 = statistics.fmean(
            int((res[n].get("suite") or {}).get("steps_per_rung", [0])[0]) for n in names
        )
        stopped = sum(res[n].get("status") != "ok" for n in names)
        summary[scheme] = {
            "spearman": spearman(scores, validation),
            "kendall": kendall(scores, validation),
            "spearman_rung0": spearman(rung0, validation),
            "steps": steps,
            "steps_rung0": steps0,
            "stopped": stopped,
        }
        s = summary[scheme]
        print(
            f"{scheme:>8}: Spearman {s['spearman']:+.3f}, Kendall {s['kendall']:+.3f} "
            f"(rung 0 alone {s['spearman_rung0']:+.3f}); {s['steps']:.0f} steps per "
            f"evaluation ({s['steps_rung0']:.0f} on rung 0); {stopped} of {len(names)} "
            "stopped at rung 0"
        )
    for n, v in zip(names, validation, strict=True):
        fits = " ".join(f"{fitness[s][n].get('fitness') or float('nan'):+.3f}" for s in SCHEMES)
        print(f"  validation {v:+.3f}  fitness {fits}  {n}")
    if args.output:
        Path(args.output).write_text(
            json.dumps({"summary": summary, "fitness": fitness, "validation": table}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
