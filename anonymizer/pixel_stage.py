"""The pixel stage's one entry point, called by the gateway pipeline for a group of one patient's images.

Contract: ``anonymize_group(datasets, plan, identity_seed)`` returns one Outcome per dataset, in order.
An Ok carries the dataset with new pixels and a PixelReport. Any image that should be anonymized and
could not be is a Quarantine with a reason: original face pixels never leave through this function.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.dataset import Dataset

from anonymizer.outcomes import Outcome, Quarantine
from anonymizer.plans import PixelPlan


def anonymize_group(datasets: Sequence[Dataset], plan: PixelPlan, identity_seed: int) -> list[Outcome]:
    """Fail closed until the face pipeline is wired (issue: face pipeline)."""
    return [Quarantine("pixel-engine-unavailable") for _ in datasets]
