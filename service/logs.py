"""One JSON object per log line, for the service and for gunicorn alike, on stderr."""
from __future__ import annotations

import logging
import os
import sys
import time

import orjson
from gunicorn.glogging import Logger

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds; the seconds part is formatted once a second."""
    global _second
    second = int(created)
    if second != _second[0]:
        _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second[1]}.{int((created - second) * 1000):03d}Z"


def json_line(created: float, level: str, logger: str, message: str, fields) -> str:
    """The one shape of every line: time, level, logger, pid (which gunicorn worker),
    message, then the line's own fields."""
    entry = {"time": _timestamp(created), "level": level, "logger": logger,
             "pid": os.getpid(), "message": message}
    entry.update(fields)
    # orjson: a log line per request must cost microseconds, not tens of them.
    return orjson.dumps(entry, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def log_request(fields: dict) -> None:
    """The line every request gets, written straight to stderr: the same JSON as a `service`
    logger line, without the logging module's record, handler and lock (37 us a request down
    to about 5; bench/RESULTS.md). One write of a whole line to a line-buffered stream: no
    line waits in a buffer, so none is lost when the process stops."""
    sys.stderr.write(json_line(time.time(), "info", "service", "request", fields) + "\n")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {key: value for key, value in record.__dict__.items()
                  if key not in _STANDARD}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json_line(record.created, record.levelname.lower(), record.name,
                         record.getMessage(), fields)


class GunicornLogger(Logger):
    """gunicorn's logger without its access log: the service logs every request itself
    (log_request), and gunicorn would otherwise format an access line per request for a
    logger that prints nothing."""

    access_log_enabled = False

    def access(self, resp, req, environ, request_time) -> None:
        pass


def configure(level: str = "INFO") -> None:
    """JSON lines on stderr for the `service` logger (idempotent: create_app may run twice)."""
    logger = logging.getLogger("service")
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
