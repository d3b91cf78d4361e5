"""``vera-gateway rules check|explain|schema``. Register with :func:`add_parser` on the gateway's subparsers.

``explain`` prints PHI (before values) to the admin's terminal only; nothing here logs.
Regenerate the shipped schema with ``python -m dicom_rules.cli schema > dicom_rules/rules.schema.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from anonymizer.keys import KeyRing, SecretError, load_or_create_secret
from dicom_rules.loader import DEFAULT_RULES_PATH, load_rules
from dicom_rules.model import RulesFile
from dicom_rules.ruleset import RuleSet
from dicom_rules.source import RulesError

SCHEMA_PATH = Path(__file__).with_name("rules.schema.json")


def schema_text() -> str:
    """The JSON Schema of rule files, generated from the pydantic models (what editors validate with)."""
    schema: dict[str, Any] = RulesFile.model_json_schema(mode="validation")
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``rules`` with its sub-commands; each sets ``func(args) -> int`` as the parser default."""
    rules: argparse.ArgumentParser = subparsers.add_parser(
        "rules", help="check, explain and describe rule files"
    )
    sub = rules.add_subparsers(dest="rules_command", required=True)
    check = sub.add_parser("check", help="validate a rule file (and its includes)")
    check.add_argument("file", type=Path)
    check.add_argument("--strict", action="store_true", help="fail on warnings too (for CI)")
    check.set_defaults(func=cmd_check)
    explain = sub.add_parser("explain", help="show the route and before → after of every attribute")
    explain.add_argument("dicom_file", type=Path)
    explain.add_argument("--rules", type=Path, default=None, help="rule file (default: the shipped default)")
    explain.add_argument("--calling-ae", default="", help="calling AE title to assume")
    explain.add_argument("--calling-ip", default="", help="calling address to assume")
    explain.add_argument(
        "--secret-file",
        type=Path,
        default=None,
        help="gateway secret, so pseudonyms match the gateway's (default: a throw-away key)",
    )
    explain.add_argument(
        "--pixels",
        action="store_true",
        help="also run the route's text step on the pixels (counts and boxes; loads OpenCV and tesseract)",
    )
    explain.set_defaults(func=cmd_explain)
    schema = sub.add_parser("schema", help="print the JSON Schema of rule files")
    schema.set_defaults(func=cmd_schema)
    return rules


def cmd_check(args: argparse.Namespace) -> int:
    console = Console()
    try:
        rules = load_rules(args.file)
    except RulesError as exc:
        for error in exc.errors:
            console.print(str(error), markup=False, highlight=False, soft_wrap=True)
        console.print(f"{len(exc.errors)} error(s)", style="red")
        return 1
    console.print(_summary(rules))
    for warning in rules.warnings:
        console.print(warning, style="yellow", markup=False, highlight=False, soft_wrap=True)
    if args.strict and rules.warnings:
        console.print(f"{len(rules.warnings)} warning(s) with --strict", style="red")
        return 1
    console.print(f"OK {rules.name} sha256 {rules.sha256}", style="green", soft_wrap=True)
    return 0


def _summary(rules: RuleSet) -> Table:
    table = Table(title=f"{rules.name}: {len(rules.routes)} routes, {len(rules.sources)} sources")
    for col in ("#", "route", "when", "then", "pixels"):
        table.add_column(col)
    for i, route in enumerate(rules.routes, 1):
        d = route.decision
        when = "\n".join(c.describe() for c in route.conditions) or "(catch-all)"
        then = f"{d.action.value} {d.destination.name if d.destination else d.reason}"
        p = d.pixels
        pixels = f"{p.mode.value} {p.engine} preserve={','.join(r.value for r in p.preserve) or '-'}"
        table.add_row(str(i), *(Text(cell) for cell in (route.name, when, then, pixels)))
    return table


def cmd_explain(args: argparse.Namespace) -> int:
    if not args.pixels:  # header only: pydicom without numpy, Pillow or requests (start-up <= 0.3 s)
        from dicom_rules.header_pydicom import load_pydicom_for_headers

        load_pydicom_for_headers()
    from dicom_rules.explain import explain_file, render  # imports pydicom's reader and the anonymizer

    console = Console()
    try:
        rules = load_rules(args.rules or DEFAULT_RULES_PATH)
        keys = KeyRing(load_or_create_secret(args.secret_file, create=False)) if args.secret_file else None
    except (RulesError, SecretError) as exc:
        console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        return 1
    expl = explain_file(
        args.dicom_file,
        rules,
        calling_ae=args.calling_ae,
        calling_ip=args.calling_ip,
        keys=keys,
        pixels=args.pixels,
    )
    render(expl, console, source=str(args.dicom_file))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dicom-rules")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["rules", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
