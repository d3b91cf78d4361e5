"""``rules explain``: which route a DICOM file takes and why, and what happens to every attribute.

The header is de-identified for real (``anonymizer.metadata.deidentify`` on a copy), so before → after is
what the gateway would send. The output holds PHI: it is rendered to the admin's terminal only, never logged.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from anonymizer.keys import KeyRing
from anonymizer.metadata import deidentify
from anonymizer.plans import MetadataPlan, PixelMode, PixelReport, TextAction, TextReport
from dicom_rules.decision import RouteAction, RouteDecision, describe_destination
from dicom_rules.matching import ConditionResult
from dicom_rules.ruleset import RuleSet

MAX_SHOWN = 60
Why = Callable[[int, str], str]  # (tag, VR) → why the metadata stage acts on it, e.g. "table: uid"


@dataclass(frozen=True)
class RouteTrace:
    name: str
    matched: bool
    reached: bool  # False for routes after the first match
    results: tuple[ConditionResult, ...]


@dataclass(frozen=True)
class AttributeChange:
    path: str  # "(0010,0010)" or "(0040,A730)[0].(0008,0100)"
    keyword: str
    vr: str
    action: str  # kept | replaced | emptied | removed | added, plus "(override: …)" when a rule says so
    before: str  # PHI: terminal only
    after: str


@dataclass(frozen=True)
class Explanation:
    rules_name: str
    rules_sha256: str
    source_allowed: bool | None  # None: no calling AE/address given, sources not checked
    traces: tuple[RouteTrace, ...]
    decision: RouteDecision
    changes: tuple[AttributeChange, ...]
    note: str = ""
    text: TextReport | None = None  # the text step on the pixels as sent: counts and boxes only
    text_note: str = ""

    def change(self, keyword: str) -> AttributeChange:
        return next(c for c in self.changes if c.keyword == keyword)


def explain_file(path: Path, rules: RuleSet, **kwargs: object) -> Explanation:
    return explain(dcmread(path), rules, **kwargs)  # type: ignore[arg-type]


def explain(
    ds: Dataset,
    rules: RuleSet,
    *,
    calling_ae: str = "",
    calling_ip: str = "",
    keys: KeyRing | None = None,
    pixel_report: PixelReport | None = None,
    pixels: bool = True,
) -> Explanation:
    """Trace the routes, decide, and de-identify a copy of the header to show before → after; with ``pixels``
    also run the route's text step on the pixels as sent (it loads OpenCV and tesseract)."""
    decision = rules.decide(ds, calling_ae, calling_ip)
    if decision.action != RouteAction.FORWARD:
        changes: tuple[AttributeChange, ...] = ()
        note = f"not forwarded ({decision.action.value}: {decision.reason}); the header is not de-identified"
    else:
        changes, note = _changes(ds, decision, keys, pixel_report)
    text, text_note = _text(ds, decision, pixels) if decision.action == RouteAction.FORWARD else (None, "")
    return Explanation(
        rules.name,
        rules.sha256,
        rules.source_allowed(calling_ae, calling_ip) if calling_ae or calling_ip else None,
        tuple(_trace(ds, rules, calling_ae)),
        decision,
        changes,
        note,
        text,
        text_note,
    )


def _text(ds: Dataset, decision: RouteDecision, pixels: bool) -> tuple[TextReport | None, str]:
    """Run the route's text step on the pixels as sent (the face step is not run here)."""
    plan = decision.pixels
    if plan.mode is PixelMode.BLANK or plan.text.action is TextAction.KEEP or "PixelData" not in ds:
        return None, ""
    if not pixels:
        return None, "text step not run here (rules explain --pixels runs it on this file's pixels)"
    from anonymizer import codec
    from anonymizer.text.frames import check_frames
    from anonymizer.text.ocr import OcrUnavailable

    try:
        frames = codec.decode(ds)
        _, report, reason = check_frames(frames, plan.text, [None] * len(frames))
    except codec.CodecError as exc:
        return None, f"pixels not decodable ({exc}): the gateway would quarantine this file"
    except OcrUnavailable:
        return None, "OCR unavailable (see vera-gateway doctor): the gateway would quarantine this file"
    return report, f"the gateway would quarantine this file ({reason})" if reason else ""


