"""Offline face-pipeline commands: ``donors build|ensure``, ``anonymize IN_DIR OUT_DIR``, ``import-photos``.

These run the same pixel + metadata pipeline as the service, on files, without the network.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_LONDON_SET = REPO_ROOT.parent / "shared" / "data" / "faces" / "london_set"
DONOR_PHOTOS_ENV = "VERA_DONOR_PHOTOS"
console = Console(stderr=True)


def _progress(eta: bool = False) -> Progress:
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if eta:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=console)


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


def cmd_anonymize(args: argparse.Namespace) -> int:
    """The service's stage sequence on a folder: streamed, on N processes, resumable; writes a summary."""
    from anonymizer.keys import KeyRing, load_or_create_secret
    from gateway.core import batch

    started = time.perf_counter()
    settings = batch.BatchSettings(
        in_dir=args.in_dir,
        out_dir=args.out_dir,
        rules=_rules(args.rules),
        secret=load_or_create_secret(args.secret or _data_dir(args) / "secret.key"),
        donor_bank=args.donor_bank or default_bank_path(args),
        workers=(os.cpu_count() or 1) if args.workers is None else args.workers,
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tally = batch.Tally()
    jobs = batch.plan_jobs(settings, KeyRing(settings.secret), tally)
    todo = batch.resume(jobs, args.out_dir, tally)
    journal = batch.Journal(args.out_dir)
    try:
        with _progress(eta=True) as bar:
            total = sum(len(j.paths) for j in jobs)
            task = bar.add_task("photos", total=total, completed=total - sum(len(j.paths) for j in todo))
            batch.Runner(settings, journal, tally, lambda n: bar.advance(task, n)).run(todo)
    finally:
        journal.close()
    summary = batch.write_summary(
        args.out_dir, tally, settings.rules, settings.workers, time.perf_counter() - started
    )
    for what, count in sorted(tally.outcomes.items()):
        console.print(f"{what}: {count}")
    for reason, count in sorted(tally.reasons.items()):
        console.print(f"  {reason}: {count}")
    console.print(f"summary: {summary}")
    return 0 if tally.complete() else 2


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
    anon.add_argument("--workers", type=int, help="worker processes (default: all cores; 0 = this process)")
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
