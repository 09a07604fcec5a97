"""A Ray executor: the search's evaluations as Ray tasks on a cluster (``--executor ray``).

:class:`RayExecutor` implements the :class:`nos.executors.Executor` interface, so the driver,
the run store and resume work exactly as with the local executor. Ray is an optional extra
(``pip install 'nos[ray]'``) imported only when this executor is built; nothing else in
``nos`` imports it.

Jobs. Each evaluation is one Ray task of a module-level function that receives the job
function's ``"module:function"`` path and the job's plain-data payload (the dict the local
executor sends down its pipe). The worker resolves the path with
:func:`nos.executors.resolve_function` and runs it; the candidate is rebuilt from its text
there. Nothing of the driver's state is pickled: no DEAP classes, no lambdas. The task
declares ``num_cpus`` (``--cpus-per-eval``, default 1) and ``num_gpus`` (``--gpus-per-eval``,
default 0; a fraction such as 0.25 packs four evaluations on one GPU), and runs torch and
the BLAS libraries on one thread per CPU it holds.

GPUs. Ray sets ``CUDA_VISIBLE_DEVICES`` in the worker to the GPU(s) it assigned, so the job
payload's device is plain ``"cuda"``: inside the worker that names the first visible device,
the one Ray chose. A task that holds GPUs is given ``max_calls=1`` (Ray's own default for
GPU tasks): its worker process exits after one evaluation, so GPU memory a candidate leaks
(or a CUDA context left in a bad state) cannot fail the next candidate. CPU tasks reuse
their worker processes (``max_calls=0``: unlimited).

Data. The on-disk data sets (cifar10, flowers102) are read from ``--data-dir`` by the
worker, so that path must hold the data on every node: a shared file system, or the same
path copied to each node's local disk. The task loader caches the loaded tensors per
process (:func:`nos.tasks.load_task`, an ``lru_cache``), and Ray keeps a CPU worker process
alive across evaluations, so each worker process reads the files once and keeps them; the
operating system's page cache makes the repeated reads of one node's processes (and the
reload of a recycled GPU worker) memory copies rather than disk reads, i.e. the files come
from the disk or the shared file system about once per node. This is the simplest sound
choice: no object-store copy, no long-lived actors whose state would have to be managed,
and the same code path as the local executor. Its cost is one copy of the tensors per
worker process in memory.

One writer. Workers only return result dicts; the driver writes the run store.

Faults. An evaluation whose worker process or node dies (SIGKILL, the OOM killer, Ray's
memory monitor, a lost node) is submitted again, up to ``retries`` times (default 2), then
becomes ``error`` with the reason of the last failure; the search goes on. Retries are done
by this executor rather than by Ray, so each attempt gets its own wall-clock limit and the
reason names what happened. An exception in the job function is the candidate's failure
(``error``, not retried), as in the local executor. A job past its wall-clock limit is
cancelled with ``force=True`` (Ray kills its worker) and becomes ``timeout``. A lost
*driver* is handled by ``nos search --resume NAME``, which replays the run's record as with
any executor.

Scheduling. At most :attr:`RayExecutor.workers` tasks are in flight (the cluster's
capacity for the declared resources, re-read every few seconds so that nodes that join or
leave change it; ``--workers`` overrides it), the rest wait in the driver. A job's
wall-clock limit is counted from its submission to Ray, which is close to its start since
only as many tasks are submitted as can run.

Connecting. ``address`` is ``None`` (a Ray instance started for this process, or the one
``RAY_ADDRESS`` names), ``"auto"`` (the cluster started on this machine by ``ray start``,
or ``RAY_ADDRESS``) or ``HOST:PORT`` of the head node. Ray's own connection attempts retry
for many minutes, so the address is probed first, with a bounded time: a TCP connection,
then an HTTP/2 handshake (Ray's head speaks gRPC); an unreachable address or one where no
gRPC server answers is a one-line error within seconds.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from nos.errors import NosError
from nos.executors.base import Outcome, exception_result, failure, resolve_function
from nos.status import Status

__all__ = ["INSTALL_HINT", "RayExecutor", "check_resources", "probe_address"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'nos[ray]'"
#: Seconds between re-reads of the cluster's capacity.
REFRESH_S = 5.0
#: Seconds a connection probe may take.
CONNECT_TIMEOUT_S = 5.0
#: Ray errors that are not a lost worker: retrying would fail the same way.
_FINAL_ERRORS = (
    "RayTaskError",
    "TaskCancelledError",
    "RuntimeEnvSetupError",
    "TaskUnschedulableError",
    "AuthenticationError",
)
#: The client preface of HTTP/2 followed by an empty SETTINGS frame (RFC 9113 §3.4).
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# ------------------------------------------------------------------------- worker side


def _set_threads(threads: int) -> None:
    """``threads`` compute threads in torch and the BLAS libraries of this worker."""
    for name in _THREAD_VARS:
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")  # only limited once loaded; a later import reads the env
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def run_job(function: str, payload: dict[str, Any], threads: int) -> dict[str, Any]:
    """The body of one Ray task: run the job function on the payload, report where and when.

    Plain data in and out; an exception of the job function becomes an ``error`` result.
    """
    _set_threads(threads)
    started, t0 = time.time(), time.monotonic()
    try:
        result = resolve_function(function)(payload)
        _set_threads(threads)  # the job may have imported torch: limit it for the next job
    except Exception as exc:  # the candidate's failure, recorded; the search goes on
        result = exception_result(exc)
    return {
        "result": result,
        "worker": f"{socket.gethostname()}/{os.getpid()}",
        "started": started,
        "wall_s": time.monotonic() - t0,
    }


# ------------------------------------------------------------------------- validation


def _check_amount(name: str, value: float, *, zero_ok: bool) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise NosError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        kind = "a number >= 0" if zero_ok else "a positive number"
        raise NosError(f"{name} must be {kind}, got {value:g}")
    if value > 1 and value != int(value):
        raise NosError(f"{name} above 1 must be a whole number, got {value:g}")
    if round(value, 4) != value:
        raise NosError(f"{name} has more than 4 decimals (Ray's resource granularity): {value:g}")
    return value


def check_resources(cpus_per_eval: float, gpus_per_eval: float) -> tuple[float, float]:
    """The validated per-evaluation resources (a one-line :class:`NosError` if bad)."""
    return (
        _check_amount("--cpus-per-eval", cpus_per_eval, zero_ok=False),
        _check_amount("--gpus-per-eval", gpus_per_eval, zero_ok=True),
    )


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NosError(f"bad Ray address {address!r}: expected auto or HOST:PORT")
    return host, int(port)


def probe_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`NosError` unless a gRPC server (a Ray head) answers at ``HOST:PORT``.

    Bounded by ``timeout_s`` per step; Ray's own connection attempts retry for minutes.
    """
    host, port = _split_address(address)
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except TimeoutError:
        raise NosError(
            f"cannot reach a Ray cluster at {address}: no answer within {timeout_s:g}s"
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise NosError(f"cannot reach a Ray cluster at {address}: {reason}") from None
    with sock:
        try:
            sock.settimeout(timeout_s)
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
        except OSError:
            head = b""
    if len(head) < 9 or head[3] != 0x04:  # a server's first frame is its SETTINGS (type 4)
        raise NosError(
            f"no Ray cluster at {address}: something answers there, but not a "
            "Ray head node (no gRPC service)"
        )


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise NosError(f"the ray executor needs Ray: {INSTALL_HINT}") from None
    return ray


def _resolve_address(address: str | None) -> str | None:
    """``HOST:PORT`` to connect to, or ``None`` to start a local instance."""
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or None
        if address is None:
            return None
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:  # Ray's internals moved: let ray.init find the cluster itself
            return "auto"
        try:
            found = canonicalize_bootstrap_address("auto")
        except (ConnectionError, ValueError) as exc:
            raise NosError(
                f"--address auto: no running Ray cluster found on this machine "
                f"({' '.join(str(exc).split())[:150]})"
            ) from None
        if found is None:
            raise NosError("--address auto: no running Ray cluster found on this machine")
        return found
    return address


# ------------------------------------------------------------------------- driver side


@dataclass
class _Job:
    job_id: str
    payload: dict[str, Any]
    timeout_s: float | None
    attempts: int = 0
    failures: list[str] = field(default_factory=list)
    t0: float = 0.0  # time.monotonic() at submission to Ray
    started: float = 0.0  # time.time() at submission to Ray


def _capacity(nodes: list[dict[str, Any]], cpus: float, gpus: float) -> int:
    """How many evaluations of the given shape the alive nodes can run at once."""
    total = 0
    for node in nodes:
        if not node.get("Alive", False):
            continue
        res = node.get("Resources", {})
        fit = math.floor(res.get("CPU", 0.0) / cpus + 1e-9)
        if gpus > 0:
            fit = min(fit, math.floor(res.get("GPU", 0.0) / gpus + 1e-9))
        total += max(0, fit)
    return total


def _error_reason(exc: BaseException) -> str:
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first.strip()}"[:300].rstrip(": ")


