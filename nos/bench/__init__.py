"""``nos bench``: discovered optimizers against tuned standard ones on tasks never searched on.

The method follows AlgoPerf and Schmidt et al.'s "Descending through a Crowded Valley":

* every optimizer gets the same tuning budget on every task - ``trials`` runs over its
  learning rate (and weight decay with ``tune="lr+wd"``) at one fixed seed, chosen by the
  validation metric at the end of the task's budget (:mod:`nos.bench.space`);
* every optimizer trains under the same warmup + cosine schedule unless it brings its own
  (Schedule-Free, plane search; a candidate applies the schedule itself, times its LR gene);
* the chosen setting is then trained from ``seeds`` fresh seeds and scored on the held-out
  test split; seeds are paired across optimizers (same initial weights, same batch order);
* results are tables per task, ranks, paired win/loss/tie counts against each baseline and a
  Dolan-Moré performance profile (:mod:`nos.bench.stats`, :mod:`nos.bench.report`).

Modules: :mod:`~nos.bench.specs` (what an OPT argument names), :mod:`~nos.bench.space` (the
tuning grids), :mod:`~nos.bench.optimizers` and :mod:`~nos.bench.jobs` (one training run, in a
worker), :mod:`~nos.bench.store` (the run directory, resumable), :mod:`~nos.bench.driver`
(planning and running), :mod:`~nos.bench.stats`, :mod:`~nos.bench.report` and
:mod:`~nos.bench.plots`.

May import every layer but the CLI. Importing this package loads no torch.
"""
