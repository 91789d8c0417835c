"""Queueing stored events from the web process without making the provider wait for it.

The push is in the inbox before we answer, so publishing its task is not part of the answer: each
web process hands event ids to one background thread, which publishes what has gathered meanwhile
as one `process_events` message (one Redis round trip for a burst, not one per push). If the
process dies first, the events are still `received` and the sweeper queues them.

The thread lingers 100 ms after the first id of a batch so that the pushes arriving meanwhile share
its message. Publishing runs beside the requests in the same process and costs them CPU and GIL
turns: under gunicorn at about 900 pushes/s, a 20 ms linger cost 0.25-0.4 ms of CPU per push, a
100 ms one about 0.05 ms (docs/benchmarks.md). A re-fetch starts up to 100 ms later; the coalescing
window holds it back a second anyway.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time

from flask import Flask

log = logging.getLogger("receiver.publisher")
BATCH = 200
LINGER = 0.1  # seconds; a re-fetch waits this much longer, an acknowledgement not at all


class Publisher:
    """One per web process: a thread that publishes `process_event` for the ids it is given."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.ids: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.pid: int | None = None
        self.lock = threading.Lock()

    def put(self, event_id: int) -> None:
        """Queue an event's processing soon; never blocks, never raises."""
        if self.pid != os.getpid():  # first use in this process (gunicorn forks after import)
            with self.lock:
                if self.pid != os.getpid():
                    self.ids = queue.SimpleQueue()
                    threading.Thread(target=self._run, name="publisher", daemon=True).start()
                    self.pid = os.getpid()
        self.ids.put(event_id)

    def _run(self) -> None:
        while True:
            batch = [self.ids.get()]
            time.sleep(LINGER)
            while len(batch) < BATCH:
                try:
                    batch.append(self.ids.get_nowait())
                except queue.Empty:
                    break
            self.publish(batch)

    def publish(self, batch: list[int]) -> None:
        """Publish a batch as one task; if that fails the events stay `received` for the sweeper."""
        from workers.tasks import process_events

        try:
            self.app.extensions["celery"].tasks[process_events.name].apply_async((batch,), retry=False)
        except Exception as err:  # noqa: BLE001 - the thread must live on; the sweeper catches up
            log.warning("callback.enqueue_failed events=%s error=%s", len(batch), err.__class__.__name__)
