"""The search: a particle GA over candidates (spec §4), with injected evaluation.

Modules (import them directly; this package imports nothing, so that a worker process that
only needs :mod:`nos.search.fake` or :mod:`nos.search.worker` starts fast):

* :mod:`~nos.search.config` — :class:`SearchConfig`, the settings that fix the decisions;
* :mod:`~nos.search.engine` — the GA as coroutines: pure, deterministic, no I/O;
* :mod:`~nos.search.driver` — :func:`run_search`: schedules the engine's requests on an
  executor, deduplicates training, records to a store, resumes by replay;
* :mod:`~nos.search.session` — run directories, executors and evaluators wired together
  (what ``nos search`` calls);
* :mod:`~nos.search.report` — hall of fame, Pareto front, waste, throughput, plots;
* :mod:`~nos.search.worker`, :mod:`~nos.search.fake` — job functions of the workers.
"""
