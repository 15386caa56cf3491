"""Background jobs (sampling runs) with progress events, cancel, and one at a time.

A :class:`Job` runs a function on its own thread and publishes events that any number of
Server-Sent-Events readers follow (:meth:`Job.events_after`). Two kinds of event:

* *lifecycle* events (``status``, ``done``, ``failed``, ``cancelled``) are all kept, in order;
* *snapshot* events (``progress``, ``spectrogram``) replace the previous one of their kind, so
  a slow reader skips intermediate steps instead of falling behind (each holds the whole state
  to draw).

The models run on the CPU or one device: :class:`JobManager` lets one heavy computation run at
a time (:meth:`JobManager.exclusive`, also taken by the codec round trip); queued jobs wait,
and can be cancelled while waiting.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from audiorep.serve.backend import BackendError, SamplingCancelled

logger = logging.getLogger(__name__)

TERMINAL = ("done", "failed", "cancelled")
SNAPSHOTS = ("progress", "spectrogram")
#: Exceptions whose message is the user's answer (bad input, missing weights); anything else
#: is a bug: its traceback goes to the server's log.
USER_ERRORS = (BackendError, ValueError, OSError, KeyError, RuntimeError)

Event = tuple[int, str, dict[str, Any]]


class Job:
    """One background run. ``cancel`` is the event the sampler polls; ``status`` is
    ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``."""

    def __init__(self, job_id: str, kind: str) -> None:
        self.id = job_id
        self.kind = kind
        self.cancel = threading.Event()
        self.status = "queued"
        self.created = time.time()
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self._cond = threading.Condition()
        self._seq = 0
        self._events: list[Event] = []
        self._latest: dict[str, Event] = {}
        self.thread: threading.Thread | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def publish(self, kind: str, data: dict[str, Any] | None = None) -> None:
        with self._cond:
            self._seq += 1
            event = (self._seq, kind, dict(data or {}))
            if kind in SNAPSHOTS:
                self._latest[kind] = event
            else:
                self._events.append(event)
            if kind in TERMINAL or kind == "status":
                self.status = kind if kind in TERMINAL else str(event[2].get("status", ""))
            self._cond.notify_all()

    def events_after(self, seq: int, timeout: float) -> list[Event]:
        """Events newer than ``seq`` (lifecycle ones all, snapshots the latest of each kind),
        oldest first; waits up to ``timeout`` seconds for one when there is none."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                out = [e for e in self._events if e[0] > seq]
                out += [e for e in self._latest.values() if e[0] > seq]
                left = deadline - time.monotonic()
                if out or left <= 0:
                    return sorted(out, key=lambda e: e[0])
                self._cond.wait(left)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "error": self.error,
            "result": self.result,
        }


class JobManager:
    """Runs jobs on daemon threads, one heavy computation at a time; keeps the last ``keep``
    jobs for late readers. ``scrub`` cleans error messages (private paths) before they are
    shown."""

    def __init__(self, keep: int = 32, scrub: Callable[[str], str] = str) -> None:
        self.keep = keep
        self.scrub = scrub
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._compute = threading.Lock()
        self.closed = threading.Event()

    @contextlib.contextmanager
    def exclusive(self, cancel: threading.Event | None = None) -> Iterator[None]:
        """Hold the one-computation-at-a-time lock; raises :class:`SamplingCancelled` when
        ``cancel`` is set (or the manager closes) while waiting."""
        while not self._compute.acquire(timeout=0.1):
            if (cancel is not None and cancel.is_set()) or self.closed.is_set():
                raise SamplingCancelled()
        try:
            yield
        finally:
            self._compute.release()

    def submit(self, kind: str, fn: Callable[[Job], dict[str, Any]]) -> Job:
        """Start ``fn(job)`` in the background; its return value is the ``done`` event's data."""
        with self._lock:
            job = Job(f"{kind}-{next(self._ids)}", kind)
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                old_id, old = next(iter(self._jobs.items()))
                if not old.finished:
                    break
                del self._jobs[old_id]
        job.thread = threading.Thread(
            target=self._run, args=(job, fn), daemon=True, name=f"audiorep-serve-{job.id}"
        )
        job.thread.start()
        return job

    def _run(self, job: Job, fn: Callable[[Job], dict[str, Any]]) -> None:
        job.publish("status", {"status": "queued"})
        try:
            with self.exclusive(job.cancel):
                if job.cancel.is_set():
                    raise SamplingCancelled()
                job.publish("status", {"status": "running"})
                result = fn(job)
        except SamplingCancelled:
            job.publish("cancelled", {})
            return
        except USER_ERRORS as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            job.error = self.scrub(str(text))
            job.publish("failed", {"message": job.error})
            return
        except Exception as exc:  # a bug: keep serving, show it, log the traceback
            logger.error("job %s failed:\n%s", job.id, traceback.format_exc())
            job.error = self.scrub(f"internal error: {type(exc).__name__}: {exc}")
            job.publish("failed", {"message": job.error})
            return
        job.result = result
        job.publish("done", result)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> bool:
        job = self.get(job_id)
        if job is None:
            return False
        job.cancel.set()
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Cancel every job and wait up to ``timeout`` seconds for their threads."""
        self.closed.set()
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.set()
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))


__all__ = ["Job", "JobManager", "SNAPSHOTS", "TERMINAL"]
