"""Structured JSON logs for every process (API, Dagster runs, CLI), with a request id when one
is in context."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "numbase_request_id", default=None
)

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Dagster attaches its whole event to each record; the run id and step are what a reader needs.
_DAGSTER_BULK = {"dagster_meta", "dagster_event", "dagster_event_batch_metadata"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        meta = getattr(record, "dagster_meta", None)
        if isinstance(meta, dict):
            for key in ("run_id", "job_name", "step_key"):
                if meta.get(key):
                    entry[key] = meta[key]
            if meta.get("orig_message"):
                entry["msg"] = meta["orig_message"]
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _DAGSTER_BULK and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now (test runners and daemons swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the `numbase` loggers (idempotent)."""
    logger = logging.getLogger("numbase")
    logger.setLevel(level)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    logger.propagate = False
