"""Token buckets: what anyone on the broker can trigger costs the device a bounded amount."""

from __future__ import annotations

import logging
import time
from typing import Any


class Bucket:
    """``take`` succeeds at most ``burst`` times at once and ``rate`` times a second after."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class LogLimiter:
    """Log lines for refusals, at most ``per_s`` a second after a ``burst``; what was left out
    is counted and said in the next line that gets through (a flood does not fill the journal)."""

    def __init__(self, logger: logging.Logger, per_s: float, burst: float) -> None:
        self.logger = logger
        self.bucket = Bucket(per_s, burst)
        self.suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        self._log(logging.WARNING, message, *args)

    def error(self, message: str, *args: Any, exc_info: BaseException | None = None) -> None:
        self._log(logging.ERROR, message, *args, exc_info=exc_info)

    def _log(self, level: int, message: str, *args: Any, exc_info: BaseException | None = None) -> None:
        if not self.bucket.take():
            self.suppressed += 1
            return
        if self.suppressed:
            message += " (%d similar lines left out)"
            args = (*args, self.suppressed)
            self.suppressed = 0
        self.logger.log(level, message, *args, exc_info=exc_info)
