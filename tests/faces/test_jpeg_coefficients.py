"""The block-exact encoder's faster paths write the very bytes of jpeglib's read_dct + write_dct path,
whatever JFIF fields the source carries: the TurboJPEG transform with a coefficient filter
(anonymizer/jpeg_transform.py) and, without libturbojpeg, one Huffman pass in and one out
(anonymizer/jpeg_coefficients.py). Sources they cannot vouch for get no header and go jpeglib's way."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import jpeglib
import numpy as np
import pytest
from PIL import Image

from anonymizer import codec, jpeg_coefficients, jpeg_transform

PATCH = (slice(40, 71), slice(50, 83))


def _photo(h: int = 120, w: int = 152) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w) + 60], -1)
    grain = np.random.default_rng(3).normal(0, 6, (h, w, 3))
    return np.clip(base + grain, 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, **options: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", **options)
    return buf.getvalue()


def _with_app0(data: bytes, fields: bytes | None) -> bytes:
    """``data`` (starting SOI, JFIF APP0) with the APP0's version..densities replaced, or the APP0 removed."""
    assert data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\x00"
    length = struct.unpack(">H", data[4:6])[0]
    if fields is None:
        return data[:2] + data[4 + length :]
    return data[:11] + fields + data[18:]


def _paths(source: bytes, frame: np.ndarray, before: np.ndarray, tmp: Path) -> tuple[bytes, bytes, bytes]:
    """(TurboJPEG transform, one pass in and out, jpeglib's own) outputs for the same edit."""
    src = tmp / "source.jpg"
    src.write_bytes(source)
    head = jpeg_coefficients.header(source)
    assert head is not None
    with jpeglib.version(codec.JPEG_LIB):
        turbo = codec._block_exact_direct(source, src, head, frame, before)
        loaded = list(jpeg_transform._loaded)
        jpeg_transform._loaded[:] = [None]  # as without libturbojpeg
        try:
            passes = codec._block_exact_direct(source, src, head, frame, before)
        finally:
            jpeg_transform._loaded[:] = loaded
        reference = codec._block_exact_jpeglib(src, frame, before)
    assert turbo is not None and passes is not None and reference is not None
    return turbo, passes, reference


def test_turbojpeg_is_installed() -> None:
    assert jpeg_transform.available(), "libturbojpeg0 (scripts/setup.sh) is what makes the encoder fast"


@pytest.mark.parametrize("subsampling", [0, 1, 2])
@pytest.mark.parametrize(
    "app0",
    [
        "as written",
        struct.pack(">BBBHH", 1, 1, 1, 72, 72),  # 72 dpi, as cameras write
        struct.pack(">BBBHH", 1, 2, 2, 300, 150),  # JFIF 1.02, dots per cm, unequal densities
        None,  # no JFIF marker at all (an EXIF-only camera file)
    ],
)
def test_direct_path_writes_jpeglibs_bytes(subsampling: int, app0: object, tmp_path: Path) -> None:
    image = _photo()
    source = _jpeg(image, quality=93, subsampling=subsampling)
    if app0 != "as written":
        source = _with_app0(source, app0)  # type: ignore[arg-type]
    before = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"))
    frame = before.copy()
    frame[PATCH] = 255 - frame[PATCH]
    turbo, passes, reference = _paths(source, frame, before, tmp_path)
    assert turbo == reference and passes == reference
    turbo, passes, reference = _paths(source, before.copy(), before, tmp_path)
    assert turbo == reference and passes == reference  # nothing touched: the source's coefficients, rewritten


def test_header_reads_what_libjpeg_reads() -> None:
    source = _jpeg(_photo(), quality=90, subsampling=1, dpi=(300, 300))
    head = jpeg_coefficients.header(source)
    assert head is not None
    assert (head.height, head.width) == (120, 152)
    assert head.factors == ((1, 2), (1, 1), (1, 1))
    assert head.tables == (0, 1, 1)
    assert head.jfif == (1, 1, 1, 300, 300)
    assert head.qt.shape == (2, 8, 8) and head.qt[0, 0, 0] >= 1  # natural order, as libjpeg keeps them
    assert head.blocks(0) == (15, 19) and head.blocks(1) == (15, 10)  # 152 / 16 rounds up per MCU column


def test_sources_it_cannot_vouch_for_get_no_header(tmp_path: Path) -> None:
    image = _photo()
    assert jpeg_coefficients.header(_jpeg(image, progressive=True)) is None
    assert jpeg_coefficients.header(_jpeg(image[..., 0])) is None  # grey
    assert jpeg_coefficients.header(_jpeg(image)[:300]) is None  # cut short before the scan
    assert jpeg_coefficients.header(b"not a jpeg") is None
    major_two = _with_app0(_jpeg(image), struct.pack(">BBBHH", 2, 0, 0, 1, 1))
    assert jpeg_coefficients.header(major_two) is None


def test_block_exact_takes_the_direct_path_and_keeps_its_bytes(tmp_path: Path) -> None:
    source = _jpeg(_photo(), quality=95, subsampling=1, dpi=(72, 72))
    before = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"))
    frame = before.copy()
    frame[PATCH] = 0
    calls: list[int] = []
    original = codec._block_exact_jpeglib
    try:
        codec._block_exact_jpeglib = lambda *a: calls.append(1) or original(*a)  # type: ignore[assignment]
        out = codec.block_exact_jpeg(source, frame, before)
    finally:
        codec._block_exact_jpeglib = original  # type: ignore[assignment]
    assert not calls  # the direct path wrote it
    assert out == _paths(source, frame, before, tmp_path)[2]


