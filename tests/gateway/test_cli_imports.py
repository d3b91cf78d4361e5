"""Commands that touch no pixels load no pixel stack: `--help`, `status`, `quarantine`, `rules check`, `echo`
import neither torch nor cv2, dlib or facenet (they cost seconds at start-up)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.core.ledger import SqliteLedger

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "cv2", "dlib", "facenet_pytorch")
PROBE = """
import json, sys
from gateway.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["status"],
        ["quarantine", "list"],
        ["rules", "check", str(REPO / "dicom_rules" / "default.yaml")],
        ["echo", "NOBODY@127.0.0.1:9"],
        ["echo", "http://127.0.0.1:9/dicom-web"],
        ["quarantine", "show", "1"],
    ],
)
def test_pixel_free_command_does_not_import_the_pixel_stack(tmp_path: Path, argv: list[str]) -> None:
    SqliteLedger(tmp_path / "ledger.sqlite3").close()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), "--data-dir", str(tmp_path), *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    loaded = json.loads(proc.stderr.strip().splitlines()[-1])
    assert loaded == [], (argv, loaded)


def test_the_full_parser_still_knows_every_module_command() -> None:
    from gateway.cli.app import COMMAND_MODULES, build_parser

    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(COMMAND_MODULES) <= set(choices)
    assert all(choices[name].add_help for name in COMMAND_MODULES)  # real parsers, not --help stubs
    assert callable(parser.parse_args(["rules", "check", "x.yaml"]).func)
