"""Logging, configured once by the entry point (``npo`` in bot/cli/commands.py) from Settings.

Every line goes to stderr, one line per record: ``plain`` is for a terminal (timestamp,
level, logger, message, then the structured fields as ``key=value``), ``json`` is one
object per line for a log pipeline. The structured fields are whatever a call passes in
``extra`` (``event_id``, ``recommendation_id``, ``latency_ms`` …), so an operator can grep
or query one event's whole story.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_MARK = "_npo_handler"  # set on our handler, so configuring again replaces it
# Libraries that narrate routine work at INFO (migrations' plugins, every scheduler run,
# model loading, HTTP connections): only their warnings are shown unless the level is DEBUG.
CHATTY_LIBRARIES = (
    "alembic",
    "apscheduler",
    "sentence_transformers",
    "chromadb",
    "httpx",
    "urllib3",
)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields passed in ``extra``, in the order they were given."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _timestamp(record: logging.LogRecord) -> str:
    when = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain_value(value: object) -> str:
    text = str(value)
    if text and not any(c.isspace() or c in '="' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """``2026-12-01T03:04:05.678Z INFO bot.slack.flows: recommendation posted event_id=…``"""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\n", "\\n")  # one record, one line
        parts = [_timestamp(record), record.levelname, f"{record.name}:", message]
        parts += [f"{k}={_plain_value(v)}" for k, v in fields_of(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the ``extra`` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            doc.setdefault(key, value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current ``sys.stderr``, even when it is replaced after configuring
    (test runners, daemonising wrappers)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str, fmt: str) -> logging.Handler:
    """Send every logger's records at ``level`` and above to stderr as ``fmt`` (plain or
    json); returns the handler. Calling it again replaces the handler it installed."""
    formatters: dict[str, type[logging.Formatter]] = {
        "plain": PlainFormatter,
        "json": JsonFormatter,
    }
    if fmt not in formatters:
        raise ValueError(f"log format must be plain or json, got {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(formatters[fmt]())
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(
            max(numeric, logging.WARNING) if numeric > logging.DEBUG else logging.NOTSET
        )
    return handler
