"""Fingerprint of the de-identified outputs: sha256 of every output file for a fixed set of inputs.

    .venv/bin/python bench/output_hashes.py [--cache DIR] [--out hashes.json] [--compare baseline.json]

Run it before a refactor and after: the two JSON files must be equal (a behaviour-preserving change gives
byte-identical outputs). Inputs are fixed (London-set photos wrapped as VL Photographic with fixed UIDs, plus
one small non-face Secondary Capture), the secret is fixed, and they run under the shipped default rules and
under the same rules with ``preserve: [nose]``, through both paths: the service worker's ``process_job`` and
``vera-gateway anonymize``. The donor bank (the tests' 8 identities) is built once into ``--cache``
(about 15 s); a run then takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import (  # noqa: E402
    DONOR_FACE_IDS,
    FACES,
    Patient,
    Study,
    make_small_sc,
    make_vl_photo,
    write_study,
)

SECRET = bytes(range(32))
RULE_SETS = ("default", "preserve-nose")


def _donor_bank(cache: Path) -> Path:
    path = cache / "donors.npz"
    if not path.is_file():
        from anonymizer.donors import build_bank, save_bank

        save_bank(build_bank(FACES, files=[FACES / f"{i}_03.jpg" for i in DONOR_FACE_IDS]), path)
    return path


def _fix_uids(ds: Any, sop_uid: str) -> Any:
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    return ds


def _inputs(folder: Path) -> list[Path]:
    """Two photos of one patient in one study, one of another patient, one non-face SC object."""
    root = "1.2.826.0.1.3680043.8.498.99"
    one, two = Patient(), Patient(patient_id="MRN-0099001", name="Roe^Richard", sex="M")
    study1 = Study(study_uid=f"{root}.1", series_uid=f"{root}.1.1")
    study2 = Study(study_uid=f"{root}.2", series_uid=f"{root}.2.1")
    datasets = [
        _fix_uids(make_vl_photo(FACES / "017_03.jpg", one, study1, 1), f"{root}.1.1.1"),
        _fix_uids(make_vl_photo(FACES / "017_08.jpg", one, study1, 2), f"{root}.1.1.2"),
        _fix_uids(make_vl_photo(FACES / "030_03.jpg", two, study2, 1), f"{root}.2.1.1"),
        _fix_uids(make_small_sc(one, study1, 3), f"{root}.1.1.3"),
    ]
    return write_study(folder, datasets)


def _rule_file(folder: Path, name: str) -> Path:
    from dicom_rules.loader import DEFAULT_RULES_PATH

    text = DEFAULT_RULES_PATH.read_text()
    if name == "preserve-nose":
        text = text.replace("preserve: []", "preserve: [nose]")
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _service_path(inputs: list[Path], rules_file: Path, bank: Path, outbox: Path) -> dict[str, Any]:
    import dicom_rules
    from gateway.core.jobs import InstanceSpec, JobSpec
    from gateway.core.pipeline import init_worker, process_job

    init_worker(SECRET, str(bank))
    instances = tuple(InstanceSpec(i, str(p), "CAMERA1", "127.0.0.1") for i, p in enumerate(inputs))
    spec = JobSpec(1, instances, str(outbox), dicom_rules.load_rules(rules_file))
    result = process_job(spec)
    return {
        inputs[item.instance_id].name: {
            "kind": str(item.kind),
            "reason": item.reason,
            "sha256": _sha(outbox / item.out_path) if item.out_path else "",
        }
        for item in result.items
    } | {"retry_reason": result.retry_reason}


def _offline_path(inputs: list[Path], rules_file: Path, bank: Path, out_dir: Path) -> dict[str, Any]:
    from gateway.cli import main

    secret = out_dir.parent / "secret.key"
    secret.write_text(SECRET.hex())  # the secret file format: hex text (raw bytes would be stripped)
    secret.chmod(0o600)
    argv = ["anonymize", str(inputs[0].parent), str(out_dir)]
    rc = main([*argv, "--rules", str(rules_file), "--secret", str(secret), "--donor-bank", str(bank)])
    return {"rc": rc} | {p.name: _sha(p) for p in sorted(out_dir.glob("*.dcm"))}


def run(cache: Path) -> dict[str, Any]:
    import shutil

    cache.mkdir(parents=True, exist_ok=True)
    bank = _donor_bank(cache)
    work = cache / "run"
    shutil.rmtree(work, ignore_errors=True)
    inputs = _inputs(work / "in")
    hashes: dict[str, Any] = {"inputs": {p.name: _sha(p) for p in inputs}}
    for name in RULE_SETS:
        rules_file = _rule_file(work, name)
        hashes[f"service/{name}"] = _service_path(inputs, rules_file, bank, work / name / "outbox")
        hashes[f"offline/{name}"] = _offline_path(inputs, rules_file, bank, work / name / "offline")
    return hashes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vera-output-hashes"))
    parser.add_argument("--out", type=Path, help="write the JSON here (default: print it)")
    parser.add_argument("--compare", type=Path, help="a baseline JSON: exit 1 unless identical")
    args = parser.parse_args()
    hashes = run(args.cache)
    text = json.dumps(hashes, indent=2, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    if args.compare:
        baseline = json.loads(args.compare.read_text())
        same = baseline == hashes
        print(f"identical to {args.compare}: {same}")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
