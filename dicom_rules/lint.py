"""Warnings for a valid rule file: things that load but deserve a second look. They never block loading."""

from __future__ import annotations

from pathlib import Path

from dicom_rules.model import DicomDestinationModel, DicomWebDestinationModel, RulesFile
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
        for where, value in _destination_files(dest):
            if not (base / value).expanduser().is_file():
                found.append(
                    _warning(
                        doc,
                        ("destinations", name, *where),
                        f"{where[-1]} file {value} not found",
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


def _destination_files(dest: object) -> list[tuple[tuple[str, ...], str]]:
    """(YAML path, file) of every TLS and secret file a destination names."""
    files: list[tuple[tuple[str, ...], str]] = []
    tls = getattr(dest, "tls", None) if isinstance(dest, DicomDestinationModel) else None
    if isinstance(dest, DicomWebDestinationModel):
        tls, auth = dest.dicomweb.tls, dest.dicomweb.auth
        if auth is not None and auth.basic is not None:
            files.append((("dicomweb", "auth", "basic", "password_file"), auth.basic.password_file))
        if auth is not None and auth.bearer_token_file is not None:
            files.append((("dicomweb", "auth", "bearer_token_file"), auth.bearer_token_file))
        if auth is not None and auth.oauth2 is not None:
            files.append(
                (("dicomweb", "auth", "oauth2", "client_secret_file"), auth.oauth2.client_secret_file)
            )
        prefix: tuple[str, ...] = ("dicomweb", "tls")
    else:
        prefix = ("tls",)
    for key in ("certificate", "private_key", "ca_bundle"):
        value = getattr(tls, key, None) if tls is not None else None
        if value is not None:
            files.append(((*prefix, key), value))
    return files
