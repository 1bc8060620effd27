"""A background thread that polls for work: the one loop of the delivery, subscription and export workers."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class PollingWorker:
    """Calls :meth:`run_once` on a daemon thread until stopped; waits ``poll_seconds`` when it found
    nothing to do, or when it failed (logged, then tried again)."""

    #: the thread's name, also in the log line of a failure
    thread_name = "polling-worker"

    def __init__(self, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()

    def run_once(self) -> int | bool:
        """Do one round of work; falsy when there was nothing to do."""
        raise NotImplementedError

    def start(self) -> None:
        threading.Thread(target=self._loop, name=self.thread_name, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.run_once():
                    self._stop.wait(self.poll_seconds)
            except Exception:
                log.exception("%s failed; retrying shortly", self.thread_name)
                self._stop.wait(self.poll_seconds)
