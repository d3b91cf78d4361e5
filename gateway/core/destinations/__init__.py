"""Destination kinds: one small registered file each (``folder``, ``dicom``, ``dicomweb``).

A kind registers a factory for its destination type (from ``dicom_rules``) with :func:`register`. The
forwarder asks :func:`sender_for` for a :class:`Sender`, which sends a batch of de-identified files and
answers one :class:`SendResult` per file. A new kind is a new module listed in ``KIND_MODULES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.core.config import GatewayConfig

KIND_MODULES = (
    "gateway.core.destinations.folder",
    "gateway.core.destinations.dicom",
    "gateway.core.destinations.dicomweb",
)


@dataclass(frozen=True)
class OutboundFile:
    instance_id: int
    path: Path
    out_sop_uid: str  # de-identified UID


@dataclass(frozen=True)
class SendResult:
    instance_id: int
    ok: bool
    reason: str = ""  # status code or error class; never dataset content


class Sender(Protocol):
    def send(self, files: Sequence[OutboundFile]) -> list[SendResult]: ...

    def echo(self) -> bool: ...


SenderFactory = Callable[[Any, GatewayConfig], Sender]
_REGISTRY: dict[type, SenderFactory] = {}


def register(destination_type: type) -> Callable[[SenderFactory], SenderFactory]:
    def wrap(factory: SenderFactory) -> SenderFactory:
        _REGISTRY[destination_type] = factory
        return factory

    return wrap


def sender_for(destination: Any, config: GatewayConfig) -> Sender:
    """The sender for a destination from the rule set; raises LookupError for an unknown kind."""
    if type(destination) not in _REGISTRY:  # a kind module may have been imported alone before
        for name in KIND_MODULES:
            importlib.import_module(name)
    factory = _REGISTRY.get(type(destination))
    if factory is None:
        raise LookupError(f"no sender registered for {type(destination).__name__}")
    return factory(destination, config)
