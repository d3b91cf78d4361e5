"""pydicom for header-only work, without the optional pixel and download stack it imports at start-up.

``import pydicom`` runs ``pydicom.config``, which imports every pixel-data handler; those import numpy,
Pillow, pylibjpeg, CharLS (``jpeg_ls``) and GDCM where installed, and ``pydicom.data`` imports requests and
tqdm. That is ~0.15-0.2 s of CPU, most of a
0.3 s CLI start-up budget, for a command (``rules explain`` without ``--pixels``) that never touches pixels.
pydicom treats all of these as optional (every one of those imports sits in a ``try: ... except
ImportError``), so a process may load pydicom as if they were not installed: reading, the data dictionary,
``Dataset``, ``deepcopy`` and value access are the same code either way (tests/gateway/test_cli_imports.py
compares ``rules explain`` output both ways, byte for byte).

Only for short-lived CLI processes: once pydicom is loaded this way it keeps ``have_numpy == False`` for the
life of the process, so ``Dataset.pixel_array`` fails. Where pydicom is already loaded nothing changes.
"""

from __future__ import annotations

import sys

# pydicom's optional dependencies that header reading never uses (each import is guarded in pydicom).
PIXEL_AND_DOWNLOAD_STACK = (
    *("numpy", "PIL", "pylibjpeg", "libjpeg", "openjpeg", "rle", "jpeg_ls", "gdcm"),  # pixel codecs
    *("requests", "tqdm"),  # pydicom.data's downloads
)


def load_pydicom_for_headers() -> bool:
    """Import pydicom with its pixel and download stack marked absent; ``True`` if this call loaded it.

    The modules are marked absent (``sys.modules[name] = None``, which makes ``import name`` raise
    ImportError) only while pydicom imports, then unmarked, so a later import of numpy still works."""
    if "pydicom" in sys.modules:
        return False
    marked = [name for name in PIXEL_AND_DOWNLOAD_STACK if name not in sys.modules]
    for name in marked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import pydicom  # noqa: F401
    finally:
        for name in marked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return True
