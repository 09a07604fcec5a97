"""Slurm batch scripts that start a Ray cluster and run ``nos search`` on it.

:func:`render_sbatch` returns the text of an ``sbatch`` script for ``nodes`` machines: the
first node starts the Ray head, the others join it as workers (one ``srun`` step each,
kept running with ``--block``), and the batch script itself runs the search's driver on
the head node with ``nos search --executor ray --address auto`` (``RAY_ADDRESS`` names the
head). The script is idempotent: when the run directory exists it resumes the run
(``nos search --resume NAME``), so the same script, submitted again after the job's time
limit, goes on where the killed job stopped.

:func:`main` is the command-line entry point (``--dry-run`` prints the script instead of
submitting it with ``sbatch``); bad arguments give a one-line ``nos: error:`` and status 1.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from nos.errors import NosError

__all__ = ["main", "render_sbatch"]

#: Slurm's time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_TIME = re.compile(r"\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PARTITION = re.compile(r"[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*")
#: Flags of ``nos search`` that the script sets itself.
_OWN_FLAGS = (
    "--executor",
    "--address",
    "--resume",
    "--name",
    "--root",
    "--cpus-per-eval",
    "--gpus-per-eval",
    "--no-progress",
)
#: Seconds the script waits for the Ray head to answer before it gives up.
HEAD_WAIT_S = 120


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise NosError(message)


def _flag_of(arg: str) -> str:
    return arg.split("=", 1)[0]


def render_sbatch(
    *,
    nodes: int,
    cpus_per_node: int,
    time_limit: str,
    name: str,
    search_args: Sequence[str] = (),
    gpus_per_node: int = 0,
    partition: str | None = None,
    account: str | None = None,
    cpus_per_eval: float = 1.0,
    gpus_per_eval: float = 0.0,
    root: str = "search_runs",
    port: int = 6379,
    setup: Sequence[str] = (),
    exclusive: bool = False,
) -> str:
    """The text of an ``sbatch`` script running ``nos search`` on a Ray cluster.

    Args:
      nodes, cpus_per_node, gpus_per_node: the allocation (one Ray node per machine).
      time_limit: Slurm's ``--time`` (``90``, ``12:00:00``, ``2-00:00:00``...).
      name: the run's name; the job's name and log file are derived from it.
      search_args: further ``nos search`` arguments (``--task cifar10 --seed 3``...), each
        shell-quoted in the script.
      partition, account: Slurm's ``--partition`` and ``--account`` (omitted if ``None``).
      cpus_per_eval, gpus_per_eval: the resources each evaluation declares.
      root: the runs' folder; on a file system that every node and a later job can read.
      port: the Ray head's port.
      setup: shell lines run first (``module load ...``, ``source venv/bin/activate``),
        written as given.
      exclusive: ask for whole nodes (two Ray clusters must not share a node's ports).
    """
    _check(nodes >= 1, f"--nodes must be >= 1, got {nodes}")
    _check(cpus_per_node >= 1, f"--cpus-per-node must be >= 1, got {cpus_per_node}")
    _check(gpus_per_node >= 0, f"--gpus-per-node must be >= 0, got {gpus_per_node}")
    _check(
        bool(_TIME.fullmatch(time_limit)),
        f"--time {time_limit!r} is not a Slurm time (minutes, HH:MM:SS or D-HH:MM:SS)",
    )
    _check(
        bool(_NAME.fullmatch(name)), f"--name {name!r}: use letters, digits, '.', '_' and '-' only"
    )
    for label, value in (("--partition", partition), ("--account", account)):
        _check(
            value is None or bool(_PARTITION.fullmatch(value)),
            f"{label} {value!r}: use letters, digits, '.', '_', '-' (and ',') only",
        )
    _check(0 < port < 65536, f"--port must be in 1..65535, got {port}")
    _check(cpus_per_eval > 0, f"--cpus-per-eval must be positive, got {cpus_per_eval:g}")
    _check(gpus_per_eval >= 0, f"--gpus-per-eval must be >= 0, got {gpus_per_eval:g}")
    _check(
        cpus_per_eval <= cpus_per_node,
        f"--cpus-per-eval {cpus_per_eval:g} is more than a node's {cpus_per_node} CPUs",
    )
    _check(
        gpus_per_eval == 0 or gpus_per_node > 0,
        f"--gpus-per-eval {gpus_per_eval:g} needs --gpus-per-node",
    )
    _check(
        gpus_per_eval <= gpus_per_node,
        f"--gpus-per-eval {gpus_per_eval:g} is more than a node's {gpus_per_node} GPUs",
    )
    _check(all("\n" not in line for line in setup), "--setup lines must be single lines")
    for arg in search_args:
        _check(
            _flag_of(arg) not in _OWN_FLAGS,
            f"{_flag_of(arg)} is set by the script; give it to the renderer, not to nos search",
        )

    q = shlex.quote
    directives = [
        f"--job-name={name}",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={cpus_per_node}",
        f"--time={time_limit}",
        f"--output={name}-%j.out",
    ]
    if gpus_per_node:
        directives.append(f"--gres=gpu:{gpus_per_node}")
    if partition:
        directives.append(f"--partition={partition}")
    if account:
        directives.append(f"--account={account}")
    if exclusive:
        directives.append("--exclusive")
    ray_flags = f"--num-cpus={cpus_per_node} --num-gpus={gpus_per_node}"
    run_flags = (
        f"--executor ray --address auto --root {q(root)} "
        f"--cpus-per-eval {cpus_per_eval:g} --gpus-per-eval {gpus_per_eval:g} "
        "--no-progress"
    )
    fresh = shlex.join(["nos", "search", *search_args, "--name", name])
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives), ""]
    lines += [
        f"# nos search on a Ray cluster of {nodes} node(s); submit it again to resume the run",
        "set -euo pipefail",
        *setup,
        "",
        'nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))',
        "head=${nodes[0]}",
        'head_ip=$(srun --nodes=1 --ntasks=1 -w "$head" hostname --ip-address '
        "| awk '{print $1}')",
        f"port={port}",
        'export RAY_ADDRESS="$head_ip:$port"',
        "cleanup() { kill $(jobs -p) 2>/dev/null || true; }",
        "trap cleanup EXIT",
        "",
        "# the head: Ray's scheduler and one node's workers",
        'srun --nodes=1 --ntasks=1 -w "$head" ray start --head --node-ip-address="$head_ip" \\',
        f'    --port="$port" {ray_flags} --block &',
        f"for _ in $(seq {HEAD_WAIT_S // 2}); do",
        '    ray status --address="$RAY_ADDRESS" >/dev/null 2>&1 && break',
        "    sleep 2",
        "done",
        'ray status --address="$RAY_ADDRESS" >/dev/null 2>&1 || '
        f'{{ echo "Ray head did not start within {HEAD_WAIT_S}s" >&2; exit 1; }}',
    ]
    if nodes > 1:
        lines += [
            "",
            "# the other nodes join the head (nos search sees them as they arrive)",
            f'srun --nodes={nodes - 1} --ntasks={nodes - 1} --exclude="$head" \\',
            f'    ray start --address="$RAY_ADDRESS" {ray_flags} --block &',
        ]
    lines += [
        "",
        "# the driver: the only writer of the run; a killed job is resumed from its record",
        f"if [ -f {q(f'{root}/{name}/config.toml')} ]; then",
        f"    nos search --resume {q(name)} {run_flags}",
        "else",
        f"    {fresh} {run_flags}",
        "fi",
        "",
    ]
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (raised, so that :func:`main` returns 1)."""

    def error(self, message: str) -> NoReturn:
        raise NosError(message)


def build_parser(prog: str = "nos cluster slurm") -> argparse.ArgumentParser:
    p = _Parser(
        prog=prog,
        description="Write (and submit) a Slurm script that runs nos "
        "search on a Ray cluster of the allocated nodes.",
        epilog="Arguments after -- go to nos search, e.g. -- --task cifar10 "
        "--data-dir /shared/data --seed 1",
    )
    a = p.add_argument
    a("--nodes", type=int, required=True, help="machines (one Ray node each)")
    a("--cpus-per-node", type=int, required=True, help="CPUs of each machine for Ray")
    a("--gpus-per-node", type=int, default=0, help="GPUs of each machine (0)")
    a("--time", dest="time_limit", required=True, help="Slurm time limit, e.g. 12:00:00")
    a("--name", required=True, help="run name (the job resumes it when submitted again)")
    a("--partition", help="Slurm partition")
    a("--account", help="Slurm account")
    a("--cpus-per-eval", type=float, default=1.0, help="CPUs each evaluation holds (1)")
    a("--gpus-per-eval", type=float, default=0.0, help="GPUs each evaluation holds (0)")
    a("--root", default="search_runs", help="folder of the runs, on a shared file system")
    a("--port", type=int, default=6379, help="the Ray head's port (6379)")
    a(
        "--setup",
        action="append",
        default=[],
        metavar="LINE",
        help="shell line run first, e.g. 'source ~/venv/bin/activate' (repeatable)",
    )
    a("--exclusive", action="store_true", help="ask for whole nodes")
    a("-o", "--output", help="where to write the script (default: a temporary file)")
    a("--dry-run", action="store_true", help="print the script; do not call sbatch")
    return p


def _split(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def main(argv: Sequence[str] | None = None) -> int:
    """Render the script; print it (``--dry-run``) or write it and run ``sbatch`` on it."""
    own, search_args = _split(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(own)
        text = render_sbatch(
            nodes=args.nodes,
            cpus_per_node=args.cpus_per_node,
            time_limit=args.time_limit,
            name=args.name,
            search_args=search_args,
            gpus_per_node=args.gpus_per_node,
            partition=args.partition,
            account=args.account,
            cpus_per_eval=args.cpus_per_eval,
            gpus_per_eval=args.gpus_per_eval,
            root=args.root,
            port=args.port,
            setup=args.setup,
            exclusive=args.exclusive,
        )
        if args.output:
            try:
                Path(args.output).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise NosError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        if args.dry_run:
            if not args.output:
                print(text, end="")
            return 0
        return _submit(text, args.output)
    except NosError as exc:
        print(f"nos: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


def _submit(text: str, path: str | None) -> int:
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise NosError(
            "sbatch not found: is this a Slurm login node? (--dry-run prints the script)"
        )
    if path is None:
        with tempfile.NamedTemporaryFile(
            "w", suffix=".sbatch", delete=False, encoding="utf-8"
        ) as f:
            f.write(text)
            path = f.name
    done = subprocess.run([sbatch, path], capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise NosError(f"sbatch {path}: {reason}")
    print(done.stdout.strip() or f"submitted {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
