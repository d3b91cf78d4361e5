"""Typed stage outcomes: Ok, Retry or Quarantine(reason). There is no 'skip' that forwards an original."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from anonymizer.plans import PixelReport


@dataclass(frozen=True)
class Ok:
    dataset: Dataset
    report: PixelReport | None = None


@dataclass(frozen=True)
class Retry:
    reason: str


@dataclass(frozen=True)
class Quarantine:
    reason: str  # never contains PHI: codes, counts, hashes only


Outcome = Ok | Retry | Quarantine
