"""Logging setup for the service process (called by the CLI, never at import).

structlog renders one JSON object per line on stderr with an ``event`` name per state change; stdlib
loggers (pynetdicom, the association policy) go through the same renderer. Only pseudonymous identifiers
(patient pseudonyms, keyed hashes, hashes of output UIDs, ledger ids) are ever logged.
"""

from __future__ import annotations

import hashlib
import logging
import sys

import structlog

SHARED_PROCESSORS: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def uid_hash(uid: str) -> str:
    """A short hash of an output UID for logs: under Retain UIDs the output UID is the hospital's own."""
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:16]


class RedactQuotedValues(logging.Filter):
    """pydicom's validation warnings quote the dataset value (``Invalid value for VR UI: '1.2.0840…'``: an
    original UID, an age, a name). Records from pydicom and from Python warnings keep only the text before the
    first quote."""

    LOGGERS = ("pydicom", "py.warnings")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(self.LOGGERS):
            text = record.getMessage()
            cut = min((i for i in (text.find("'"), text.find('"')) if i >= 0), default=-1)
            if cut >= 0:
                record.msg, record.args = text[:cut].rstrip() + " <value redacted>", None
        return True


def configure_logging(level: str = "INFO") -> None:
    structlog.configure(
        processors=[
            *SHARED_PROCESSORS,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*SHARED_PROCESSORS, structlog.stdlib.add_logger_name],
        )
    )
    handler.addFilter(RedactQuotedValues())
    logging.captureWarnings(True)  # warnings.warn text (pydicom's quotes values) goes through the filter too
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
