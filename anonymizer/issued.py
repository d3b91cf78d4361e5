"""The synthetic identities the gateway has issued, so that a new patient's surrogate avoids them.

Each output of the surrogate engine is made without knowing the others, and the outputs of different patients
sit closer together than real faces do (docs/face-engine.md, issue-11c7). A store of what was issued lets the
ladder's self-check pass over a rung that lands on another patient's identity (issue-11c9).

Key: a hash of the patient's keyed identity seed (``issued_key``), never PHI. Value: the patient's synthetic
identity as a dlib descriptor (the mean of the group's outputs). Pure library, no I/O: the gateway supplies
a persistent implementation of ``IssuedIdentities`` (e.g. a table beside the ledger); ``MemoryIssued`` is
the in-process one (tests, bench).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import numpy as np

DESCRIPTOR_SIZE = 128  # dlib's face descriptor


def issued_key(identity_seed: int) -> str:
    """The store's key for a patient: a one-way hash of the keyed identity seed (no name, ID or date)."""
    return hashlib.sha256(f"vera-issued-identity|{identity_seed}".encode()).hexdigest()[:32]


class IssuedIdentities(Protocol):
    """What the surrogate engine needs of the store of issued synthetic identities."""

    def others(self, key: str) -> np.ndarray:
        """(n, 128) descriptors the patient ``key`` must avoid: other patients' identities, never its own."""
        ...

    def record(self, key: str, descriptor: np.ndarray) -> None:
        """Record the patient's synthetic identity (one per patient: a later record of ``key`` is ignored)."""
        ...


class MemoryIssued:
    """Issued identities in memory, in the order they were issued.

    A patient already recorded meets only the identities issued before their own: a later study of the patient
    is then held to the same constraints as the first one, so identities issued since cannot move them to
    another synthetic face (the photos themselves still decide the rung, as without a store)."""

    def __init__(self) -> None:
        self._keys: dict[str, int] = {}
        self._descriptors: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._descriptors)

    def others(self, key: str) -> np.ndarray:
        before = self._keys.get(key, len(self._descriptors))
        if before == 0:
            return np.zeros((0, DESCRIPTOR_SIZE))
        return np.stack(self._descriptors[:before])

    def record(self, key: str, descriptor: np.ndarray) -> None:
        if key in self._keys:
            return
        self._keys[key] = len(self._descriptors)
        self._descriptors.append(np.asarray(descriptor, np.float64).reshape(DESCRIPTOR_SIZE))
