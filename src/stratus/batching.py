"""One generic batch writer: a queue drained by a daemon thread in batches.

The audit log, the lineage tables and OpenLineage reporting all queue items on the request
path (a queue put) and have them handled here, a batch at a time: one Delta commit per batch
instead of one per item (many tiny files, and a table reload per commit holding the lakehouse
lock that queries need). ``flush()`` waits for what is queued now; ``close()`` drains the queue
(also at interpreter exit, so nothing acknowledged is lost on a clean shutdown).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from stratus.lakehouse import origin
from stratus.lakehouse.storage import StorageError

log = logging.getLogger(__name__)
T = TypeVar("T")


class BatchWorker(Generic[T]):
    """A queue drained by one daemon thread that hands ``handle`` batches of items.

    A batch is what arrived within ``flush_interval`` seconds of its first item, at most
    ``batch_size`` items, or less when a flush or close asks for it now. A batch ``handle``
    returns from counts in ``written``; one it raises on is dropped and counts in ``failures``
    (a storage outage is logged as one line, anything else with its traceback): the thread
    never dies of it. With ``max_queue``, items that do not fit are dropped and counted in
    ``dropped`` instead of blocking the caller.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[list[T]], None],
        *,
        flush_interval: float = 1.0,
        batch_size: int = 500,
        max_queue: int = 0,
        what: str = "items",
    ) -> None:
        self.name = name
        self.handle = handle
        self.what = what
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self._queue: queue.Queue[object] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.dropped = 0
        self.written = 0
        self.failures = 0

    def put(self, item: T) -> None:
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def _run(self) -> None:
        while True:
            try:
                items = [self._queue.get(timeout=self.flush_interval)]
            except queue.Empty:
                continue
            deadline = time.monotonic() + self.flush_interval
            while len(items) < self.batch_size and not _urgent(items[-1]):
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                try:
                    items.append(self._queue.get(timeout=wait))
                except queue.Empty:
                    break
            # what is left once the sentinels are filtered out are the T items
            kept = [i for i in items if i is not _STOP and not isinstance(i, _Flush)]
            batch = cast(list[T], kept)
            if batch:
                self.run_now(batch)
            for i in items:
                if isinstance(i, _Flush):
                    i.done.set()
            if any(i is _STOP for i in items):
                return

    def run_now(self, batch: list[T]) -> None:
        """Hand ``batch`` to ``handle`` on this thread, counting it written or failed. What it
        commits is the system's, never tagged with the user of a request on this thread."""
        try:
            with origin.committing_as(None):
                self.handle(batch)
        except StorageError as exc:  # the store is down: one line, not a traceback
            self.failures += len(batch)
            log.error("could not write %d %s: %s", len(batch), self.what, exc)
        except Exception:
            self.failures += len(batch)
            log.exception("could not write %d %s", len(batch), self.what)
        else:
            self.written += len(batch)

    def flush(self, timeout: float = 30.0) -> None:
        """Return once everything queued before the call has been handled."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        marker = _Flush()
        self._queue.put(marker)
        marker.done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


def _urgent(item: object) -> bool:
    return item is _STOP or isinstance(item, _Flush)


class BatchedWriter(Generic[T]):
    """A writer whose items go through one :class:`BatchWorker`: ``record`` queues an item,
    ``write`` handles items now on this thread, ``flush``/``close`` as the worker's; subclasses
    give ``_write`` (one batch: may raise, the worker counts it)."""

    def __init__(self, name: str, what: str, *, flush_interval: float, batch_size: int) -> None:
        self._worker: BatchWorker[T] = BatchWorker(
            name, self._write, flush_interval=flush_interval, batch_size=batch_size, what=what
        )

    def _write(self, items: list[T]) -> None:
        raise NotImplementedError

    @property
    def written(self) -> int:
        """Items written."""
        return self._worker.written

    @property
    def failures(self) -> int:
        """Items that could not be written."""
        return self._worker.failures

    def record(self, item: T) -> None:
        self._worker.put(item)

    def write(self, items: list[T]) -> None:
        """Write ``items`` now, on this thread."""
        self._worker.run_now(items)

    def flush(self, timeout: float = 30.0) -> None:
        """Return once everything queued so far has been written."""
        self._worker.flush(timeout)

    def close(self) -> None:
        self._worker.close()
