"""Orphaned objects in the bucket: bytes whose PUT succeeded but that no ledger row references.

They come from a receiver whose ledger commit failed after the PUT (it answered 0xA700, so the sender sends
again), a receiver killed between the two, a worker whose outputs were uploaded but whose results were never
committed (the retried run writes the same content-addressed keys), or a retention purge that forgot a row's
paths and then could not reach the store. None of them was acknowledged, so none of them is owed to anyone.

Each scan lists every area with paginated ListObjectsV2, asks the ledger which keys rows reference (one
query per page), counts the unreferenced objects older than ``orphan_grace_s`` (younger ones may still be
between PUT and commit) in ``vera_gateway_object_orphans{area}`` and deletes those not written for
``orphan_delete_after_s``. A key a row references is never deleted: just before each delete the ledger is
asked again and the object's last-modified time is read again (a receiver storing the same bytes rewrites
the object, which makes it young). What remains is a rewrite landing in the milliseconds between that last
check and the DELETE, after ``orphan_delete_after_s`` (a week by default) without one: its row then names a
missing object, and the job that reads it fails and is quarantined with a reason, never forwarded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from gateway.core.config import ObjectStoreSettings
from gateway.core.ledger.postgres import PostgresLedger
from gateway.core.objectstore import AREAS, S3Store, StoredObject
from gateway.ops.metrics import OBJECT_ORPHANS, OBJECT_ORPHANS_DELETED

LOG = structlog.get_logger("gateway.cluster.orphans")


@dataclass
class AreaScan:
    listed: int = 0
    orphans: int = 0
    deleted: int = 0
    kept: list[str] = field(default_factory=list)  # orphans not old enough to delete (relpaths)


class OrphanReconciler:
    """One scan of every area per :meth:`scan`; :meth:`run` repeats it every ``orphan_scan_interval_s``.
    ``clock`` is injected (tests move it forward instead of waiting a week)."""

    def __init__(
        self,
        settings: ObjectStoreSettings,
        ledger: PostgresLedger,
        clock: Callable[[], float] = time.time,
        page_size: int = 1000,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.clock = clock
        self.page_size = page_size
        self.stores = {area: S3Store(settings, area, suffix) for area, suffix in AREAS.items()}

    def scan(self) -> dict[str, AreaScan]:
        return {area: self.scan_area(area) for area in self.stores}

    def scan_area(self, area: str) -> AreaScan:
        result = AreaScan()
        now = self.clock()
        for page in self.stores[area].pages(self.page_size):
            result.listed += len(page)
            old = [o for o in page if o.modified_at < now - self.settings.orphan_grace_s]
            referenced = self.ledger.referenced_keys(area, [o.relpath for o in old])
            for orphan in (o for o in old if o.relpath not in referenced):
                result.orphans += 1
                if self._deletable(orphan, now) and self._delete(area, orphan.relpath, now):
                    result.deleted += 1
                else:
                    result.kept.append(orphan.relpath)
        OBJECT_ORPHANS.labels(area=area).set(result.orphans - result.deleted)
        OBJECT_ORPHANS_DELETED.labels(area=area).inc(result.deleted)
        if result.orphans:
            LOG.warning("objects.orphans", area=area, orphans=result.orphans, deleted=result.deleted)
        return result

    def _deletable(self, orphan: StoredObject, now: float) -> bool:
        after = self.settings.orphan_delete_after_s
        return after is not None and orphan.modified_at < now - after

    def _delete(self, area: str, relpath: str, now: float) -> bool:
        """Delete only if, asked again now, no row references the key and nobody rewrote it since."""
        after = self.settings.orphan_delete_after_s
        assert after is not None
        store = self.stores[area]
        if self.ledger.referenced_keys(area, [relpath]):
            return False
        modified = store.modified_at(relpath)
        if modified is None or modified >= now - after:
            return False
        store.discard(relpath)
        LOG.info("objects.orphan_deleted", area=area, key=relpath)  # a content hash: no PHI
        return True

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.orphan_scan_interval_s):
            try:
                self.scan()
            except Exception as exc:  # the store or the database away: the next scan tries again
                LOG.warning("objects.orphan_scan_failed", error=type(exc).__name__)
