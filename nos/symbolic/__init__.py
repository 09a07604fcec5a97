"""The symbolic core: everything about candidates that needs no torch.

* :mod:`~nos.symbolic.ops` - the op table (operands, ops, decay bases);
* :mod:`~nos.symbolic.grammar` - TOML grammar files -> a validated :class:`Grammar`;
* :mod:`~nos.symbolic.genome` - :class:`Candidate`: typed DEAP trees and genes;
* :mod:`~nos.symbolic.text` - the canonical text's safe reader;
* :mod:`~nos.symbolic.phenotype` - trees -> sympy expressions;
* :mod:`~nos.symbolic.emit` - the one sympy -> source emitter (numpy runtime here);
* :mod:`~nos.symbolic.schedules` - the base warmup-cosine LR and cyclical momentum;
* :mod:`~nos.symbolic.probes`, :mod:`~nos.symbolic.check` - the integrity check;
* :mod:`~nos.symbolic.keys` - canonical key and fingerprint (dedup);
* :mod:`~nos.symbolic.sample`, :mod:`~nos.symbolic.mutate` - random and mutated candidates;
* :mod:`~nos.symbolic.display` - pretty print, LaTeX, tree view.

May import: :mod:`nos.errors`, numpy, scipy, sympy and DEAP; never torch
(``tests/test_layering.py``), so that it loads fast in the driver and in tools.
"""
