"""Typed failures of the metadata stage. The gateway quarantines on any :class:`MetadataError`.

Messages never carry PHI: they name tags and rules, never values.
"""

from __future__ import annotations


class MetadataError(Exception):
    """The header could not be de-identified safely; the instance must not be forwarded."""

    reason = "metadata"


class BurnedInAnnotationError(MetadataError):
    """BurnedInAnnotation is YES and the plan does not allow it."""

    reason = "burned-in-annotation"


class UnsupportedPixelEncodingError(MetadataError):
    """An encapsulated JPEG frame could not be parsed, so its markers cannot be stripped."""

    reason = "jpeg-markers"


class ProfileTableError(MetadataError):
    """The shipped profile table is missing or malformed."""

    reason = "profile-table"
