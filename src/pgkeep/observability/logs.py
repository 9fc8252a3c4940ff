"""Structured JSON logs (structlog).

Events carry backup id, type, phase, duration and size as fields. Nothing
here ever receives a password: connection details are logged only through
``Target.describe()``.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(json_output: bool = True, level: int = logging.INFO) -> None:
    """Route structlog and stdlib logging to one JSON-lines stream on stderr."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request with its full URL at INFO: a webhook URL is often its secret
    # (Slack, Teams). pgkeep logs the host of each delivery itself (observability/notify.py).
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))


def _route_to_stdlib() -> None:
    """Until :func:`configure` runs, send events through stdlib logging.

    Danger: unconfigured structlog prints to *stdout*, which would corrupt
    the CLI's ``--json`` output. Through stdlib, an unconfigured process
    shows only warnings and errors, on stderr.
    """
    if not structlog.is_configured():
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.stdlib.render_to_log_kwargs,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )


def get_logger(name: str = "pgkeep") -> structlog.stdlib.BoundLogger:
    _route_to_stdlib()
    return structlog.get_logger(name)
