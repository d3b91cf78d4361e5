"""Folder destination: de-identified files written atomically as ``<de-identified SOP UID>.dcm``.

Re-sending the same instance overwrites the same name with the same bytes, so forwarding is idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from dicom_rules import FolderDestination
from gateway.core.config import GatewayConfig
from gateway.core.destinations import OutboundFile, SendResult, register
from gateway.core.spool import atomic_write

SAFE_NAME = re.compile(r"[0-9][0-9.]{0,63}")  # a DICOM UID: digits and dots, at most 64 characters


class FolderSender:
    def __init__(self, destination: FolderDestination, config: GatewayConfig) -> None:
        self.root = config.resolve(destination.path)

    def send(self, files: Sequence[OutboundFile]) -> list[SendResult]:
        results = []
        for f in files:
            if not SAFE_NAME.fullmatch(f.out_sop_uid):  # a retained UID is sender text: never a path
                results.append(SendResult(f.instance_id, False, "folder-unsafe-uid"))
                continue
            try:
                atomic_write(self.root / f"{f.out_sop_uid}.dcm", f.path.read_bytes())
                results.append(SendResult(f.instance_id, True))
            except OSError as exc:
                results.append(SendResult(f.instance_id, False, f"folder-write:{type(exc).__name__}"))
        return results

    def echo(self) -> bool:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return self.root.is_dir()


@register(FolderDestination)
def make_folder_sender(destination: FolderDestination, config: GatewayConfig) -> FolderSender:
    return FolderSender(destination, config)
