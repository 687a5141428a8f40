"""Logging helpers of the node: per-cause throttling and safe quoting of user text.

One shared throttle for every warning hides the second problem behind the first (a bad depth image
right after a bad colour image was never logged). :class:`CauseThrottle` keeps one window per *cause*
("invalid_image", "invalid_depth", "camera_info", ...), so each distinct problem is logged at least
once per window, and counts what it suppressed.

User text (expressions, frame ids, encodings from messages) is never interpolated raw into a log line:
an expression containing ``"\\n[FATAL] ..."`` would forge a log line. :func:`quote` escapes control
characters and cuts long text.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

__all__ = ["CauseThrottle", "quote"]


def quote(text: object, limit: int = 80) -> str:
    """``text`` as one double-quoted line: control characters escaped (JSON rules), cut to ``limit``."""
    s = text if isinstance(text, str) else repr(text)
    cut = len(s) > limit
    s = s[:limit]
    return json.dumps(s, ensure_ascii=False) + ("..." if cut else "")


class CauseThrottle:
    """Throttle log lines per cause: at most one line per ``period_s`` for each cause.

    Args:
        logger: an rclpy logger (anything with ``warning``/``error``/``info`` methods taking a string).
        period_s: window per cause.
        clock: monotonic time source (injectable for tests).
    """

    def __init__(self, logger, period_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.period_s = float(period_s)
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def _admit(self, cause: str) -> tuple[bool, int]:
        now = self.clock()
        with self._lock:
            last = self._last.get(cause)
            if last is not None and now - last < self.period_s:
                self._suppressed[cause] = self._suppressed.get(cause, 0) + 1
                return False, 0
            self._last[cause] = now
            return True, self._suppressed.pop(cause, 0)

    def _emit(self, level: str, cause: str, msg: str) -> bool:
        ok, suppressed = self._admit(cause)
        if ok:
            if suppressed:
                msg += f" ({suppressed} more like this in the last {self.period_s:g} s)"
            getattr(self.logger, level)(msg)
        return ok

    def warning(self, cause: str, msg: str) -> bool:
        """Log ``msg`` as a warning unless ``cause`` was logged within the window; True when logged."""
        return self._emit("warning", cause, msg)

    def error(self, cause: str, msg: str) -> bool:
        return self._emit("error", cause, msg)
