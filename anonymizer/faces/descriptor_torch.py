"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) run by torch.

The same 128-d descriptor as ``dlib.face_recognition_model_v1.compute_face_descriptor`` on the same 150 px
chip (``verify.face_chip``; ``verify.torch_descriptor`` crops and runs it), several times faster on CPU than
the dlib wheel we install, which multiplies matrices without a BLAS (0.008 against 0.063 s per chip on one
thread). The weights are read at run time from the installed ``face_recognition_models`` file, nothing is
downloaded or stored (a reader of dlib's serialization format below). dlib stays the reference path:
``tests/faces/test_descriptor_torch.py`` compares the two on real faces.

The network (dlib's ``tools/python/src/face_recognition.cpp``): a 7x7/2 convolution and a 3x3/2 max pool,
then residual units of two 3x3 convolutions, each followed by a fixed affine (batch norm in test mode); a unit
that halves the size strides its first convolution by 2 and adds an average-pooled copy of its input; a
global average pool and a 128 x 256 linear map. dlib adds two tensors of different sizes by padding the
smaller with zeros (channels, rows, columns), which happens where a unit halves an odd size.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from anonymizer.faces.models import torch_threads
from anonymizer.threads import group_limit

CHIP = 150  # input_rgb_image_sized<150>
_lock = threading.Lock()


class DlibFormatError(ValueError):
    """The file is not the network this module ports (or not dlib's serialization of it)."""


@dataclass
class _Layer:
    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, fc
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    ints: dict[str, int] = field(default_factory=dict)


class _Stream:
    """dlib's serialization primitives (dlib/serialize.h, dlib/cuda/tensor.h)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def done(self) -> bool:
        return self.at >= len(self.data)

    def _take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise DlibFormatError("truncated")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def integer(self) -> int:
        """A control byte (bit 7: negative, low 4 bits: byte count), then that many little-endian bytes."""
        control = self._take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8:
            raise DlibFormatError(f"bad integer control byte {control:#x} at {self.at - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        """A float: mantissa then exponent, both integers (value = mantissa * 2**exponent)."""
        mantissa, exponent = self.integer(), self.integer()
        if exponent >= 32000:  # dlib's markers for inf, -inf and nan
            return (float("inf"), float("-inf"), float("nan"))[exponent - 32000]
        return float(np.ldexp(np.float64(mantissa), exponent))

    def text(self) -> str:
        return self._take(self.integer()).decode("ascii")

    def flag(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool at {self.at - 1}")
        return ch == b"1"

    def tensor(self) -> np.ndarray:
        """A tensor (version 2): num_samples, k, nr, nc, then little-endian float32 values."""
        self.expect(self.integer(), 2, "tensor version")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), "<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, ...]:
        """An alias_tensor (version 1): only its shape (its values live in the layer's params)."""
        self.expect(self.integer(), 1, "alias_tensor version")
        return tuple(self.integer() for _ in range(4))

    @staticmethod
    def expect(found: object, wanted: object, what: str) -> None:
        if found != wanted:
            raise DlibFormatError(f"{what}: expected {wanted!r}, found {found!r}")


def _details(s: _Stream) -> _Layer:
    """One layer's own serialization, named by its leading version string (dlib/dnn/layers.h)."""
    name = s.text()
    if name in ("con_4", "con_5", "con_6"):
        params = s.tensor()
        ints = {k: s.integer() for k in ("filters", "nr", "nc", "stride_y", "stride_x", "pad_y", "pad_x")}
        shape, _ = s.alias(), s.alias()  # filters (n, k, nr, nc), biases (1, n)
        _ = [s.real() for _ in range(4)]  # learning-rate and weight-decay multipliers
        use_bias = s.flag() if name != "con_4" else True
        if name == "con_6":
            s.flag()  # use_relu (fused relu): never set in this network
        size = int(np.prod(shape))
        flat = params.ravel()
        bias = flat[size : size + shape[0]] if use_bias else np.zeros(shape[0], np.float32)
        return _Layer("con", {"weight": flat[:size].reshape(shape), "bias": bias}, ints)
    if name in ("affine_", "affine_2"):
        params = s.tensor().ravel()
        gamma, _ = s.alias(), s.alias()
        if s.integer() != 0:  # CONV_MODE: one gamma and beta per channel
            raise DlibFormatError("affine layer not in convolution mode")
        if name == "affine_2" and s.flag():
            raise DlibFormatError("disabled affine layer")
        n = int(np.prod(gamma))
        return _Layer("affine", {"gamma": params[:n], "beta": params[n : 2 * n]})
    if name in ("relu_", "relu_2"):
        if name == "relu_2" and s.flag():
            raise DlibFormatError("disabled relu layer")
        return _Layer("relu")
    if name in ("max_pool_2", "avg_pool_2"):
        keys = ("nr", "nc", "stride_y", "stride_x", "pad_y", "pad_x")
        return _Layer(name[:-2], ints={k: s.integer() for k in keys})
    if name == "add_prev_":
        return _Layer("add_prev")
    if name in ("fc_2", "fc_3"):
        outputs, inputs = s.integer(), s.integer()
        params = s.tensor().ravel()
        s.alias(), s.alias()
        bias_mode = s.integer()
        _ = [s.real() for _ in range(4)]
        if name == "fc_3":
            s.flag()
        if bias_mode != 1:  # FC_NO_BIAS
            raise DlibFormatError("fc layer with a bias")
        weight = params[: inputs * outputs].reshape(inputs, outputs)  # output = input x weight
        return _Layer("fc", {"weight": weight.T.copy()}, {"outputs": outputs})
    raise DlibFormatError(f"layer {name!r} is not part of dlib's face-recognition ResNet")


def _layer_state(s: _Stream, input_layer: bool) -> None:
    """What add_layer writes after a layer's details: three flags and the (empty) training tensors."""
    for _ in range(3):
        s.flag()
    for _ in range(3):
        s.tensor()
    if input_layer:
        s.integer()  # sample expansion factor


def read_layers(path: Path) -> tuple[tuple[float, float, float], list[_Layer]]:
    """(The input layer's mean red, green, blue; the layers from the input upwards).

    dlib writes a network outside-in: the loss layer, then one version number per layer wrapper down to the
    input, then, inside-out, each layer's details and state; tag and skip layers write only their version."""
    s = _Stream(path.read_bytes())
    s.expect(s.integer(), 1, "loss layer version")
    s.expect(s.text(), "loss_metric_2", "loss")
    s.real(), s.real()  # margin, distance threshold: training only
    while (version := s.integer()) != 3:  # the innermost add_layer (over the input) is version 3
        if version not in (1, 2):
            raise DlibFormatError(f"unexpected layer version {version}")
    s.expect(s.text(), "input_rgb_image_sized", "input layer")
    mean = (s.real(), s.real(), s.real())
    s.expect((s.integer(), s.integer()), (CHIP, CHIP), "input size")
    layers = [_details(s)]
    _layer_state(s, input_layer=True)
    while not s.done():
        layers.append(_details(s))
        _layer_state(s, input_layer=False)
    return mean, layers


def _blocks(layers: Sequence[_Layer]) -> tuple[list[_Layer], list[list[_Layer]], list[_Layer]]:
    """(Stem, residual units, head), checked against the ResNet's pattern."""
    kinds = [layer.kind for layer in layers]
    if kinds[:4] != ["con", "affine", "relu", "max_pool"] or kinds[-2:] != ["avg_pool", "fc"]:
        raise DlibFormatError("not dlib's face-recognition ResNet (stem or head)")
    units, at = [], 4
    plain = ["con", "affine", "relu", "con", "affine", "add_prev", "relu"]
    down = ["con", "affine", "relu", "con", "affine", "avg_pool", "add_prev", "relu"]
    while at < len(layers) - 2:
        for pattern in (plain, down):
            if kinds[at : at + len(pattern)] == pattern:
                units.append(list(layers[at : at + len(pattern)]))
                at += len(pattern)
                break
        else:
            raise DlibFormatError(f"unexpected layers at {at}: {kinds[at : at + 8]}")
    return list(layers[:4]), units, list(layers[-2:])


def _layout() -> Any:
    import torch

    return torch.channels_last  # oneDNN's own layout: 7.8 instead of 9.8 ms CPU per chip, the same values


def _conv(con: _Layer, affine: _Layer) -> tuple[Any, Any, int, int]:
    """A convolution with the affine after it folded in: (weight, bias, stride, padding) as torch tensors."""
    import torch

    gamma, beta = affine.tensors["gamma"], affine.tensors["beta"]
    weight = con.tensors["weight"] * gamma[:, None, None, None]
    bias = con.tensors["bias"] * gamma + beta
    if con.ints["stride_y"] != con.ints["stride_x"] or con.ints["pad_y"] != con.ints["pad_x"]:
        raise DlibFormatError("anisotropic convolution")
    return (
        torch.from_numpy(np.ascontiguousarray(weight, np.float32)).contiguous(memory_format=_layout()),
        torch.from_numpy(np.ascontiguousarray(bias, np.float32)),
        con.ints["stride_y"],
        con.ints["pad_y"],
    )


def _add_padded(a: Any, b: Any) -> Any:
    """dlib's add_prev: the sum over the larger of each size, the smaller tensor padded with zeros at the
    end (channels, rows, columns)."""
    import torch.nn.functional as F

    if a.shape == b.shape:
        return a + b
    size = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True)]

    def pad(t: Any) -> Any:
        c, h, w = t.shape[1:]
        return F.pad(t, (0, size[2] - w, 0, size[1] - h, 0, size[0] - c))

    return pad(a) + pad(b)


class DlibResNet:
    """The descriptor network: ``__call__`` maps (n, 150, 150, 3) uint8 chips to (n, 128) float32."""

    def __init__(self, path: Path) -> None:
        import torch

        mean, layers = read_layers(path)
        stem, units, head = _blocks(layers)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.stem = _conv(stem[0], stem[1])
        pool = stem[3].ints
        self.stem_pool = (pool["nr"], pool["stride_y"], pool["pad_y"])
        self.units = [
            (_conv(u[0], u[1]), _conv(u[3], u[4]), u[5].ints if u[5].kind == "avg_pool" else None)
            for u in units
        ]
        if head[0].ints["nr"] != 0:
            raise DlibFormatError("the head's pool is not a global average")
        self.fc = torch.from_numpy(head[1].tensors["weight"])  # (128, 256)

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        chips = np.asarray(chips)
        assert chips.ndim == 4 and chips.shape[1:] == (CHIP, CHIP, 3) and chips.dtype == np.uint8, chips.shape
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float()  # (n, 3, 150, 150)
            # input_rgb_image_sized::to_tensor: (channel - its mean) / 256, red first
            x = ((x - self.mean) / 256.0).contiguous(memory_format=_layout())
            weight, bias, stride, pad = self.stem
            x = F.relu(F.conv2d(x, weight, bias, stride, pad))
            size, stride, pad = self.stem_pool
            x = F.max_pool2d(x, size, stride, pad)
            for first, second, pool in self.units:
                y = F.relu(F.conv2d(x, first[0], first[1], first[2], first[3]))
                y = F.conv2d(y, second[0], second[1], second[2], second[3])
                if pool is not None:
                    x = F.avg_pool2d(x, pool["nr"], pool["stride_y"], pool["pad_y"])
                x = F.relu(_add_padded(y, x))
            x = x.mean(dim=(2, 3))  # (n, 256)
            return (x @ self.fc.T).numpy().astype(np.float32)  # (n, 128)


@lru_cache(maxsize=1)
def _network() -> DlibResNet:
    from anonymizer.faces.models import recognizer_path

    return DlibResNet(Path(recognizer_path()))


def network() -> DlibResNet:
    with _lock:
        return _network()


def descriptors(chips: Sequence[np.ndarray], threads: int = 0) -> np.ndarray:
    """(n, 128) descriptors of 150 px face chips (``verify.face_chip``), in one forward pass on ``threads``
    intra-op threads (0: the count of the open ``kernel_threads`` block, else one). Two OpenMP threads on the
    loaded 2-core machine took 30-60 times the CPU of one for these small tensors (bench/pixel_timing.py)."""
    net = network()
    with torch_threads(threads or group_limit() or 1):
        return net(np.stack(chips))
