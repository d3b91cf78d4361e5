"""The face classes VerA generates and parses, and which of them carry identity.

Class indices are shared by the generator's segmentation output, the parser and the data loaders
(CelebAMask-HQ label maps are re-mapped to these indices by :data:`CELEBAMASK_TO_VERA`).
"""

from __future__ import annotations

from anonymizer.plans import Region

CLASSES: tuple[str, ...] = (
    "background",  # 0
    "skin",        # 1
    "eyes",        # 2
    "brows",       # 3
    "nose",        # 4
    "mouth",       # 5  inner mouth + both lips
    "ears",        # 6
    "hair",        # 7
    "neck",        # 8
    "cloth",       # 9
)
NUM_CLASSES = len(CLASSES)
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

# Identity-bearing classes: their shape/texture codes are shared across the photos of one patient in a
# joint inversion and replaced by keyed codes at anonymization time.
IDENTITY_CLASSES: tuple[str, ...] = ("skin", "eyes", "brows", "nose", "ears", "hair")
# Per-photo classes: pose / expression / treatment / capture conditions.
PER_PHOTO_CLASSES: tuple[str, ...] = ("background", "mouth", "neck", "cloth")

# Which generator classes a preserved clinical region keeps (codes kept, original pixels composited back).
REGION_CLASSES: dict[Region, tuple[str, ...]] = {
    Region.MOUTH: ("mouth",),
    Region.NOSE: ("nose",),
    Region.EYES: ("eyes",),
    Region.BROWS: ("brows",),
    Region.FACE: ("skin", "eyes", "brows", "nose", "mouth"),
}

# CelebAMask-HQ part names (file suffixes in CelebAMask-HQ-mask-anno) → VerA class.
CELEBAMASK_TO_VERA: dict[str, str] = {
    "skin": "skin", "l_eye": "eyes", "r_eye": "eyes", "eye_g": "eyes", "l_brow": "brows", "r_brow": "brows",
    "nose": "nose", "mouth": "mouth", "u_lip": "mouth", "l_lip": "mouth", "l_ear": "ears", "r_ear": "ears",
    "ear_r": "ears", "hair": "hair", "hat": "hair", "neck": "neck", "neck_l": "neck", "cloth": "cloth",
}
# CelebAMask-HQ 19-class label-map index order (as in the common pre-merged label PNGs) → VerA index.
CELEBAMASK_LABEL_ORDER: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)


def celebamask_lut() -> list[int]:
    """Look-up table: CelebAMask-HQ 19-class label index → VerA class index (unknown → background)."""
    return [CLASS_INDEX[CELEBAMASK_TO_VERA.get(name, "background")] for name in CELEBAMASK_LABEL_ORDER]


def region_class_indices(regions: tuple[Region, ...]) -> tuple[int, ...]:
    """The class indices a tuple of preserved clinical regions keeps."""
    names = {name for region in regions for name in REGION_CLASSES[region]}
    return tuple(sorted(CLASS_INDEX[name] for name in names))
