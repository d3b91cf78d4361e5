"""Each shipped rule file, end to end: YAML → plan → deidentify on a photo with canaries everywhere.

No canary survives beyond what the route's own overrides keep (and what the same options keep without
overrides, which the metadata tests judge against Table E.1-1); values a route hashes, replaces, empties or
removes never survive; nothing reaches the logs.
"""

from __future__ import annotations

import dataclasses
import logging
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from anonymizer.keys import KeyRing
from anonymizer.metadata import deidentify
from anonymizer.plans import MetadataPlan, TagAction
from dicom_rules import RouteAction, load_rules

ROOT = Path(__file__).resolve().parents[2] / "dicom_rules"
SHIPPED = sorted(ROOT.rglob("*.yaml"))
ROUTES = [
    (path, route.name)
    for path in SHIPPED
    for route in load_rules(path).routes
    if route.decision.action is RouteAction.FORWARD
]
KEYS = KeyRing(b"rules-leak-test-secret-000000000")


@dataclasses.dataclass(frozen=True)
class Photo:
    data: bytes
    canaries: tuple[str, ...]

    def fresh(self) -> Dataset:
        return pydicom.dcmread(BytesIO(self.data))

    def survivors(self, data: bytes) -> set[str]:
        return {c for c in self.canaries if c.encode() in data}


def _saved(ds: Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Photo:
    from tests.conftest import face_photos
    from tests.metadata.photos import Canaries, rich_photo

    canaries = Canaries(prefix="QR")
    ds, _ = rich_photo(face_photos(1)[0], tmp_path_factory.mktemp("leak"), canaries, full_table=True)
    return Photo(_saved(ds), tuple(canaries.made))


def _run(photo: Photo, plan: MetadataPlan) -> bytes:
    return _saved(deidentify(photo.fresh(), plan, KEYS, None))


@pytest.mark.parametrize(("path", "route_name"), ROUTES, ids=lambda v: getattr(v, "name", v))
def test_shipped_route_leaks_nothing_beyond_what_it_keeps(
    photo: Photo, path: Path, route_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plan = next(r for r in load_rules(path).routes if r.name == route_name).decision.metadata
    src = photo.fresh()
    out = _run(photo, plan)
    baseline = photo.survivors(_run(photo, dataclasses.replace(plan, overrides=())))
    kept_text = " ".join(
        str(src[o.tag].value) for o in plan.overrides if o.action is TagAction.KEEP and o.tag in src
    )
    assert photo.survivors(out) <= baseline | {c for c in photo.canaries if c in kept_text}
    for o in plan.overrides:
        if o.action is not TagAction.KEEP and o.tag in src:
            assert not photo.survivors(out) & {c for c in photo.canaries if c in str(src[o.tag].value)}
    assert not [c for c in photo.canaries if c in caplog.text]


def test_default_rules_leak_only_unlisted_short_text(photo: Photo) -> None:
    plan = load_rules(ROOT / "default.yaml").catch_all.metadata  # type: ignore[union-attr]
    src = photo.fresh()
    assert photo.survivors(_run(photo, plan)) <= {str(src.Manufacturer)}  # not in Table E.1-1
