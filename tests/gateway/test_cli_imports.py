"""Commands that touch no pixels load no pixel stack: `--help`, `status`, `quarantine`, `rules
check|explain`, `echo` import neither torch nor cv2, dlib or facenet (they cost seconds at start-up); the ones
that read no DICOM (`--help`, `status`, `quarantine`) load no pydicom, pynetdicom, numpy or structlog either
(a few hundred ms), and `rules check` no pydicom, numpy or structlog. Their start-up times:
bench/cli_startup.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.core.ledger import SqliteLedger
from tests.conftest import make_small_sc, write_study

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "cv2", "dlib", "facenet_pytorch")
DICOM = ("pydicom", "pynetdicom", "structlog", "numpy")
PROBE = """
import json, sys
from gateway.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)), file=sys.stderr)
"""


def modules_loaded(tmp_path: Path, argv: list[str], watched: tuple[str, ...]) -> list[str]:
    """Which of ``watched`` a CLI command (run in a fresh interpreter on an empty ledger) imported."""
    SqliteLedger(tmp_path / "ledger.sqlite3").close()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=watched), "--data-dir", str(tmp_path), *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.stderr.strip(), argv
    return list(json.loads(proc.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["status"],
        ["quarantine", "list"],
        ["rules", "check", str(REPO / "dicom_rules" / "default.yaml")],
        ["rules", "explain", "{small_sc}"],
        ["echo", "NOBODY@127.0.0.1:9"],
        ["echo", "http://127.0.0.1:9/dicom-web"],
        ["quarantine", "show", "1"],
    ],
)
def test_pixel_free_command_does_not_import_the_pixel_stack(tmp_path: Path, argv: list[str]) -> None:
    small_sc = write_study(tmp_path / "in", [make_small_sc()])[0]
    argv = [a.replace("{small_sc}", str(small_sc)) for a in argv]
    assert modules_loaded(tmp_path, argv, HEAVY) == [], argv


@pytest.mark.parametrize(
    "argv", [["--help"], ["status"], ["quarantine", "list"], ["quarantine", "show", "1"]]
)
def test_ledger_only_command_does_not_import_the_dicom_stack(tmp_path: Path, argv: list[str]) -> None:
    assert modules_loaded(tmp_path, argv, DICOM) == [], argv


def test_rules_check_resolves_keywords_without_pydicom(tmp_path: Path) -> None:
    """`rules check` reads the generated data dictionary (dicom_rules/dictionary.py) instead of pydicom's."""
    argv = ["rules", "check", str(REPO / "dicom_rules" / "default.yaml")]
    assert modules_loaded(tmp_path, argv, ("pydicom", "numpy", "structlog")) == []


def test_echo_to_a_dicom_peer_loads_no_dicom_stack(tmp_path: Path) -> None:
    """`echo AE@host:port` speaks C-ECHO on a bare socket (gateway/core/verification.py): pynetdicom would
    import pydicom's pixel stack, about 0.2-0.3 s of a 0.3 s start-up budget."""
    assert modules_loaded(tmp_path, ["echo", "NOBODY@127.0.0.1:9"], DICOM) == []


def test_the_full_parser_still_knows_every_module_command() -> None:
    from gateway.cli.app import COMMAND_MODULES, build_parser

    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(COMMAND_MODULES) <= set(choices)
    assert all(choices[name].add_help for name in COMMAND_MODULES)  # real parsers, not --help stubs
    assert callable(parser.parse_args(["rules", "check", "x.yaml"]).func)
