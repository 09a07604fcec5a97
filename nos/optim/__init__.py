"""The torch runtime of candidates.

* :mod:`~nos.optim.runtime` - the torch spelling of the emitter (foreach / flat steps,
  compile);
* :mod:`~nos.optim.symbolic_optimizer` - :class:`SymbolicOptimizer`, a
  ``torch.optim.Optimizer`` whose rule is a candidate;
* :mod:`~nos.optim.export` - standalone optimizer files, from the same emitter;
* :mod:`~nos.optim.factories` - optimizer factories of the fitness protocol.

May import: :mod:`nos.errors`, :mod:`nos.symbolic`, :mod:`nos.reference`, :mod:`nos.zoo`,
and torch.
"""

from nos.optim.symbolic_optimizer import SymbolicOptimizer

__all__ = ["SymbolicOptimizer"]
