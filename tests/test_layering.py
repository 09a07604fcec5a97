"""The symbolic core stays free of torch: it must import fast in worker processes."""

from __future__ import annotations

import subprocess
import sys

SYMBOLIC = [
    "nos", "nos.ops", "nos.grammar", "nos.candidate", "nos.phenotype", "nos.refparse",
    "nos.logs", "nos.sample", "nos.mutate", "nos.emit", "nos.schedules", "nos.check",
    "nos.keys", "nos.display", "nos.cli", "nos.store", "nos.executors", "nos.search",
    "nos.search.config", "nos.search.engine", "nos.search.driver", "nos.search.report",
]


def test_symbolic_core_does_not_import_torch():
    code = (
        "import importlib, sys\n"
        f"for m in {SYMBOLIC!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
