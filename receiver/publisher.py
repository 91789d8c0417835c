"""Queueing stored events from the web process without making the provider wait for it.

The push is in the inbox before we answer, so publishing its task is not part of the answer: each
web process hands event ids to one background thread, which publishes what has gathered meanwhile
as one `process_events` message (one Redis round trip for a burst, not one per push). If the
process dies first, the events are still `received` and the sweeper queues them.

The thread lingers 100 ms after the first id of a batch so that the pushes arriving meanwhile share
its message. Publishing runs beside the requests in the same process and costs them CPU and GIL
turns, and a short linger cost several times what a long one does (docs/benchmarks.md, "What
changed the figures"). A re-fetch starts up to 100 ms later; the coalescing window holds it back a
second anyway.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any

from flask import Flask

from receiver import dispatch

log = logging.getLogger("receiver.publisher")
BATCH = 200
LINGER = 0.1  # seconds; a re-fetch waits this much longer, an acknowledgement not at all


class ProcessThread:
    """A queue that one daemon thread of this process drains, started on the first `put` in each
    process (gunicorn forks after import): work handed off a request, never done in it."""

    name = "background"
    max_pending: int | None = None  # past this many waiting items, more are dropped

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.pid: int | None = None
        self.lock = threading.Lock()

    def put(self, item: Any) -> None:
        """Hand `item` to this process's thread; never blocks, never raises."""
        if self.pid != os.getpid():
            with self.lock:
                if self.pid != os.getpid():
                    self.items = queue.SimpleQueue()
                    threading.Thread(target=self._run, name=self.name, daemon=True).start()
                    self.pid = os.getpid()
        if self.max_pending is None or self.items.qsize() < self.max_pending:
            self.items.put(item)

    def take(self, limit: int, linger: float = 0.0) -> list[Any]:
        """Wait for an item, linger, then take what else waits, up to `limit` in all."""
        batch = [self.items.get()]
        time.sleep(linger)
        while len(batch) < limit:
            try:
                batch.append(self.items.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        raise NotImplementedError


class Publisher(ProcessThread):
    """One per web process: a thread that publishes `process_event` for the ids it is given."""

    name = "publisher"

    def _run(self) -> None:
        while True:
            self.publish(self.take(BATCH, LINGER))

    def publish(self, batch: list[int]) -> None:
        """Publish a batch as one task; if that fails the events stay `received` for the sweeper."""
        try:
            dispatch.publish_batch(self.app, batch)
        except Exception as err:  # noqa: BLE001 - the thread must live on; the sweeper catches up
            log.warning("callback.enqueue_failed events=%s error=%s", len(batch), err.__class__.__name__)
