"""Commands that touch no pixels load no pixel stack: `--help`, `status`, `quarantine`, `rules
check|explain`, `echo` import neither torch nor cv2, dlib or facenet (they cost seconds at start-up); the ones
that read no DICOM (`--help`, `status`, `quarantine`) load no pydicom, pynetdicom, numpy or structlog either
(a few hundred ms), `rules check` no pydicom, numpy or structlog, and `rules explain` (without `--pixels`)
loads pydicom without its pixel and download stack (numpy, Pillow, requests). Their start-up times:
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
{preload}
from gateway.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)), file=sys.stderr)
"""


def run_cli(
    tmp_path: Path, argv: list[str], watched: tuple[str, ...], preload: str = ""
) -> tuple[list[str], str]:
    """(which of ``watched`` it imported, stdout) of a CLI command run in a fresh interpreter on an empty
    ledger; ``preload`` is run before the CLI is imported."""
    SqliteLedger(tmp_path / "ledger.sqlite3").close()
    probe = PROBE.format(heavy=watched, preload=preload)
    proc = subprocess.run(
        [sys.executable, "-c", probe, "--data-dir", str(tmp_path), *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.stderr.strip(), argv
    return list(json.loads(proc.stderr.strip().splitlines()[-1])), proc.stdout


def modules_loaded(tmp_path: Path, argv: list[str], watched: tuple[str, ...]) -> list[str]:
    """Which of ``watched`` a CLI command (run in a fresh interpreter on an empty ledger) imported."""
    return run_cli(tmp_path, argv, watched)[0]


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


def test_rules_explain_loads_pydicom_without_its_pixel_and_download_stack(tmp_path: Path) -> None:
    """pydicom's config imports every pixel handler (numpy, Pillow, pylibjpeg) and pydicom.data imports
    requests: ~0.15-0.2 s of CPU that a header-only explain never uses (dicom_rules/header_pydicom.py)."""
    from dicom_rules.header_pydicom import PIXEL_AND_DOWNLOAD_STACK

    small_sc = write_study(tmp_path / "in", [make_small_sc()])[0]
    argv = ["rules", "explain", str(small_sc)]
    loaded = modules_loaded(tmp_path, argv, ("pydicom", *PIXEL_AND_DOWNLOAD_STACK))
    assert loaded == ["pydicom"]


@pytest.mark.parametrize("photo", [False, True], ids=["small-sc", "jpeg-face-photo"])
def test_rules_explain_prints_the_same_with_the_lean_pydicom_as_with_the_full_one(
    tmp_path: Path, photo: bool
) -> None:
    """The reference path: the same command in an interpreter that loaded the full pydicom first (then the
    lean import does nothing) prints byte for byte the same explanation, secret-keyed pseudonyms included."""
    from anonymizer.keys import load_or_create_secret
    from tests.conftest import face_photos, make_vl_photo

    ds = make_vl_photo(face_photos(1)[0]) if photo else make_small_sc()
    path = write_study(tmp_path / "in", [ds])[0]
    secret = tmp_path / "secret"
    load_or_create_secret(secret)
    argv = ["rules", "explain", str(path), "--secret-file", str(secret)]
    lean_loaded, lean = run_cli(tmp_path, argv, ("numpy",))
    full_loaded, full = run_cli(tmp_path, argv, ("numpy",), preload="import pydicom")
    assert (lean_loaded, full_loaded) == ([], ["numpy"])  # the two paths really differ
    assert "route" in lean and "PatientName" in lean
    assert lean == full
