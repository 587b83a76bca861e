"""structlog for abdr: JSON lines when not on a TTY (or ABDR_LOG_FORMAT=json), readable
console output otherwise. Standard-library loggers (temporalio's `workflow.logger` and
`activity.logger` included) go through the same formatter, so every line carries the
workflow/activity context the SDK attaches (`temporal_workflow`, `temporal_activity`)."""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import EventDict, Processor


def _temporal_context(_: object, __: str, event_dict: EventDict) -> EventDict:
    """Lift the SDK's `extra` context dicts into top-level keys of the event."""
    record = event_dict.get("_record")
    if record is not None:
        for key in ("temporal_workflow", "temporal_activity"):
            ctx = getattr(record, key, None)
            if isinstance(ctx, dict):
                for k, v in ctx.items():
                    event_dict.setdefault(k, v)
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, _temporal_context],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
