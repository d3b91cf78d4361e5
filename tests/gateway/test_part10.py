"""The direct Part 10 header (fast path) against pynetdicom's encoded_dataset (reference path)."""

from __future__ import annotations

from io import BytesIO
from types import SimpleNamespace

import pytest
from pynetdicom import evt
from pynetdicom.events import Event

from gateway.core.part10 import encoded_file


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "syntax"),
    [
        ("1.2.840.10008.5.1.4.1.1.77.1.4", "1.2.826.0.1.3680043.8.498.1", "1.2.840.10008.1.2.4.50"),
        ("1.2.840.10008.5.1.4.1.1.7", "1.2.3.44", "1.2.840.10008.1.2.1"),  # even and odd lengths
        ("1.2.840.10008.5.1.4.1.1.7", "2.25.0123", "1.2.840.10008.1.2"),  # non-conformant, still ASCII
    ],
)
def test_direct_header_equals_pynetdicoms(sop_class: str, sop_instance: str, syntax: str) -> None:
    request = SimpleNamespace(
        AffectedSOPClassUID=sop_class, AffectedSOPInstanceUID=sop_instance, DataSet=BytesIO(b"\x08\x00")
    )
    event = Event(
        SimpleNamespace(),
        evt.EVT_C_STORE,
        {"request": request, "context": SimpleNamespace(transfer_syntax=syntax)},
    )
    assert encoded_file(event) == event.encoded_dataset(include_meta=True)
