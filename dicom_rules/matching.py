"""Route conditions compiled from the rule file, evaluated against a dataset and its sender.

Every evaluation returns a :class:`ConditionResult` with the value that was tested, so ``rules explain``
can say why a route matched. Those values can be PHI: they go to the admin's terminal, never to logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dicom_rules.decision import RouteDecision

if TYPE_CHECKING:  # a dataset brings pydicom with it; `rules check` runs without
    from pydicom.dataset import Dataset


@dataclass(frozen=True)
class ConditionResult:
    label: str  # e.g. "Modality equals 'XC'"
    passed: bool
    actual: str  # what was tested, "<absent>" when missing; may be PHI (terminal only)


@dataclass(frozen=True)
class AttributeCondition:
    """A test on one attribute (tag) or on the calling AE title (tag == -1).

    ``sequences`` lead to the attribute through sequence items (any item may match): a key such as
    ``AnatomicRegionSequence.CodeMeaning`` tests the CodeMeaning of every item of that sequence.
    """

    key: str  # as written in the rule file
    tag: int
    sequences: tuple[int, ...] = ()
    equals: str | float | None = None
    one_of: tuple[str | float, ...] | None = None
    regex: re.Pattern[str] | None = None
    present: bool | None = None
    bounds: tuple[tuple[str, float], ...] = ()  # ("lt", 3.0), ...

    def evaluate(self, ds: Dataset, calling_ae: str) -> ConditionResult:
        values = [calling_ae.strip()] if self.tag < 0 else _nested_values(ds, self.sequences, self.tag)
        actual = "<absent>" if values is None else "\\".join(values)
        return ConditionResult(self.describe(), self._test(values), actual)

    def _test(self, values: list[str] | None) -> bool:
        if self.present is not None and (values is not None) != self.present:
            return False
        if values is None:
            return self.present is False or not self._has_value_tests()
        candidates = [*values, "\\".join(values)] if len(values) > 1 else (values or [""])
        if self.equals is not None and not any(_same(v, self.equals) for v in candidates):
            return False
        if self.one_of is not None and not any(_same(v, o) for v in candidates for o in self.one_of):
            return False
        if self.regex is not None and not any(self.regex.search(v) for v in candidates):
            return False
        return all(_compare(values, op, limit) for op, limit in self.bounds)

    def _has_value_tests(self) -> bool:
        return (
            self.equals is not None or self.one_of is not None or self.regex is not None or bool(self.bounds)
        )

    def describe(self) -> str:
        parts = []
        if self.present is not None:
            parts.append("present" if self.present else "absent")
        if self.equals is not None:
            parts.append(f"equals {self.equals!r}")
        if self.one_of is not None:
            parts.append(f"one of {list(self.one_of)!r}")
        if self.regex is not None:
            parts.append(f"matches /{self.regex.pattern}/")
        symbols = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}
        parts.extend(f"{symbols[op]} {limit:g}" for op, limit in self.bounds)
        return f"{self.key} " + " and ".join(parts)


@dataclass(frozen=True)
class Route:
    """A compiled route: all conditions must hold (none = catch-all); then ``decision`` applies."""

    name: str
    conditions: tuple[AttributeCondition, ...]
    decision: RouteDecision

    def evaluate(self, ds: Dataset, calling_ae: str) -> tuple[bool, list[ConditionResult]]:
        results = [c.evaluate(ds, calling_ae) for c in self.conditions]
        return all(r.passed for r in results), results

    def matches(self, ds: Dataset, calling_ae: str) -> bool:
        return all(c.evaluate(ds, calling_ae).passed for c in self.conditions)


def _nested_values(ds: Dataset, sequences: tuple[int, ...], tag: int) -> list[str] | None:
    items = [ds]
    for seq_tag in sequences:
        items = [
            item for d in items if (e := d.get(seq_tag)) is not None and e.VR == "SQ" for item in e.value
        ]
    found = [v for v in (_values(item, tag) for item in items) if v is not None]
    return None if not found else [value for values in found for value in values]


def _values(ds: Dataset, tag: int) -> list[str] | None:
    from pydicom.multival import MultiValue  # loaded with the dataset already

    elem = ds.get(tag)
    if elem is None:
        return None
    value = elem.value
    if value is None or value == "" or value == b"":
        return []
    if elem.VR == "SQ":
        return [f"<{len(value)} items>"]
    if isinstance(value, bytes):
        return [f"<{len(value)} bytes>"]
    if isinstance(value, MultiValue | list | tuple):
        return [str(v).strip() for v in value]
    return [str(value).strip()]


def _same(actual: str, expected: str | float) -> bool:
    if isinstance(expected, str):
        return actual == expected.strip()
    number = _number(actual)
    return number is not None and number == float(expected)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _compare(values: list[str], op: str, limit: float) -> bool:
    numbers = [_number(v) for v in values]
    if not numbers or any(n is None for n in numbers):
        return False
    tests = {"lt": float.__lt__, "le": float.__le__, "gt": float.__gt__, "ge": float.__ge__}
    return any(tests[op](n, limit) for n in numbers if n is not None)
