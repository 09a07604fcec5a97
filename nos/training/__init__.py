"""Proxy tasks and the fitness protocol.

Torch-free (plain data, imported by the search driver and the CLI):

* :mod:`~nos.training.registry` - the task registry: data, model, presets, augmentation;
* :mod:`~nos.training.presets` - budgets and thresholds of the protocol;
* :mod:`~nos.training.spec` - :class:`EvalSpec` and :class:`EvalResult`.

With torch:

* :mod:`~nos.training.data` - data sets and input pipelines;
* :mod:`~nos.training.models` - the proxy networks;
* :mod:`~nos.training.tasks` - a task's data on tensors, its model and batch order;
* :mod:`~nos.training.images` - image sets resident as uint8, the augmentation on the device;
* :mod:`~nos.training.fast`, :mod:`~nos.training.graphs` - the fast step (bf16 autocast,
  channels-last, compiled network and update, a CUDA graph of the whole step);
* :mod:`~nos.training.device` - ``--device``, CUDA's deterministic settings, GPU pinning;
* :mod:`~nos.training.trainer`, :mod:`~nos.training.protocol` - the LR sweep, thresholds and
  final run.

May import: :mod:`nos.errors`, :mod:`nos.status`, :mod:`nos.symbolic`, :mod:`nos.zoo`,
:mod:`nos.optim`. This ``__init__`` imports nothing, so the torch-free modules stay light.
"""
