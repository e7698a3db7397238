"""`gitserve serve`'s notify workers: the only consumers of the `notify` queue.

[notify] senders `gitserve worker notify` processes on the server host (they read HOME: the
secrets that sign and send), with rq's scheduler, which re-queues a delivery when its retry
is due (notify/notifier.py). Started with the server whatever Redis it uses: build hosts
never work this queue.
"""

from __future__ import annotations

from gitserve.settings import Settings

from ..worker import LocalWorkers
from ..workersettings import SERVER_LISTEN_ENV
from .events import NOTIFY_QUEUE


class NotifierService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers = LocalWorkers(settings.home, settings.effective_redis_url,
                                    max(1, settings.notify.senders), queues=(NOTIFY_QUEUE,),
                                    log_file=settings.logs_dir / "workers.log",
                                    env={SERVER_LISTEN_ENV: settings.server.listen},
                                    # a warm stop: the delivery under way ends, rq's scheduler
                                    # stops and gives up its lock for the next start
                                    cold_stop=False)

    def start(self) -> None:
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        self.workers.start()

    def stop(self) -> None:
        self.workers.stop()


def services(settings: Settings) -> list[NotifierService]:
    """Always the notify workers: with an external Redis too (workers elsewhere never send)."""
    return [NotifierService(settings)]
