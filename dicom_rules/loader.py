"""Rule file → validated :class:`RuleSet`, or :class:`RulesError` listing every problem (file:line:col)."""

from __future__ import annotations

import difflib
import re
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from anonymizer.plans import MetadataPlan, PixelPlan, TagOverride, TextPlan
from dicom_rules.checks import check_document
from dicom_rules.decision import (
    BasicAuth,
    BearerAuth,
    Destination,
    DicomDestination,
    DicomWebDestination,
    FolderDestination,
    HttpsSettings,
    OAuth2ClientCredentials,
    RouteAction,
    RouteDecision,
    Source,
    TlsSettings,
    WebAuth,
)
from dicom_rules.hints import hint_for
from dicom_rules.lint import lint
from dicom_rules.matching import AttributeCondition, Route
from dicom_rules.model import (
    CALLING_AE,
    Condition,
    DicomDestinationModel,
    DicomWebDestinationModel,
    FolderDestinationModel,
    MetadataModel,
    PixelsModel,
    RouteModel,
    RulesFile,
    WebAuthModel,
    all_field_names,
)
from dicom_rules.ruleset import RuleSet
from dicom_rules.source import KEY, Loc, RuleError, RulesError, SourceDoc, load_source
from dicom_rules.tags import resolve, resolve_path

DEFAULT_RULES_PATH = Path(__file__).with_name("default.yaml")
AT_KEY_TYPES = frozenset({"extra_forbidden", "unknown_keyword", "unknown_tag"})
UNION_TAGS = frozenset({"str", "int", "float", "bool", "dicom", "folder", "dicomweb"})


def load_rule_file(path: Path, *, default_engine: str = "surrogate") -> RuleSet:
    if not path.is_file():
        raise RulesError([RuleError(Loc(path, 1, 1), "rule file not found", "check the path")])
    doc = load_source(path)
    model, errors = validate(doc)
    if model is None or errors:
        raise RulesError(errors)
    return compile_rules(model, doc, path, default_engine)


def validate(doc: SourceDoc) -> tuple[RulesFile | None, list[RuleError]]:
    """Shape validation (pydantic) plus whole-file checks; errors are deduplicated per location."""
    errors = list(doc.errors)
    if any(e.message.startswith(("YAML syntax", "not UTF-8")) for e in errors):
        return None, errors
    model = None
    try:
        model = RulesFile.model_validate(doc.data)
    except ValidationError as exc:
        errors += [_from_pydantic(doc, e) for e in exc.errors(include_url=False)]
    errors += [
        RuleError(doc.loc(f.path, at_key=f.at_key), f.message, f.hint) for f in check_document(doc.data)
    ]
    return model, _dedupe(errors)


def _from_pydantic(doc: SourceDoc, error: Any) -> RuleError:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    kind = error["type"]
    where = doc.loc(loc, at_key=kind in AT_KEY_TYPES)
    names = [p for p in loc if isinstance(p, str) and p not in UNION_TAGS and p != KEY]
    field = names[-1] if names else ""
    hint = hint_for(kind, field, error.get("ctx"))
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(field, sorted(all_field_names()), n=1)
        return RuleError(
            where,
            f"unknown key {field!r}",
            f"did you mean {close[0]!r}?"
            if close
            else "see `vera-gateway rules schema` for the allowed keys",
        )
    if kind == "missing":
        return RuleError(where, f"missing required key {field!r}", hint)
    message = error["msg"] if kind in _OWN_TYPES or not field else f"{field}: {error['msg']}"
    return RuleError(where, message, hint)


_OWN_TYPES = frozenset(
    {
        "unknown_keyword",
        "unknown_tag",
        "bad_cidr",
        "bad_regex",
        "conflict",
        "unsafe",
        "tls_pair",
        "tls_ca",
        "empty_condition",
    }
)


def _dedupe(errors: list[RuleError]) -> list[RuleError]:
    """Union members fail together at one place; keep the first error per location and message kind."""
    seen: set[tuple[Loc, str]] = set()
    out = []
    for error in errors:
        key = (error.loc, error.message.split(":")[0])
        if key not in seen:
            seen.add(key)
            out.append(error)
    return out


def compile_rules(model: RulesFile, doc: SourceDoc, path: Path, default_engine: str) -> RuleSet:
    name = model.name or path.stem
    sha = doc.sha256
    base = path.resolve().parent
    destinations = {n: _destination(n, d, base) for n, d in model.destinations.items()}
    routes = tuple(_route(r, destinations, name, sha, default_engine, base) for r in model.routes)
    return RuleSet(
        name=name,
        sha256=sha,
        sources=tuple(Source(s.ae_title, tuple(s.networks)) for s in model.sources),
        destinations=destinations,
        catch_all=routes[-1].decision,
        routes=routes,
        files=tuple(doc.files),
        warnings=tuple(str(w) for w in lint(model, doc, base)),
    )


def _destination(
    name: str, model: DicomDestinationModel | FolderDestinationModel | DicomWebDestinationModel, base: Path
) -> Destination:
    if isinstance(model, FolderDestinationModel):
        return FolderDestination(name=name, path=Path(model.folder))
    if isinstance(model, DicomWebDestinationModel):
        return _dicomweb(name, model, base)
    tls = None
    if model.tls is not None:
        t = model.tls
        tls = TlsSettings(
            certificate=_path(t.certificate, base),
            private_key=_path(t.private_key, base),
            ca_bundle=_path(t.ca_bundle, base),
            require_peer_certificate=t.require_peer_certificate,
        )
    return DicomDestination(name=name, ae_title=model.ae_title, host=model.host, port=model.port, tls=tls)


