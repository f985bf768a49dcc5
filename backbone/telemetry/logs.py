"""Structured JSON logs: one object per line, with correlation and trace IDs on each.

setup_logging(service="trading", instance_id="trading-1", log_dir=Path("var/log"))
log.info("order filled", extra={"order_id": oid})
-> {"ts": "...", "level": "INFO", "service": "trading", "msg": "order filled",
    "correlation_id": "...", "trace_id": "...", "span_id": "...", "order_id": "..."}
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import trace

from backbone.telemetry.correlation import get_correlation_id

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, instance_id: str) -> None:
        super().__init__()
        self.service = service
        self.instance_id = instance_id

    def format(self, record: logging.LogRecord) -> str:
        # stderr and the file format the same record: build the line once.
        cached = record.__dict__.get("_astra_json")
        if isinstance(cached, str):
            return cached
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname,
            "service": self.service,
            "instance": self.instance_id,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = get_correlation_id()
        if cid is not None:
            body["correlation_id"] = cid
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            body["trace_id"] = format(ctx.trace_id, "032x")
            body["span_id"] = format(ctx.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in body:
                body[key] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        line = orjson.dumps(body, default=str).decode()
        record.__dict__["_astra_json"] = line
        return line


def log_file(log_dir: Path, service: str, instance_id: str) -> Path:
    return log_dir / f"{instance_id or service}.jsonl"


def setup_logging(
    *,
    service: str,
    instance_id: str,
    level: str = "INFO",
    log_dir: Path | None = None,
    stream: bool = True,
) -> None:
    """Replace the root handlers with JSON ones (stderr and, if given, a per-process file)."""
    formatter = JsonFormatter(service, instance_id)
    handlers: list[logging.Handler] = []
    if stream:
        handlers.append(logging.StreamHandler(sys.stderr))
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file(log_dir, service, instance_id)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own access log duplicates ours; keep its errors.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
