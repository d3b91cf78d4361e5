"""Offline face-pipeline commands: ``donors build|ensure``, ``anonymize IN_DIR OUT_DIR``, ``import-photos``.

These run the same pixel + metadata pipeline as the service, on files, without the network.
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_LONDON_SET = REPO_ROOT.parent / "shared" / "data" / "faces" / "london_set"
DONOR_PHOTOS_ENV = "VERA_DONOR_PHOTOS"
console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "data_dir", None) or "var")


def default_bank_path(args: argparse.Namespace) -> Path:
    return Path(os.environ.get("VERA_DONOR_BANK") or _data_dir(args) / "donors.npz")


def _build(photos: Path, out: Path) -> int:
    from anonymizer.donors import DonorBankError, build_bank, save_bank

    with _progress() as bar:
        task = bar.add_task("donor photos", total=None)
        try:
            bank = build_bank(
                photos, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
        except DonorBankError as exc:
            console.print(f"[red]{exc}")
            return 1
    save_bank(bank, out)
    console.print(
        f"donor bank {out}: {bank.meta['photos']} photos of {bank.meta['identities']} identities "
        f"({bank.meta['skipped']} skipped)"
    )
    return 0


def cmd_donors_build(args: argparse.Namespace) -> int:
    return _build(args.dir, args.output)


def cmd_donors_ensure(args: argparse.Namespace) -> int:
    """Build the default bank once from consented photos ($VERA_DONOR_PHOTOS, else ../shared London Set)."""
    from anonymizer.donors import LONDON_SET_HINT

    out = args.output or default_bank_path(args)
    if out.is_file():
        console.print(f"donor bank {out} present")
        return 0
    photos = args.photos or Path(os.environ.get(DONOR_PHOTOS_ENV) or SHARED_LONDON_SET)
    if not photos.is_dir():
        console.print(
            f"[yellow]no donor bank at {out} and no donor photos at {photos}.[/] {LONDON_SET_HINT} "
            f"Until then, routes using the surrogate engine quarantine every face photo."
        )
        return 0
    return _build(photos, out)


def _dicom_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            yield path


def _read_all(folder: Path) -> tuple[list[Any], int]:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    datasets, unreadable = [], 0
    for path in _dicom_files(folder):
        try:
            datasets.append(dcmread(path))
        except (InvalidDicomError, OSError, ValueError):
            unreadable += 1
    return datasets, unreadable


def _groups(datasets: list[Any], rules: Any, keys: Any) -> dict[tuple[str, str], list[tuple[Any, Any]]]:
    """Photos of one patient (or study, per the pairing scope) on one route share one identity."""
    from anonymizer.plans import PairingScope

    groups: dict[tuple[str, str], list[tuple[Any, Any]]] = defaultdict(list)
    for ds in datasets:
        decision = rules.decide(ds)
        pseudonym = keys.patient_pseudonym(str(ds.get("PatientID", "")), str(ds.get("IssuerOfPatientID", "")))
        scope = str(ds.get("StudyInstanceUID", "")) if decision.pixels.pairing is PairingScope.STUDY else ""
        groups[(decision.route_name, pseudonym + "|" + scope)].append((ds, decision))
    return groups


def _process_group(items: list[tuple[Any, Any]], keys: Any, out_dir: Path, tally: dict[str, int]) -> None:
    from anonymizer import pixel_stage
    from anonymizer.metadata import deidentify
    from anonymizer.outcomes import Ok
    from dicom_rules.decision import RouteAction

    forward = [(ds, d) for ds, d in items if d.action is RouteAction.FORWARD]
    tally["dropped or quarantined by rule"] += len(items) - len(forward)
    if not forward:
        return
    seed = keys.identity_seed(
        keys.patient_pseudonym(
            str(forward[0][0].get("PatientID", "")), str(forward[0][0].get("IssuerOfPatientID", ""))
        )
    )
    outcomes = pixel_stage.anonymize_group([ds for ds, _ in forward], forward[0][1].pixels, seed)
    for (_, decision), outcome in zip(forward, outcomes, strict=True):
        if not isinstance(outcome, Ok):
            tally[f"quarantined: {outcome.reason}"] += 1
            continue
        try:
            out = deidentify(outcome.dataset, decision.metadata, keys, outcome.report)
        except Exception as exc:
            tally[f"quarantined: metadata-{type(exc).__name__}"] += 1
            continue
        target = out_dir / f"{out.SOPInstanceUID}.dcm"
        tmp = target.with_suffix(".tmp")
        out.save_as(tmp, enforce_file_format=True)
        tmp.replace(target)
        tally["anonymized"] += 1


def cmd_anonymize(args: argparse.Namespace) -> int:
    from anonymizer import pixel_stage
    from anonymizer.keys import KeyRing, load_or_create_secret

    rules = _rules(args.rules)
    keys = KeyRing(load_or_create_secret(args.secret or _data_dir(args) / "secret.key"))
    pixel_stage.configure(pixel_stage.PixelSettings(donor_bank=args.donor_bank or default_bank_path(args)))
    datasets, unreadable = _read_all(args.in_dir)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tally: dict[str, int] = defaultdict(int)
    tally["unreadable"] = unreadable
    groups = _groups(datasets, rules, keys)
    with _progress() as bar:
        task = bar.add_task("patients", total=len(groups))
        for items in groups.values():
            _process_group(items, keys, args.out_dir, tally)
            bar.advance(task)
    for what, count in sorted(tally.items()):
        if count:
            console.print(f"{what}: {count}")
    return 0 if tally["anonymized"] == len(datasets) else 2


def _rules(path: Path | None) -> Any:
    import dicom_rules

    return dicom_rules.load_rules(path) if path else dicom_rules.default_rules()


def cmd_import_photos(args: argparse.Namespace) -> int:
    """JPEGs stay byte-identical (encapsulated); PNGs and others are stored uncompressed."""
    import numpy as np
    from PIL import Image
    from pydicom.uid import generate_uid

    from anonymizer.photo_dicom import PhotoContext, jpeg_to_dataset, rgb_to_dataset

    photos = [p for p in sorted(args.jpeg_dir.iterdir()) if p.suffix.lower() in {".jpg", ".jpeg", ".png"}]
    if not photos:
        console.print(f"[red]no .jpg/.jpeg/.png files in {args.jpeg_dir}")
        return 1
    ctx = PhotoContext(
        args.patient_id,
        args.patient_name or "",
        generate_uid(),
        generate_uid(),
        args.study_date or "",
        args.sex or "",
        args.age or "",
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for number, path in enumerate(photos, start=1):
        data = path.read_bytes()
        if path.suffix.lower() in {".jpg", ".jpeg"}:
            ds = jpeg_to_dataset(data, ctx, number)
        else:
            ds = rgb_to_dataset(np.asarray(Image.open(path).convert("RGB")), ctx, number)
        ds.save_as(args.out_dir / f"IMG{number:04d}.dcm", enforce_file_format=True)
    console.print(f"{len(photos)} photos → {args.out_dir} (VL Photographic Image, one study)")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    donors = subparsers.add_parser("donors", parents=[common], help="build the surrogate engine's donor bank")
    dsub = donors.add_subparsers(dest="donors_command", required=True)
    build = dsub.add_parser("build", help="analyse a folder of consented donor photos into a bank file")
    build.add_argument("dir", type=Path)
    build.add_argument("-o", "--output", type=Path, required=True)
    build.set_defaults(func=cmd_donors_build)
    ensure = dsub.add_parser("ensure", parents=[common], help="build <data-dir>/donors.npz once if missing")
    ensure.add_argument("-o", "--output", type=Path)
    ensure.add_argument("--photos", type=Path, help="donor photos (default $VERA_DONOR_PHOTOS or London Set)")
    ensure.set_defaults(func=cmd_donors_ensure)
    anon = subparsers.add_parser("anonymize", parents=[common], help="anonymize DICOM files offline")
    anon.add_argument("in_dir", type=Path)
    anon.add_argument("out_dir", type=Path)
    anon.add_argument("--rules", type=Path, help="rule file (default: the shipped default rules)")
    anon.add_argument("--secret", type=Path, help="gateway secret (default <data-dir>/secret.key)")
    anon.add_argument("--donor-bank", type=Path, help="donor bank (default $VERA_DONOR_BANK or <data-dir>)")
    anon.set_defaults(func=cmd_anonymize)
    imp = subparsers.add_parser("import-photos", parents=[common], help="photos → VL Photographic DICOM")
    imp.add_argument("jpeg_dir", type=Path)
    imp.add_argument("out_dir", type=Path)
    imp.add_argument("--patient-id", required=True)
    imp.add_argument("--patient-name")
    imp.add_argument("--study-date", help="YYYYMMDD (default today)")
    imp.add_argument("--sex", choices=["F", "M", "O"])
    imp.add_argument("--age", help='DICOM age string, e.g. "034Y"')
    imp.set_defaults(func=cmd_import_photos)
    return anon