def _dicomweb(name: str, model: DicomWebDestinationModel, base: Path) -> DicomWebDestination:
    web = model.dicomweb
    tls = None
    if web.tls is not None:
        tls = HttpsSettings(
            ca_bundle=_path(web.tls.ca_bundle, base),
            certificate=_path(web.tls.certificate, base),
            private_key=_path(web.tls.private_key, base),
        )
    auth = _web_auth(web.auth, base) if web.auth is not None else None
    return DicomWebDestination(
        name=name, url=web.url.rstrip("/"), tls=tls, auth=auth, timeout_s=web.timeout_s
    )


def _web_auth(model: WebAuthModel, base: Path) -> WebAuth | None:
    """Secret files resolve against the rule file's folder like TLS files; their content is read at send."""
    if model.basic is not None:
        return BasicAuth(model.basic.username, base / Path(model.basic.password_file).expanduser())
    if model.bearer_token_file is not None:
        return BearerAuth(base / Path(model.bearer_token_file).expanduser())
    if model.oauth2 is not None:
        o = model.oauth2
        secret = base / Path(o.client_secret_file).expanduser()
        return OAuth2ClientCredentials(o.token_url, o.client_id, secret, o.scope)
    return None


def _path(text: str | None, base: Path) -> Path | None:
    """TLS files and checkpoints resolve against the rule file's folder."""
    return None if text is None else base / Path(text).expanduser()


def _route(
    model: RouteModel,
    destinations: dict[str, Destination],
    rules_name: str,
    sha: str,
    default_engine: str,
    base: Path,
) -> Route:
    if model.to is not None:
        action, destination, reason = RouteAction.FORWARD, destinations[model.to], ""
    elif model.quarantine is not None:
        action, destination, reason = RouteAction.QUARANTINE, None, model.quarantine
    else:
        action, destination, reason = RouteAction.DROP, None, model.drop or ""
    decision = RouteDecision(
        route_name=model.name,
        action=action,
        destination=destination,
        reason=reason,
        pixels=_pixel_plan(model.pixels, default_engine, base),
        metadata=_metadata_plan(model.metadata, rules_name, sha),
    )
    conditions = tuple(_condition(key, cond) for key, cond in model.match.items())
    return Route(name=model.name, conditions=conditions, decision=decision)


def _pixel_plan(model: PixelsModel, default_engine: str, base: Path) -> PixelPlan:
    options: dict[str, Any] = dict(model.options)
    if isinstance(options.get("checkpoint"), str):
        options["checkpoint"] = str(_path(options["checkpoint"], base))
    return PixelPlan(
        mode=model.mode,
        engine=model.engine or default_engine,
        preserve=tuple(model.preserve),
        pairing=model.pairing,
        no_face=model.no_face,
        no_patient_id=model.no_patient_id,
        fallback_engine=model.fallback_engine,
        jpeg_quality=model.jpeg_quality,
        engine_options=options,
        text=TextPlan(model.text, model.keep_text.regex if model.keep_text is not None else None),
        population_rank=model.verify.population_rank,
    )


def _metadata_plan(model: MetadataModel, rules_name: str, sha: str) -> MetadataPlan:
    overrides = tuple(
        TagOverride(tag=resolve(k).tag, action=o.action, value=o.value) for k, o in model.overrides.items()
    )
    return MetadataPlan(
        options=frozenset(model.options),
        strict=model.strict,
        overrides=overrides,
        safe_private=tuple(model.safe_private),
        allow_burned_in_annotation=model.allow_burned_in_annotation,
        rule_set_name=rules_name,
        rule_set_hash=sha,
        shift_time=model.shift_time,
        strict_keep=tuple(resolve(k).keyword or k for k in model.strict_keep),
        clean_vocabulary=tuple(model.clean_vocabulary),
        date_offset_min_days=model.date_offset_min_days,
        date_offset_max_days=model.date_offset_max_days,
        jpeg_full_scan=model.jpeg_full_scan,
    )


def _condition(key: str, cond: Condition) -> AttributeCondition:
    path = () if key == CALLING_AE else tuple(info.tag for info in resolve_path(key))
    tag, sequences = (path[-1], path[:-1]) if path else (-1, ())
    present = cond.present if cond.present is not None else (None if cond.absent is None else not cond.absent)
    bounds = tuple((op, float(v)) for op in ("lt", "le", "gt", "ge") if (v := getattr(cond, op)) is not None)
    return AttributeCondition(
        key=key,
        tag=tag,
        sequences=sequences,
        equals=cond.equals,
        one_of=cond.one_of,
        present=present,
        bounds=bounds,
        regex=re.compile(cond.regex) if cond.regex is not None else None,
    )


def default_rules(default_engine: str = "surrogate") -> RuleSet:
    """The shipped ``dicom_rules/default.yaml``: Basic Profile, modified dates, clean descriptors."""
    return _load_cached(DEFAULT_RULES_PATH, default_engine)


@cache
def _load_cached(path: Path, default_engine: str) -> RuleSet:
    return load_rules(path, default_engine=default_engine)


def load_rules(path: Path, *, default_engine: str = "surrogate") -> RuleSet:
    """Load and validate a rule file (plus includes). Raises :class:`dicom_rules.source.RulesError`.

    ``default_engine`` (from the gateway config) is used by routes whose pixels section names no engine.
    """
    return load_rule_file(Path(path), default_engine=default_engine)
