from __future__ import annotations

import pytest

from nos.cli import main
from nos.errors import GrammarError
from nos.symbolic import ops
from nos.symbolic.grammar import Schedule, Tensor, load_grammar, parse_grammar

BASE = """
name = "t"
[operands]
g = {}
v_hat = {}
[unary]
neg = {}
[binary]
add = { infix = "+" }
[decay]
[decay_bases]
a1 = {}
a2 = {}
[decay_unary]
erf = {}
"""


def test_morgan2024_is_the_papers_space(morgan):
    assert len(morgan.operands) == 20
    assert len(morgan.unary) == 25  # plus identity, which is the absence of a node
    assert len(morgan.binary) == 10
    assert sorted(morgan.decay_bases, key=lambda n: int(n[1:])) == [f"a{i}" for i in range(1, 15)]
    assert len(morgan.decay_unary) == 12  # plus identity: the paper's 13
    assert len(morgan.decay_binary) == 7
    assert set(morgan.momentum) == {"none", "mom", "nest"}
    assert morgan.moments == {"v": 0.9, "s": 0.99, "lam": 0.999}
    assert morgan.mutation["op"] == 0.4 and morgan.mutation["connection"] == 0.3
    assert not morgan.lr_enabled
    # typed primitive set: decay takes a schedule and a tensor
    decay = morgan.pset.mapping["decay"]
    assert decay.args == [Schedule, Tensor] and decay.ret is Tensor
    assert len(morgan.pset.terminals[Schedule]) == 14
    assert all(o.ref for o in morgan.operands.values())


@pytest.mark.parametrize("name", ["morgan2024", "bello2017", "tiny"])
def test_shipped_grammars_validate(name, capsys):
    assert main(["grammar", "validate", name]) == 0
    assert "ok" in capsys.readouterr().out


def test_base_parses():
    g = parse_grammar(BASE, "t.toml")
    assert set(g.operands) == {"g", "v_hat"} and g.decay is not None


@pytest.mark.parametrize(
    ("edit", "message", "line"),
    [
        (("neg = {}", "frobnicate = {}"), "unknown op 'frobnicate'", 7),
        (("neg = {}", "add = {}"), "type error: op 'add' is binary", 7),
        (("erf = {}", "drop50 = {}"), "type error: op 'drop50' cannot act on schedules", 15),
        (("neg = {}", "neg = { weight = -1 }"), "bad weight -1", 7),
        (("neg = {}", 'neg = { weight = "x" }'), "bad weight 'x'", 7),
        (("neg = {}", "neg = { weight = nan }"), "bad weight nan", 7),
        (("neg = {}", "neg = { weight = 0 }"), "bad weight 0", 7),
        (("a2 = {}", "a2 = { scale = 2.0 }"), "decay base 'a2' takes values in [0, 1.98]", 13),
        (("[decay]\n", ""), "unreachable primitive 'a1' in [decay_bases]", None),
        (("g = {}\nv_hat = {}", ""), "no terminal of type tensor", None),
        (("a1 = {}\na2 = {}", ""), "no terminal of type schedule", None),
        (("[unary]", "[unary_ops]"), "unknown table or key 'unary_ops'", 6),
        (("g = {}", "gradient = {}"), "unknown operand 'gradient'", 4),
        (
            ("[decay]\n", "[decay]\n[sampling]\nidentity = 1.5\n"),
            "sampling.identity must be a probability",
            12,
        ),
        (("[decay]\n", "[decay]\n[sampling]\nfrob = 1\n"), "unknown sampling parameter", 12),
    ],
)
def test_bad_grammars_are_rejected_with_line(edit, message, line):
    old, new = edit
    assert old in BASE
    text = BASE.replace(old, new, 1)
    with pytest.raises(GrammarError) as info:
        parse_grammar(text, "bad.toml")
    err = info.value
    assert message in str(err)
    assert str(err).startswith("bad.toml")
    assert "\n" not in str(err)
    if line is not None:
        assert err.line == line, str(err)


def test_invalid_toml_reports_position():
    with pytest.raises(GrammarError, match=r"bad.toml: invalid TOML: .*line 2"):
        parse_grammar('name = "x"\n[operands\n', "bad.toml")


def test_validate_cli_one_line_error(tmp_path, capsys):
    path = tmp_path / "g.toml"
    path.write_text(BASE.replace("neg = {}", "frobnicate = {}"))
    assert main(["grammar", "validate", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err == f"nos: error: {path}:7: unknown op 'frobnicate' in [unary]"


def test_missing_grammar_file(capsys):
    assert main(["grammar", "validate", "/nonexistent/g.toml"]) == 1
    assert "no such grammar file" in capsys.readouterr().err
    assert main(["grammar", "validate", "no_such_grammar"]) == 1
    assert "no grammar named 'no_such_grammar'" in capsys.readouterr().err


def test_load_by_path_equals_by_name(morgan):
    g = load_grammar(morgan.path)
    assert g.name == "morgan2024" and g.digest == morgan.digest


def test_decay_bases_in_unit_interval():
    # spec §2.6 values at T = 100: a13 falls from about 0.95 to 0, a14 rises to 0.95
    import math

    import sympy

    tau, inv_t = ops.SYM["tau"], ops.INV_T
    a13 = sympy.lambdify((tau, inv_t), ops.BASES["a13"].expr, "math")
    assert math.isclose(a13(0.0, 0.01), 0.95 * 0.99 / (0.05 + 0.95 * 0.99))
    assert math.isclose(a13(0.99, 0.01), 0.0, abs_tol=1e-12)
