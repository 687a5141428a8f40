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
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["CauseThrottle", "RosLogHandler", "quote", "route_library_logs"]


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

    def _text(self, cause: str, msg: str) -> str | None:
        ok, suppressed = self._admit(cause)
        if not ok:
            return None
        if suppressed:
            msg += f" ({suppressed} more like this in the last {self.period_s:g} s)"
        return msg

    # rclpy caches the severity per call site ("Logger severity cannot be changed between calls"):
    # each severity gets its own call below.
    def warning(self, cause: str, msg: str) -> bool:
        """Log ``msg`` as a warning unless ``cause`` was logged within the window; True when logged."""
        text = self._text(cause, msg)
        if text is not None:
            self.logger.warning(text)
        return text is not None

    def error(self, cause: str, msg: str) -> bool:
        text = self._text(cause, msg)
        if text is not None:
            self.logger.error(text)
        return text is not None


class RosLogHandler(logging.Handler):
    """Forwards the library's Python ``logging`` records (``ros2_iterprime.*``) to an rclpy logger.

    The library logs which weight file it read, the tiny-random warning, ...; in the node these belong
    in the ROS log (console, /rosout, log files), not on a bare stderr.
    """

    def __init__(self, ros_logger):
        super().__init__(level=logging.INFO)
        self.ros_logger = ros_logger
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            # one call site per severity (rclpy caches the severity per call site)
            if record.levelno >= logging.ERROR:
                self.ros_logger.error(msg)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(msg)
            else:
                self.ros_logger.info(msg)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def route_library_logs(ros_logger) -> RosLogHandler:
    """Send ``ros2_iterprime.*`` Python log records at INFO and above to ``ros_logger``."""
    lib = logging.getLogger("ros2_iterprime")
    for h in list(lib.handlers):
        if isinstance(h, RosLogHandler):
            lib.removeHandler(h)
    handler = RosLogHandler(ros_logger)
    lib.addHandler(handler)
    lib.setLevel(logging.INFO)
    lib.propagate = False
    return handler
