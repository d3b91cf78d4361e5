"""Logging setup for the service process (called by the CLI, never at import).

structlog renders one JSON object per line on stderr with an ``event`` name per state change; stdlib
loggers (pynetdicom, the association policy) go through the same renderer. Only pseudonymous identifiers
(patient pseudonyms, keyed hashes, hashes of output UIDs, ledger ids) are ever logged.
"""

from __future__ import annotations

import hashlib
import logging
import re
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


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\([^()]*\d[^()]*\)")
_UID_LIKE = re.compile(r"\b\d+(?:\.\d+){2,}\.?")
_LONG_NUMBER = re.compile(r"\d{6,}")
_REDACTED = "<redacted>"


def redact(text: str) -> str:
    """Remove what a third-party message may quote from a dataset or a peer: quoted, bracketed or
    parenthesised values, UID-like dotted numbers and long digit runs (IDs, dates)."""
    text = _QUOTED.sub(_REDACTED, text)
    text = _UID_LIKE.sub(_REDACTED, text)
    return _LONG_NUMBER.sub(_REDACTED, text)


class RedactThirdPartyValues(logging.Filter):
    """Every stdlib record (pydicom, pynetdicom, Python warnings, any other library) is rewritten before it is
    rendered: pydicom's validation warnings quote the value (an original UID, an age, a name), pynetdicom's
    quote sender-supplied UIDs (``Non-conformant 'Affected SOP Instance UID' value '…'``) and its tracebacks
    carry exception text. The message is redacted (:func:`redact`); an exception is reduced to its type and
    redacted message; stack info is dropped. Our own events go through structlog and carry no values."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = redact(record.getMessage())
        except Exception:  # a broken format string must not leak its arguments either
            text = "<unformattable message>"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" [{type(exc).__name__}: {redact(str(exc))}]"
        record.msg, record.args = text, None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def configure_logging(level: str = "INFO", receiver: int | None = None) -> None:
    """``receiver``: in a receiver process (gateway/core/receivers.py), its number, added to each record."""
    tag: list[structlog.types.Processor] = [] if receiver is None else [_Tag("receiver", receiver)]
    structlog.configure(
        processors=[
            *SHARED_PROCESSORS,
            *tag,
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
            foreign_pre_chain=[*SHARED_PROCESSORS, *tag, structlog.stdlib.add_logger_name],
        )
    )
    handler.addFilter(RedactThirdPartyValues())
    logging.captureWarnings(True)  # warnings.warn text (pydicom's quotes values) goes through the filter too
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


class _Tag:
    """A structlog processor adding one fixed key to every record."""

    def __init__(self, key: str, value: object) -> None:
        self.key, self.value = key, value

    def __call__(self, logger: object, name: str, event: dict[str, object]) -> dict[str, object]:
        event[self.key] = self.value
        return event
