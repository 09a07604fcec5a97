"""Grammar files: load a TOML search-space description and build its typed DEAP primitive set.

A grammar selects operands, tensor ops, decay bases and decay ops from :mod:`nos.symbolic.ops`,
weights them, sets size limits, the momentum modes, the LR-schedule gene, the sampling
shape and the mutation probabilities, and gives each entry its spelling in the reference
implementation's string format (``ref``), which the log reader uses.

The genome is a strongly typed DEAP tree with two types: :class:`Tensor` (update-valued)
and :class:`Schedule` (a scalar function of progress tau). ``decay(schedule, tensor)``
multiplies a tensor sub-expression by a schedule (spec §2.6).

Grammar files are data: they are parsed with ``tomllib`` and checked field by field; nothing
in them is executed.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sympy
from deap import gp

from nos.errors import GrammarError
from nos.symbolic import ops

__all__ = ["Grammar", "OpEntry", "Schedule", "Tensor", "grammar_dirs", "load_grammar"]


class Tensor:
    """DEAP type marker: a tensor-valued sub-expression."""


class Schedule:
    """DEAP type marker: a scalar function of training progress tau."""


SCHED_PREFIX = "s_"  # DEAP needs unique primitive names; schedule ops get this prefix
MUTATION_KINDS = ("op", "connection", "arity", "momentum", "decay", "lr_schedule")
MOMENTUM_MODES = ("none", "mom", "nest")
_TOP = {
    "name",
    "description",
    "limits",
    "moments",
    "momentum",
    "lr_schedule",
    "sampling",
    "mutation",
    "operands",
    "unary",
    "binary",
    "decay",
    "decay_bases",
    "decay_unary",
    "decay_binary",
}
_SAMPLING_COUNTS = {"hidden_nodes", "min_depth", "max_depth"}
_SAMPLING_PROBS = {
    "hidden_unary",
    "root_unary",
    "identity",
    "hidden_input",
    "decay_edge",
    "decay_unary_root",
    "decay_hidden_unary",
    "decay_root_unary",
    "decay_root_hidden",
    "decay_identity",
    "op_insert",
    "lr_none",
    "terminal_prob",
    "decay_prob",
    "schedule_terminal_prob",
}
_DEFAULT_MUTATION = {
    "op": 0.4,
    "connection": 0.3,
    "arity": 0.1,
    "momentum": 0.1,
    "decay": 0.1,
    "lr_schedule": 0.0,
}


@dataclass(frozen=True)
class OpEntry:
    """One selected entry of a grammar table."""

    name: str
    weight: float = 1.0
    ref: str | None = None
    infix: str | None = None
    scale: float = 1.0  # decay bases only


def _dummy(*_args: Any) -> None:  # DEAP wants a callable per primitive; trees are never run
    return None


@dataclass(eq=False)
class Grammar:
    """A loaded, validated search space. Build with :func:`load_grammar`."""

    name: str
    description: str
    path: str
    text: str
    max_depth: int
    max_nodes: int
    decay_depth: int
    moments: dict[str, float]
    momentum: dict[str, float]
    lr_enabled: bool
    lr_max_depth: int
    sampling: dict[str, Any]
    mutation: dict[str, float]
    operands: dict[str, OpEntry]
    unary: dict[str, OpEntry]
    binary: dict[str, OpEntry]
    decay: OpEntry | None
    decay_bases: dict[str, OpEntry]
    decay_unary: dict[str, OpEntry]
    decay_binary: dict[str, OpEntry]
    pset: gp.PrimitiveSetTyped = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pset = gp.PrimitiveSetTyped(self.name, [], Tensor)
        for name in self.unary:
            pset.addPrimitive(_dummy, [Tensor], Tensor, name=name)
        for name in self.binary:
            pset.addPrimitive(_dummy, [Tensor, Tensor], Tensor, name=name)
        if self.decay is not None:
            pset.addPrimitive(_dummy, [Schedule, Tensor], Tensor, name="decay")
        for name in self.decay_unary:
            pset.addPrimitive(_dummy, [Schedule], Schedule, name=SCHED_PREFIX + name)
        for name in self.decay_binary:
            pset.addPrimitive(_dummy, [Schedule, Schedule], Schedule, name=SCHED_PREFIX + name)
        for name in self.operands:
            pset.addTerminal(name, Tensor, name=name)
        for name in self.decay_bases:
            pset.addTerminal(name, Schedule, name=name)
        self.pset = pset
        self.digest = hashlib.sha256(self.text.encode()).hexdigest()[:12]

    # -- lookups ---------------------------------------------------------------------------

    def node(self, internal_name: str) -> gp.Primitive | gp.Terminal:
        """The DEAP primitive or terminal with this internal name."""
        obj = self.pset.mapping[internal_name]
        return obj

    def has_schedules(self) -> bool:
        return self.decay is not None or self.lr_enabled

    def entry(self, node: gp.Primitive | gp.Terminal) -> OpEntry | None:
        """The grammar entry behind a tree node (``None`` for the decay wrapper)."""
        name = node.name
        if node.ret is Schedule:
            if isinstance(node, gp.Terminal):
                return self.decay_bases[name]
            name = name[len(SCHED_PREFIX) :]
            return self.decay_unary.get(name) or self.decay_binary[name]
        if isinstance(node, gp.Terminal):
            return self.operands[name]
        if name == "decay":
            return self.decay
        return self.unary.get(name) or self.binary[name]

    def moment_beta(self, moment: str) -> sympy.Rational:
        return sympy.Rational(str(self.moments[moment]))

    def summary(self) -> str:
        """A few lines describing the space (``nos grammar validate``)."""
        sched = "none"
        if self.has_schedules():
            sched = (
                f"{len(self.decay_bases)} bases, {len(self.decay_unary)} unary and "
                f"{len(self.decay_binary)} binary decay ops, depth <= {self.decay_depth}"
            )
        lines = [
            f"grammar {self.name} ({self.path})",
            f"  operands: {len(self.operands)}  unary ops: {len(self.unary)}  "
            f"binary ops: {len(self.binary)}",
            f"  decays: {'yes' if self.decay else 'no'}; schedules: {sched}",
            f"  momentum: {', '.join(self.momentum)}; LR-schedule gene: "
            f"{'on' if self.lr_enabled else 'frozen to 1'}",
            f"  limits: depth <= {self.max_depth}, nodes <= {self.max_nodes}; "
            f"sampling: {self.sampling.get('method', 'grow')}",
            "  mutation: " + ", ".join(f"{k} {v:g}" for k, v in self.mutation.items() if v),
        ]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- loading


def grammar_dirs() -> list[Path]:
    """Folders searched for ``NAME.toml`` when a grammar is named rather than given as a path."""
    checkout = Path(__file__).resolve().parents[2]  # nos/symbolic/grammar.py -> the checkout
    return [checkout / "grammars", Path(sys.prefix) / "share" / "nos" / "grammars"]


def _resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists() or "/" in str(name_or_path):
        return p
    for d in grammar_dirs():
        if (d / f"{name_or_path}.toml").exists():
            return d / f"{name_or_path}.toml"
    known = sorted({q.stem for d in grammar_dirs() if d.is_dir() for q in d.glob("*.toml")})
    raise GrammarError(f"no grammar named '{name_or_path}' (known: {', '.join(known)})")


_CACHE: dict[tuple[str, float], Grammar] = {}


def load_grammar(name_or_path: str | Path) -> Grammar:
    """Load and validate a grammar by name (``morgan2024``) or path.

    Raises:
      GrammarError: with the file, the line where possible, and the problem.
    """
    path = _resolve(name_or_path)
    try:
        stat = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GrammarError("no such grammar file", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GrammarError(
            f"cannot read grammar file: {exc.__class__.__name__}", path=str(path)
        ) from None
    cache_key = (str(path.resolve()), stat.st_mtime)
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    grammar = parse_grammar(text, str(path))
    _CACHE[cache_key] = grammar
    return grammar


class _Lines:
    """Finds the line of a key inside a TOML section, for error messages."""

    def __init__(self, text: str):
        self.entries: list[tuple[str, str, int]] = []
        section = ""
        for i, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            m = re.match(r"^\[([^\]]+)\]", line)
            if m:
                section = m.group(1).strip()
                self.entries.append((section, "", i))
                continue
            m = re.match(r"^([A-Za-z0-9_\"'-]+)\s*=", line)
            if m:
                self.entries.append((section, m.group(1).strip("\"'"), i))

    def find(self, section: str, key: str = "") -> int | None:
        for sec, k, i in self.entries:
            if sec == section and k == key:
                return i
        for sec, _k, i in self.entries:
            if sec == section:
                return i
        return None


def parse_grammar(text: str, path: str = "<grammar>") -> Grammar:
    """Build a :class:`Grammar` from TOML text; see :func:`load_grammar`."""
    lines = _Lines(text)

    def fail(msg: str, section: str = "", key: str = "") -> GrammarError:
        return GrammarError(msg, path=path, line=lines.find(section, key) if section else None)

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GrammarError(f"invalid TOML: {exc}", path=path) from None

    for key in data:
        if key not in _TOP:
            raise GrammarError(
                f"unknown table or key '{key}'",
                path=path,
                line=lines.find(key) or lines.find("", key),
            )

    def table(name: str) -> dict[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise fail(f"'{name}' must be a table", "", name)
        return value

    def number(section: str, key: str, value: Any, *, lo: float = 0.0) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < lo
        ):
            raise fail(
                f"bad weight {value!r} for '{key}' in [{section}]: "
                f"expected a finite number >= {lo:g}",
                section,
                key,
            )
        return float(value)

    def entries(section: str, known: dict[str, Any], what: str) -> dict[str, OpEntry]:
        out: dict[str, OpEntry] = {}
        for name, spec in table(section).items():
            if name not in known:
                raise fail(f"unknown {what} '{name}' in [{section}]", section, name)
            if not isinstance(spec, dict):
                spec = {"weight": spec}
            extra = set(spec) - {"weight", "ref", "infix", "scale"}
            if extra:
                raise fail(
                    f"unknown field(s) {sorted(extra)} for '{name}' in [{section}]", section, name
                )
            weight = number(section, name, spec.get("weight", 1.0))
            if weight == 0:
                raise fail(
                    f"bad weight 0 for '{name}' in [{section}]: a zero weight makes it "
                    "unreachable; remove the entry instead",
                    section,
                    name,
                )
            ref = spec.get("ref")
            if ref is not None and not isinstance(ref, str):
                raise fail(f"'ref' of '{name}' in [{section}] must be a string", section, name)
            infix = spec.get("infix")
            if infix is not None and infix not in {"+", "-", "*", "/"}:
                raise fail(f"infix of '{name}' must be one of + - * /", section, name)
            scale = number(section, name, spec.get("scale", 1.0))
            out[name] = OpEntry(name, weight, ref, infix, scale)
        return out

    def check_ops(section: str, got: dict[str, OpEntry], arity: int, context: str) -> None:
        for name in got:
            spec = ops.OPS[name]
            if spec.arity != arity:
                kind = "unary" if spec.arity == 1 else "binary"
                raise fail(
                    f"type error: op '{name}' is {kind} but is listed in [{section}]", section, name
                )
            if context not in spec.contexts:
                raise fail(
                    f"type error: op '{name}' cannot act on {context}s (listed in [{section}])",
                    section,
                    name,
                )
            ref = got[name].ref
            holes = ["{0}"] if arity == 1 else ["{0}", "{1}"]
            if ref is not None and not all(h in ref for h in holes):
                raise fail(f"'ref' of '{name}' must contain {' and '.join(holes)}", section, name)

    name = data.get("name", Path(path).stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise fail("'name' must be a short identifier", "", "name")

    limits = table("limits")
    for key in limits:
        if key not in {"max_depth", "max_nodes", "decay_depth"}:
            raise fail(f"unknown limit '{key}'", "limits", key)

    def limit(key: str, default: int, lo: int) -> int:
        value = limits.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise fail(f"limit '{key}' must be an integer >= {lo}", "limits", key)
        return value

    moments = {"v": 0.9, "s": 0.99, "lam": 0.999}
    for key, value in table("moments").items():
        if key not in moments:
            raise fail(f"unknown moment '{key}' (expected v, s or lam)", "moments", key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise fail(f"moment beta '{key}' must be in [0, 1)", "moments", key)
        moments[key] = float(value)

    momentum = {k: number("momentum", k, v) for k, v in table("momentum").items()}
    momentum = momentum or {m: 1.0 for m in MOMENTUM_MODES}
    for mode in momentum:
        if mode not in MOMENTUM_MODES:
            raise fail(
                f"unknown momentum mode '{mode}' (expected none, mom or nest)", "momentum", mode
            )
    if not any(momentum.values()):
        raise fail("at least one momentum mode needs a positive weight", "momentum")

    lr = table("lr_schedule")
    lr_enabled = lr.get("enabled", False)
    if not isinstance(lr_enabled, bool):
        raise fail("lr_schedule.enabled must be true or false", "lr_schedule", "enabled")
    lr_max_depth = lr.get("max_depth", 2)
    if isinstance(lr_max_depth, bool) or not isinstance(lr_max_depth, int) or lr_max_depth < 1:
        raise fail("lr_schedule.max_depth must be an integer >= 1", "lr_schedule", "max_depth")

    sampling = dict(table("sampling"))
    if sampling.get("method", "grow") not in {"grow", "dag"}:
        raise fail("sampling.method must be 'grow' or 'dag'", "sampling", "method")
    for key, value in sampling.items():
        if key == "method":
            continue
        if key in _SAMPLING_COUNTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise fail(f"sampling.{key} must be an integer >= 1", "sampling", key)
        elif key in _SAMPLING_PROBS:
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise fail(f"sampling.{key} must be a probability in [0, 1]", "sampling", key)
        else:
            raise fail(f"unknown sampling parameter '{key}'", "sampling", key)

    mutation = dict(_DEFAULT_MUTATION)
    for key, value in table("mutation").items():
        if key not in MUTATION_KINDS:
            raise fail(
                f"unknown mutation kind '{key}' (expected one of {', '.join(MUTATION_KINDS)})",
                "mutation",
                key,
            )
        mutation[key] = number("mutation", key, value)
    if not any(mutation.values()):
        raise fail("at least one mutation kind needs a positive probability", "mutation")

    operands = entries("operands", ops.OPERANDS, "operand")
    unary = entries("unary", ops.OPS, "op")
    binary = entries("binary", ops.OPS, "op")
    check_ops("unary", unary, 1, "tensor")
    check_ops("binary", binary, 2, "tensor")
    decay_bases = entries("decay_bases", ops.BASES, "decay base")
    decay_unary = entries("decay_unary", ops.OPS, "op")
    decay_binary = entries("decay_binary", ops.OPS, "op")
    check_ops("decay_unary", decay_unary, 1, "schedule")
    check_ops("decay_binary", decay_binary, 2, "schedule")

    decay = None
    if "decay" in data:
        spec = table("decay")
        extra = set(spec) - {"weight", "ref"}
        if extra:
            raise fail(f"unknown field(s) {sorted(extra)} in [decay]", "decay")
        decay = OpEntry(
            "decay", number("decay", "weight", spec.get("weight", 1.0)), spec.get("ref")
        )
        if decay.ref is not None and not ("{0}" in decay.ref and "{1}" in decay.ref):
            raise fail(
                "'ref' of [decay] must contain {0} (schedule) and {1} (tensor)", "decay", "ref"
            )

    if not operands:
        raise fail("no terminal of type tensor: [operands] is empty or missing", "operands")
    schedules_used = decay is not None or lr_enabled
    sched_tables = [
        ("decay_bases", decay_bases),
        ("decay_unary", decay_unary),
        ("decay_binary", decay_binary),
    ]
    if not schedules_used:
        for section, got in sched_tables:
            if got:
                raise fail(
                    f"unreachable primitive '{next(iter(got))}' in [{section}]: the "
                    "grammar has no [decay] and no LR-schedule gene",
                    section,
                    next(iter(got)),
                )
    elif not decay_bases:
        raise fail(
            "no terminal of type schedule: decays or the LR-schedule gene are on but "
            "[decay_bases] is empty",
            "decay_bases",
        )
    if schedules_used and limit("decay_depth", 2, 0) == 0 and (decay_unary or decay_binary):
        section, got = next((s, g) for s, g in sched_tables[1:] if g)
        raise fail(
            f"unreachable primitive '{next(iter(got))}' in [{section}]: decay_depth is 0",
            section,
            next(iter(got)),
        )
    if mutation["lr_schedule"] and not lr_enabled:
        raise fail(
            "mutation.lr_schedule > 0 but the LR-schedule gene is frozen "
            "(lr_schedule.enabled = false)",
            "mutation",
            "lr_schedule",
        )
    if mutation["decay"] and decay is None:
        raise fail("mutation.decay > 0 but the grammar has no [decay]", "mutation", "decay")

    for bname, entry in decay_bases.items():
        lo, hi = _base_range(bname, entry.scale)
        if not (lo >= 0 and hi <= 1):
            raise fail(
                f"decay base '{bname}' takes values in [{lo:.3g}, {hi:.3g}], outside [0, 1]",
                "decay_bases",
                bname,
            )

    return Grammar(
        name=name,
        description=str(data.get("description", "")),
        path=path,
        text=text,
        max_depth=limit("max_depth", 12, 1),
        max_nodes=limit("max_nodes", 48, 1),
        decay_depth=limit("decay_depth", 2, 0),
        moments=moments,
        momentum=momentum,
        lr_enabled=lr_enabled,
        lr_max_depth=lr_max_depth,
        sampling=sampling,
        mutation=mutation,
        operands=operands,
        unary=unary,
        binary=binary,
        decay=decay,
        decay_bases=decay_bases,
        decay_unary=decay_unary,
        decay_binary=decay_binary,
    )


#: Steps on which decay schedules are checked to stay in [0, 1] (spec §2.6: T = 100).
SCHEDULE_STEPS = 100


@functools.cache
def base_values(name: str, scale: float = 1.0) -> np.ndarray:
    """A scaled decay base at t = 0..99 with T = 100 (read-only), the grid of spec §2.6."""
    # lambdify compiles our own sympy definition (never user text) to a numpy function
    fn = sympy.lambdify((ops.SYM["tau"], ops.INV_T), ops.BASES[name].expr, modules="numpy")
    tau = np.arange(SCHEDULE_STEPS, dtype=float) / SCHEDULE_STEPS
    values = (
        np.broadcast_to(np.asarray(fn(tau, 1 / SCHEDULE_STEPS), dtype=float), tau.shape) * scale
    )
    values.flags.writeable = False
    return values


def _base_range(name: str, scale: float) -> tuple[float, float]:
    values = base_values(name, scale)
    return float(values.min()), float(values.max())
