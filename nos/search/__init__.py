"""The search: a particle GA over candidates (spec §4), with injected evaluation.

Modules (import them directly; this package imports nothing, so that a worker process that
only needs :mod:`nos.search.fake` or :mod:`nos.search.worker` starts fast):

* :mod:`~nos.search.config` — :class:`SearchConfig`, the settings that fix the decisions;
* :mod:`~nos.search.engine` — the GA as coroutines: pure, deterministic, no I/O;
* :mod:`~nos.search.driver` — :func:`run_search`: schedules the engine's requests on an
  executor, deduplicates training, records to a store, resumes by replay;
* :mod:`~nos.search.session` — run directories, executors and evaluators wired together
  (what ``nos search`` calls);
* :mod:`~nos.search.store` — the run store: config.toml, append-only JSONL, checkpoints;
* :mod:`~nos.search.report` — hall of fame, ranks, Pareto front, waste, throughput, plots;
* :mod:`~nos.search.seeds` — seeds of the initial population;
* :mod:`~nos.search.fitness` — the suite fitness: its settings, the score, the reference;
* :mod:`~nos.search.suite_jobs` — its job payloads and the reference's jobs (torch-free);
* :mod:`~nos.search.suite_eval` — its training, in the workers (torch);
* :mod:`~nos.search.live` — TensorBoard event files of a running search;
* :mod:`~nos.search.worker`, :mod:`~nos.search.fake` — job functions of the workers.

May import: every layer below it (:mod:`nos.symbolic` ... :mod:`nos.executors`); the driver
side stays torch-free, only :mod:`nos.search.worker` loads the training layer's torch parts.
"""