def _changes(
    ds: Dataset, decision: RouteDecision, keys: KeyRing | None, pixel_report: PixelReport | None
) -> tuple[tuple[AttributeChange, ...], str]:
    note = "" if keys else "pseudonyms use a throw-away secret (pass --secret-file to match the gateway)"
    try:
        after = deidentify(
            copy.deepcopy(ds), decision.metadata, keys or KeyRing(secrets.token_bytes(32)), pixel_report
        )
    except Exception as exc:  # the gateway quarantines on these; explain says so instead of crashing
        reason = getattr(exc, "reason", type(exc).__name__)
        return (), f"the metadata stage refuses this file ({reason}: {exc}); the gateway would quarantine it"
    overrides = {o.tag: f"override: {o.action.value}" for o in decision.metadata.overrides}
    changes = _diff(ds, after, "", overrides, _planned(decision.metadata))
    if hasattr(ds, "file_meta"):
        changes += _diff(ds.file_meta, getattr(after, "file_meta", Dataset()), "meta:", {}, _no_plan)
    return tuple(changes), note


def _no_plan(tag: int, vr: str) -> str:
    return ""


def _planned(plan: MetadataPlan) -> Why:
    """The metadata stage's planned action per (tag, VR), e.g. 'table: uid'; '' when it cannot say."""
    try:
        from anonymizer.metadata.compiled import compile_plan

        compiled = compile_plan(plan)
    except Exception:  # internal API of the metadata stage: explain degrades to the observed actions
        return _no_plan

    def why(tag: int, vr: str) -> str:
        if (tag >> 16) & 1:
            return ""  # private: decided by the private-tag rules, not the table
        try:
            listed = compiled.actions.get(tag)
            entry = listed or compiled.fallback(tag, vr)
            return f"{'table' if listed else 'unlisted'}: {entry[0].name.lower()}"
        except Exception:
            return ""

    return why


def _trace(ds: Dataset, rules: RuleSet, calling_ae: str) -> list[RouteTrace]:
    traces, found = [], False
    for route in rules.routes:
        matched, results = route.evaluate(ds, calling_ae)
        traces.append(RouteTrace(route.name, matched and not found, not found, tuple(results)))
        found = found or matched
    return traces


def _diff(
    before: Dataset, after: Dataset, prefix: str, overrides: dict[int, str], why: Why
) -> list[AttributeChange]:
    out: list[AttributeChange] = []
    for elem in before:
        path = f"{prefix}{_tag(elem.tag)}"
        new = after.get(elem.tag) if after is not None else None
        reason = (overrides.get(elem.tag) if not prefix else None) or why(elem.tag, elem.VR)
        suffix = f" [{reason}]" if reason else ""
        if elem.VR == "SQ" and new is not None and new.VR == "SQ":
            action = _seq_action(elem, new) + suffix
            out.append(AttributeChange(path, elem.keyword, "SQ", action, _show(elem), _show(new)))
            for i, item in enumerate(elem.value):
                other = new.value[i] if i < len(new.value) else Dataset()
                out.extend(_diff(item, other, f"{path}[{i}].", {}, why))
            continue
        action = _action(elem, new) + suffix
        out.append(AttributeChange(path, elem.keyword, elem.VR, action, _show(elem), _show(new)))
    for elem in after if after is not None else ():
        if elem.tag not in before:
            out.append(
                AttributeChange(f"{prefix}{_tag(elem.tag)}", elem.keyword, elem.VR, "added", "—", _show(elem))
            )
    return out


def _action(old: DataElement, new: DataElement | None) -> str:
    if new is None:
        return "removed"
    if new.value == old.value:
        return "kept"
    return "emptied" if new.value in (None, "", b"", []) else "replaced"


