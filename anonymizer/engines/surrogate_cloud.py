"""The synthetic cloud's centre (issue-11c10, ``spread_pick``): where the engine's outputs of one sex crowd.

Different patients' outputs collide (dlib < 0.6) 3-4 times as often as real faces because the output cloud
is narrower than real faces' (issue-11c7): a passing rung's keyed variants are ranked by how far their
outputs lie from this centre, so the chosen ones spread. The centre is a fixed point of the bank (its own
identities' synthetic descriptors, or its real faces), never another patient's output: the choice does not
depend on who came before."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anonymizer.donors import DonorBank


def cloud_centre(bank: DonorBank, sex: str, cloud: str | Path = "") -> np.ndarray:
    """The mean descriptor of the patient's sex (every sex when unknown or absent): over ``cloud``'s
    synthetic descriptors of the bank identities of that sex (``ids``, ``desc``; identities not in the bank
    are left out, so leave-one-out banks never count the patient), else over the bank's real faces."""
    sexes = {p.identity: p.sex for p in bank.photos}
    if cloud:
        with np.load(cloud) as z:
            ids, desc = [str(i) for i in z["ids"]], np.asarray(z["desc"], np.float64)
        present = [n for n, i in enumerate(ids) if i in sexes]
        chosen = [n for n in present if sexes[ids[n]] == sex] or present
        if not chosen:
            raise ValueError(f"spread_pick_cloud {cloud} holds none of the bank's identities")
        return desc[chosen].mean(axis=0)
    real = [p.descriptor for p in bank.photos if p.sex == sex] or [p.descriptor for p in bank.photos]
    return np.mean(real, axis=0)


def reach(outs: Sequence[np.ndarray], centre: np.ndarray) -> float:
    """How far a group's outputs lie from the centre: the nearest one's distance (-inf without outputs)."""
    if not outs:
        return float("-inf")
    return float(np.linalg.norm(np.stack(outs) - centre[None], axis=1).min())