def _reference_mask(before: np.ndarray, after: np.ndarray, mcu: tuple[int, int]) -> np.ndarray:
    mh, mw = mcu
    h, w = before.shape[:2]
    differ = np.zeros((-(-h // mh) * mh, -(-w // mw) * mw), bool)
    differ[:h, :w] = (before != after).any(-1)
    return differ.reshape(differ.shape[0] // mh, mh, differ.shape[1] // mw, mw).any(axis=(1, 3))


@pytest.mark.parametrize("shape, mcu", [((64, 96), (8, 16)), ((48, 48), (16, 16)), ((40, 64), (8, 8)),
                                        ((37, 50), (8, 16)), ((64, 90), (8, 8))])
def test_mcu_mask_marks_exactly_the_mcus_with_a_changed_pixel(
    shape: tuple[int, int], mcu: tuple[int, int]
) -> None:
    rng = np.random.default_rng(5)
    before = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    for _ in range(20):
        after = before.copy()
        for _ in range(int(rng.integers(0, 4))):
            y, x, c = (int(rng.integers(0, n)) for n in (*shape, 3))
            after[y, x, c] ^= np.uint8(1 << int(rng.integers(0, 8)))  # one bit of one channel
        assert np.array_equal(codec._mcu_mask(before, after, mcu), _reference_mask(before, after, mcu))
    fits = shape[0] % mcu[0] == 0 and shape[1] % mcu[1] == 0 and (mcu[1] * 3) % 8 == 0
    assert codec._words_fit(before, before, mcu) == fits  # both the word path and the general one are tested


@pytest.mark.parametrize("factors", [((2, 1), (1, 1), (1, 1)), ((2, 2), (1, 2), (1, 2))])
def test_other_sampling_goes_jpeglibs_box_compressor_with_the_same_bytes(
    factors: tuple[tuple[int, int], ...], tmp_path: Path
) -> None:
    """4:4:0 and chroma sampled 1x2 (a camera's): Pillow cannot write them, jpeglib's compressor does."""
    path = tmp_path / "odd.jpg"
    with jpeglib.version(codec.JPEG_LIB):
        image = jpeglib.from_spatial(_photo())
        image.samp_factor = factors
        image.write_spatial(str(path), qt=90)
    source = path.read_bytes()
    head = jpeg_coefficients.header(source)
    assert head is not None and codec.PILLOW_FACTORS.get(head.factors) is None
    before = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"))
    frame = before.copy()
    frame[PATCH] = 255 - frame[PATCH]
    turbo, passes, reference = _paths(source, frame, before, tmp_path)
    assert turbo == reference and passes == reference


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_turbojpeg_decode_gives_pillows_pixels(subsampling: int, faces_dir: Path) -> None:
    faces = sorted(faces_dir.glob("*.jpg"))[:2]  # real faces: skin, hair, edges
    images = [_photo(), *(np.asarray(Image.open(f).convert("RGB")) for f in faces)]
    for image in images:
        for quality in (75, 95):
            data = _jpeg(image, quality=quality, subsampling=subsampling)
            pillow = np.asarray(Image.open(io.BytesIO(data)))
            turbo = codec._decode_turbo(data, *pillow.shape[:2])
            assert turbo is not None and not turbo.flags.writeable
            assert np.array_equal(turbo, pillow)
    assert codec._decode_turbo(_jpeg(_photo(), progressive=True), 120, 152) is None  # Pillow's then
    assert codec._decode_turbo(_jpeg(_photo()), 121, 152) is None  # not the dataset's size


@pytest.mark.parametrize("subsampling", [1, 2])
def test_edits_reaching_partial_edge_mcus_write_jpeglibs_bytes(subsampling: int, tmp_path: Path) -> None:
    """120 x 152 px: the last MCU column (and, at 4:2:0, row) is partial; an edit reaching the bottom-right
    corner touches blocks that the patches must clip to each component's size as jpeglib's planes do."""
    source = _jpeg(_photo(), quality=90, subsampling=subsampling)
    before = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"))
    frame = before.copy()
    frame[100:, 140:] = 255 - frame[100:, 140:]
    frame[0, 0] = 255 - frame[0, 0]  # and the first MCU: the box spans the whole photo
    turbo, passes, reference = _paths(source, frame, before, tmp_path)
    assert turbo == reference and passes == reference


def test_a_transform_that_drops_any_components_patch_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The load-time check (jpeg_transform._patches_show) passes the installed libjpeg-turbo and refuses a
    filter that leaves any component's blocks as they were: such a transform would keep the original
    face's blocks in the file, so the encoder takes the coefficient path instead."""
    lib = jpeg_transform._library()
    assert lib is not None and jpeg_transform._patches_show(lib)
    replace = jpeg_transform._replace
    for kept in ((1, 2), (0,), (0, 1), ()):  # the components whose patches the broken filter applies
        monkeypatch.setattr(
            jpeg_transform,
            "_replace",
            lambda lib, source, patches, kept=kept: replace(
                lib, source, [p if i in kept else None for i, p in enumerate(patches)]
            ),
        )
        assert not jpeg_transform._patches_show(lib), kept
