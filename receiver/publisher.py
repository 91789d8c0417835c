"""Queueing stored events from the web process without making the provider wait for it.

The push is in the inbox before we answer, so publishing its task is not part of the answer: each
web process hands event ids to one background thread that publishes them in batches through one
producer. If the process dies first, the events are still `received` and the sweeper queues them.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any

from flask import Flask

log = logging.getLogger("receiver.publisher")
BATCH = 200


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
            while len(batch) < BATCH:
                try:
                    batch.append(self.ids.get_nowait())
                except queue.Empty:
                    break
            self.publish(batch)

    def publish(self, batch: list[int]) -> int:
        """Publish a batch through one producer; what fails stays `received` for the sweeper."""
        from workers.tasks import process_event

        celery: Any = self.app.extensions["celery"]
        task = celery.tasks[process_event.name]
        sent = 0
        try:
            with celery.producer_or_acquire() as producer:
                for event_id in batch:
                    task.apply_async((event_id,), producer=producer, retry=False)
                    sent += 1
        except Exception as err:  # noqa: BLE001 - the thread must live on; the sweeper catches up
            log.warning("callback.enqueue_failed events=%s error=%s", len(batch) - sent, err.__class__.__name__)
        return sent