class RayExecutor:
    """Evaluations as Ray tasks (see the module's description).

    Args:
      function: ``"module:function"`` run on each payload in a Ray worker.
      address: ``None`` (a local Ray instance, or ``RAY_ADDRESS``), ``"auto"`` or
        ``HOST:PORT``.
      cpus_per_eval, gpus_per_eval: the resources each evaluation declares.
      workers: most evaluations in flight (default: the cluster's capacity).
      timeout_s: default wall-clock limit per job (None: no limit); ``submit`` may override.
      retries: how many times an evaluation whose worker or node died is submitted again.
      max_calls: evaluations per worker process before it exits (default 1 with GPUs, else
        unlimited).
      connect_timeout_s: bound of each connection probe.
      init_options: extra keyword arguments of ``ray.init`` (a local instance's
        ``num_cpus``...).

    In a process already connected to Ray, the executor uses that connection (and leaves
    it open at ``close``); an explicit ``HOST:PORT`` must then be the connected cluster.
    """

    def __init__(
        self,
        function: str,
        *,
        address: str | None = None,
        cpus_per_eval: float = 1.0,
        gpus_per_eval: float = 0.0,
        workers: int | None = None,
        timeout_s: float | None = None,
        retries: int = 2,
        max_calls: int | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        init_options: dict[str, Any] | None = None,
    ):
        self._cpus, self._gpus = check_resources(cpus_per_eval, gpus_per_eval)
        if workers is not None and workers < 0:
            raise NosError(f"workers must be >= 0, got {workers}")
        if retries < 0:
            raise NosError(f"retries must be >= 0, got {retries}")
        self._function = function
        self._timeout_s = timeout_s
        self._retries = retries
        self._fixed_workers = workers or None
        self._threads = max(1, math.floor(self._cpus))
        ray = self._ray = _import_ray()
        self._owns_connection = False
        self._connect(address, connect_timeout_s, init_options or {})
        try:
            self._check_cluster()
            calls = max_calls if max_calls is not None else (1 if self._gpus > 0 else 0)
            self._remote = ray.remote(
                num_cpus=self._cpus,
                num_gpus=self._gpus,
                max_calls=calls,
                max_retries=0,
                retry_exceptions=False,
            )(run_job)
        except BaseException:
            self._disconnect()
            raise
        self._jobs: collections.deque[_Job] = collections.deque()
        self._running: dict[Any, _Job] = {}
        self._ready: list[Outcome] = []
        self._closed = False
        #: Evaluations submitted again after their worker or node died.
        self.retried = 0
        log.info(
            "Ray executor at %s: %d evaluation(s) at once, %g CPU and %g GPU each",
            self.address,
            self.workers,
            self._cpus,
            self._gpus,
        )

    # connection ----------------------------------------------------------------------

    def _connect(self, address: str | None, timeout_s: float, init_options: dict[str, Any]) -> None:
        ray = self._ray
        if address is not None and address != "auto":
            _split_address(address)
        if ray.is_initialized():
            current = ray.get_runtime_context().gcs_address
            if address not in (None, "auto") and address != current:
                probe_address(address, timeout_s)
                raise NosError(
                    f"this process is already connected to the Ray cluster at "
                    f"{current}, not {address}"
                )
            self.address = current
            return
        target = _resolve_address(address)
        if target is not None and target != "auto":
            probe_address(target, timeout_s)
        options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        if target is None:
            options["include_dashboard"] = False
        options.update(init_options)
        try:
            ray.init(address=target, **options)
        except Exception as exc:  # version mismatch, authentication, a port that is no head
            with contextlib.suppress(Exception):
                ray.shutdown()
            where = (
                "start a local Ray instance"
                if target is None
                else (f"connect to the Ray cluster at {target}")
            )
            raise NosError(f"cannot {where}: {_error_reason(exc)}") from None
        self._owns_connection = True
        self.address = ray.get_runtime_context().gcs_address

    def _disconnect(self) -> None:
        if self._owns_connection:
            self._owns_connection = False
            with contextlib.suppress(Exception):
                self._ray.shutdown()

    def _nodes(self) -> list[dict[str, Any]]:
        return [n for n in self._ray.nodes() if n.get("Alive", False)]

    def _check_cluster(self) -> None:
        """One-line errors for resources that no node of the cluster has."""
        nodes = self._nodes()
        most_cpus = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
        most_gpus = max((n["Resources"].get("GPU", 0.0) for n in nodes), default=0.0)
        if self._gpus > 0 and most_gpus == 0:
            raise NosError(
                f"--gpus-per-eval {self._gpus:g}: the Ray cluster at {self.address} has no GPU"
            )
        if self._gpus > most_gpus:
            raise NosError(
                f"--gpus-per-eval {self._gpus:g}: no node of the Ray cluster at "
                f"{self.address} has that many GPUs (most: {most_gpus:g})"
            )
        if self._cpus > most_cpus:
            raise NosError(
                f"--cpus-per-eval {self._cpus:g}: no node of the Ray cluster at "
                f"{self.address} has that many CPUs (most: {most_cpus:g})"
            )
        fits = [n for n in nodes if _capacity([n], self._cpus, self._gpus) > 0]
        if not fits:
            raise NosError(
                f"no node of the Ray cluster at {self.address} has "
                f"{self._cpus:g} CPU and {self._gpus:g} GPU together"
            )
        self._capacity = _capacity(nodes, self._cpus, self._gpus)
        self._refreshed = time.monotonic()

    def _refresh(self) -> None:
        if time.monotonic() - self._refreshed < REFRESH_S:
            return
        self._refreshed = time.monotonic()
        try:
            capacity = _capacity(self._nodes(), self._cpus, self._gpus)
        except Exception as exc:  # the head is briefly unreachable: keep the last figure
            log.warning("cannot read the Ray cluster's resources: %s", _error_reason(exc))
            return
        if capacity != self._capacity:
            log.info(
                "Ray cluster capacity: %d evaluation(s) at once (was %d)", capacity, self._capacity
            )
            self._capacity = capacity

    @property
    def workers(self) -> int:
        """Evaluations run at once: ``workers`` if given, else the cluster's capacity."""
        return self._fixed_workers or self._capacity

    # jobs ----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while self._jobs and len(self._running) < max(1, self.workers):
            job = self._jobs.popleft()
            job.attempts += 1
            job.t0, job.started = time.monotonic(), time.time()
            ref = self._remote.remote(self._function, job.payload, self._threads)
            self._running[ref] = job

    def _finish(
        self, job: _Job, result: dict[str, Any], worker: str, wall_s: float, started: float
    ) -> None:
        self._ready.append(Outcome(job.job_id, result, worker, wall_s, started))

    def _collect(self, ref: Any) -> None:
        job = self._running.pop(ref)
        try:
            value = self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:
            reason = _error_reason(exc)
            wall_s = time.monotonic() - job.t0
            if type(exc).__name__ in _FINAL_ERRORS or isinstance(
                exc, self._ray.exceptions.RayTaskError
            ):
                self._finish(job, failure(Status.ERROR, reason), "ray", wall_s, job.started)
                return
            job.failures.append(reason)
            if job.attempts <= self._retries:
                self.retried += 1
                log.warning(
                    "%s: attempt %d lost (%s); submitting it again",
                    job.job_id,
                    job.attempts,
                    reason,
                )
                self._jobs.appendleft(job)
                return
            self._finish(
                job,
                failure(Status.ERROR, f"worker lost on {job.attempts} attempt(s); last: {reason}"),
                "ray",
                wall_s,
                job.started,
            )
            return
        self._finish(job, value["result"], value["worker"], value["wall_s"], value["started"])

    def _expire(self, now: float) -> None:
        for ref, job in list(self._running.items()):
            if job.timeout_s is None or now < job.t0 + job.timeout_s:
                continue
            log.warning("%s: past its %gs limit; cancelling it", job.job_id, job.timeout_s)
            del self._running[ref]
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
            self._finish(
                job,
                failure(Status.TIMEOUT, f"exceeded the {job.timeout_s:g}s wall-clock limit"),
                "ray",
                now - job.t0,
                job.started,
            )

    # interface -----------------------------------------------------------------------

    def submit(self, job_id: str, payload: dict[str, Any], timeout_s: float | None = None) -> None:
        if self._closed:
            raise RuntimeError("executor is closed")
        limit = self._timeout_s if timeout_s is None else timeout_s
        self._jobs.append(_Job(job_id, payload, limit))
        self._dispatch()

    @property
    def pending(self) -> int:
        return len(self._jobs) + len(self._running) + len(self._ready)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        ray = self._ray
        end = None if timeout is None else time.monotonic() + timeout
        while not self._ready and (self._running or self._jobs):
            self._refresh()
            self._dispatch()
            now = time.monotonic()
            limits = [j.t0 + j.timeout_s for j in self._running.values() if j.timeout_s is not None]
            if end is not None:
                limits.append(end)
            # wake up at least every REFRESH_S: capacity may grow while jobs wait
            wait_s = max(0.0, min([REFRESH_S, *(t - now for t in limits)]))
            refs = list(self._running)
            if refs:
                done, _ = ray.wait(refs, num_returns=1, timeout=wait_s)
                if done:
                    done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                for ref in done:
                    self._collect(ref)
            else:
                time.sleep(wait_s)
            self._expire(time.monotonic())
            if end is not None and time.monotonic() >= end:
                break
        self._dispatch()
        out, self._ready = self._ready, []
        return out

    def close(self) -> None:
        """Cancel what runs (running jobs are abandoned) and leave the cluster."""
        if self._closed:
            return
        self._closed = True
        self._jobs.clear()
        for ref in list(self._running):
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
        self._running.clear()
        self._disconnect()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