def _seq_action(old: DataElement, new: DataElement) -> str:
    if not new.value:
        return "emptied" if old.value else "kept"
    return "cleaned" if new.value != old.value else "kept"


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _show(elem: DataElement | None) -> str:
    if elem is None:
        return "—"
    value = elem.value
    if elem.VR == "SQ":
        return f"<{len(value)} item{'s' if len(value) != 1 else ''}>"
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, MultiValue | list):
        value = "\\".join(str(v) for v in value)
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def render(expl: Explanation, console: Console, *, source: str = "") -> None:
    """Rich output for the admin's terminal (holds PHI: never send it to a log)."""
    console.print(
        f"[bold]rules[/] {escape(expl.rules_name)}  sha256 {expl.rules_sha256[:16]}  {escape(source)}"
    )
    if expl.source_allowed is False:
        console.print(
            "[red]calling AE title/address is not in sources: the gateway refuses the association[/]"
        )
    console.print(_routes_table(expl))
    d = expl.decision
    target = describe_destination(d.destination) if d.destination is not None else d.reason
    console.print(
        f"[bold]decision[/] route [cyan]{escape(d.route_name)}[/] → {d.action.value} {escape(target)}"
    )
    console.print(_plan_table(expl))
    if expl.note:
        console.print(f"[yellow]note:[/] {escape(expl.note)}")
    if expl.changes:
        console.print(_changes_table(expl))


def _routes_table(expl: Explanation) -> Table:
    table = Table(title="routes (first match wins)", show_lines=False)
    for col in ("#", "route", "result", "conditions (value tested)"):
        table.add_column(col)
    for i, t in enumerate(expl.traces, 1):
        result = "[green]MATCH[/]" if t.matched else ("no" if t.reached else "[dim]not reached[/]")
        conds = "\n".join(f"{'✔' if r.passed else '✘'} {r.label}  ({r.actual})" for r in t.results)
        table.add_row(str(i), Text(t.name), Text.from_markup(result), Text(conds or "(catch-all)"))
    return table


def _plan_table(expl: Explanation) -> Table:
    p, m = expl.decision.pixels, expl.decision.metadata
    table = Table(title="plan", show_header=False)
    table.add_column("what")
    table.add_column("value")
    _add(
        table,
        "pixels",
        f"mode {p.mode.value}, engine {p.engine}"
        + (f" (fallback {p.fallback_engine})" if p.fallback_engine else ""),
    )
    _add(table, "preserve", ", ".join(r.value for r in p.preserve) or "nothing")
    _add(table, "pairing / no face", f"{p.pairing.value} / {p.no_face.value}")
    _add(table, "no PatientID", p.no_patient_id.value)
    allow = f", keep lines matching {p.text.keep_regex}" if p.text.keep_regex else ""
    _add(table, "text", p.text.action.value + allow)
    if expl.text is not None:
        t = expl.text
        boxes = " ".join(f"({x0},{y0},{x1},{y1})" for x0, y0, x1, y1 in t.boxes[:8])
        _add(table, "text found", f"{t.found} line(s), {t.redacted} redacted, {t.kept} kept"
             + (f"; boxes {boxes}" if boxes else "") + (" [clean]" if t.clean else ""))
    if expl.text_note:
        _add(table, "text note", expl.text_note)
    if p.mode is PixelMode.ANONYMIZE:
        _add(table, "verification", _verification(p.population_rank))
    if p.engine_options:
        _add(table, "engine options", ", ".join(f"{k}={v}" for k, v in sorted(p.engine_options.items())))
    _add(
        table,
        "metadata",
        "basic profile + "
        + (", ".join(sorted(o.value for o in m.options)) or "no options")
        + (" (strict)" if m.strict else ""),
    )
    _add(table, "overrides", ", ".join(f"{_tag(o.tag)} {o.action.value}" for o in m.overrides) or "none")
    return table


def _add(table: Table, label: str, value: str) -> None:
    table.add_row(label, Text(value))  # Text, not markup: values may hold [brackets]


def _changes_table(expl: Explanation) -> Table:
    table = Table(title="attributes (before → after)")
    for col in ("tag", "keyword", "VR", "action", "before", "after"):
        table.add_column(col, overflow="fold")
    for c in expl.changes:
        style = "dim" if c.action.startswith("kept") else None
        cells = (c.path, c.keyword, c.vr, c.action, c.before, c.after)
        table.add_row(*(Text(cell) for cell in cells), style=style)
    return table


def _verification(population_rank: int) -> str:
    if population_rank == 0:
        return "dlib threshold only; population (linkage) test OFF: outputs may link back to their patient"
    return f"dlib threshold + population test (>= {population_rank} real face(s) nearer than the patient)"
