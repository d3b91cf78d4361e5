"""Warnings for a valid rule file: things that load but deserve a second look. They never block loading."""

from __future__ import annotations

from pathlib import Path

from dicom_rules.model import DicomDestinationModel, RulesFile
from dicom_rules.source import RuleError, SourceDoc


def lint(model: RulesFile, doc: SourceDoc, base: Path) -> list[RuleError]:
    """Unused destinations, an open sender list, missing TLS and checkpoint files."""
    found = _unused_destinations(model, doc) + _missing_files(model, doc, base)
    if not model.sources:
        found.append(
            _warning(
                doc,
                (),
                "no sources: any AE title from any address may store to the gateway",
                "list the senders under sources (AE title + networks)",
            )
        )
    return found


def _warning(doc: SourceDoc, path: tuple[str | int, ...], message: str, hint: str) -> RuleError:
    return RuleError(doc.loc(path, at_key=True), message, hint, severity="warning")


def _unused_destinations(model: RulesFile, doc: SourceDoc) -> list[RuleError]:
    used = {r.to for r in model.routes}
    return [
        _warning(
            doc,
            ("destinations", name),
            f"destination {name!r} is not used by any route",
            "remove it, or route to it",
        )
        for name in model.destinations
        if name not in used
    ]


def _missing_files(model: RulesFile, doc: SourceDoc, base: Path) -> list[RuleError]:
    found = []
    for name, dest in model.destinations.items():
        if not isinstance(dest, DicomDestinationModel) or dest.tls is None:
            continue
        for key in ("certificate", "private_key", "ca_bundle"):
            value = getattr(dest.tls, key)
            if value is not None and not (base / value).expanduser().is_file():
                found.append(
                    _warning(
                        doc,
                        ("destinations", name, "tls", key),
                        f"{key} file {value} not found",
                        f"paths are relative to {base}; the gateway cannot connect without it",
                    )
                )
    for i, route in enumerate(model.routes):
        checkpoint = route.pixels.options.get("checkpoint")
        if isinstance(checkpoint, str) and not (base / checkpoint).expanduser().is_file():
            found.append(
                _warning(
                    doc,
                    ("routes", i, "pixels", "options", "checkpoint"),
                    f"checkpoint {checkpoint} not found",
                    f"paths are relative to {base}",
                )
            )
    return found
