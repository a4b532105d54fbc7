"""Read a dlib DNN `.dat` file (dlib's own `serialize` format) without dlib.

Format, as written by dlib 19.x (dlib/serialize.h, dlib/dnn/*.h) and checked byte by byte against
`dlib_face_recognition_resnet_model_v1.dat`:

- an integer is one header byte (low nibble: number of value bytes; bit 7: negative) followed by the
  magnitude, little endian;
- a string is its length (integer) followed by its bytes;
- a float/double is a (mantissa: int64, exponent: int16) pair of integers, value = mantissa * 2**exponent;
- a tensor (version 2) is num_samples, k, nr, nc (integers) followed by raw little-endian float32 values;
- an alias_tensor (a view into a layer's `params`) is a version and four dimensions;
- `add_layer` writes its version, then its sub-network, then the layer's own details followed by three
  bools ('0'/'1') and three gradient/cache tensors (empty in a saved model). Tag and skip layers only write
  a version. So after a prefix of version numbers the layers' details follow one another from the input
  to the output, separated by short runs of that bookkeeping.

This reader parses the loss header and the input layer, then every layer's details in order; the
bookkeeping between two layers is checked to hold only small integers and bool characters, so an
unknown layer type (or a misparse) stops with DatFormatError instead of being skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# The bookkeeping between two layers' details is a few dozen bytes; anything longer means a misparse.
_MAX_GLUE_BYTES = 512
_BOOL_CHARS = (ord("0"), ord("1"))


class DatFormatError(ValueError):
    """The bytes are not a dlib network serialisation this reader understands."""


@dataclass(frozen=True)
class DlibLayer:
    """One layer's serialised details. `ints` hold geometry (filters, window, stride, padding, mode)."""

    kind: str  # con | affine | relu | max_pool | avg_pool | add_prev | fc
    tag: str  # the tag string dlib wrote, e.g. "con_4"
    offset: int  # byte offset of the tag in the file (for error messages)
    ints: dict[str, int] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class DlibNetwork:
    loss: str  # e.g. "loss_metric_2"
    input_tag: str  # e.g. "input_rgb_image_sized"
    input_mean_rgb: tuple[float, float, float]  # subtracted per channel before dividing by 256
    input_size: tuple[int, int]  # (rows, cols)
    layers: list[DlibLayer]  # from the input to the output
    loss_margin: float = 0.0  # loss_metric's training margin
    loss_distance_threshold: float = 0.0  # loss_metric's distance threshold: dlib's "same person" L2


class _Stream:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def _need(self, count: int) -> None:
        if self.pos + count > self.end:
            raise DatFormatError(f"unexpected end of file at byte {self.pos} (need {count} more)")

    def integer(self) -> int:
        self._need(1)
        header = self.data[self.pos]
        size = header & 0x0F
        if size == 0 or size > 8 or header & 0x70:
            raise DatFormatError(f"byte {self.pos}: {header:#04x} is not an integer header")
        self._need(1 + size)
        magnitude = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -magnitude if header & 0x80 else magnitude

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return float(mantissa) * 2.0**exponent if mantissa else 0.0

    def string(self) -> str:
        length = self.integer()
        if not 0 <= length <= 256:
            raise DatFormatError(f"byte {self.pos}: implausible string length {length}")
        self._need(length)
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise DatFormatError(f"byte {self.pos - length}: string is not ASCII") from exc

    def tensor(self) -> np.ndarray:
        start = self.pos
        version = self.integer()
        if version != 2:
            raise DatFormatError(f"byte {start}: tensor version {version}, only 2 (raw float32) is read")
        shape = tuple(self.integer() for _ in range(4))
        if min(shape) < 0:
            raise DatFormatError(f"byte {start}: negative tensor dimension {shape}")
        count = int(np.prod(shape))
        self._need(4 * count)
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).astype(np.float32)
        self.pos += 4 * count
        return values.reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        start = self.pos
        version = self.integer()
        if version != 1:
            raise DatFormatError(f"byte {start}: alias_tensor version {version}, expected 1")
        n, k, nr, nc = (self.integer() for _ in range(4))
        return n, k, nr, nc


_LayerReader = Callable[["_Stream", str, int], DlibLayer]


def _split_params(
    params: np.ndarray,
    shapes: list[tuple[int, int, int, int]],
    where: int,
) -> list[np.ndarray]:
    """Cut a layer's flat `params` into the alias tensors that view it (dlib lays them back to back)."""
    flat = params.reshape(-1)
    sizes = [int(np.prod(shape)) for shape in shapes]
    if sum(sizes) != flat.size:
        raise DatFormatError(f"byte {where}: params hold {flat.size} values, views need {sum(sizes)}")
    out, start = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        out.append(flat[start : start + size].reshape(shape))
        start += size
    return out


def _read_con(s: _Stream, tag: str, at: int) -> DlibLayer:
    params = s.tensor()
    names = ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    ints = {name: s.integer() for name in names}
    filters_shape, biases_shape = s.alias(), s.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers: training only
        s.real()
    filters, biases = _split_params(params, [filters_shape, biases_shape], at)
    return DlibLayer("con", tag, at, ints, {"weight": filters, "bias": biases.reshape(-1)})


def _read_affine(s: _Stream, tag: str, at: int) -> DlibLayer:
    params = s.tensor()
    gamma_shape, beta_shape = s.alias(), s.alias()
    mode = s.integer()  # dlib layer_mode: 0 = CONV_MODE (per channel), 1 = FC_MODE
    gamma, beta = _split_params(params, [gamma_shape, beta_shape], at)
    tensors = {"gamma": gamma.reshape(-1), "beta": beta.reshape(-1)}
    return DlibLayer("affine", tag, at, {"mode": mode}, tensors)


def _read_pool(kind: str) -> _LayerReader:
    def read(s: _Stream, tag: str, at: int) -> DlibLayer:
        names = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        return DlibLayer(kind, tag, at, {name: s.integer() for name in names})

    return read


def _read_plain(kind: str) -> _LayerReader:
    def read(s: _Stream, tag: str, at: int) -> DlibLayer:
        return DlibLayer(kind, tag, at)

    return read


def _read_fc(s: _Stream, tag: str, at: int) -> DlibLayer:
    num_outputs, num_inputs = s.integer(), s.integer()
    params = s.tensor()
    weights_shape, biases_shape = s.alias(), s.alias()
    bias_mode = s.integer()  # dlib fc_bias_mode: 0 = FC_HAS_BIAS, 1 = FC_NO_BIAS
    for _ in range(4):
        s.real()
    weights, biases = _split_params(params, [weights_shape, biases_shape], at)
    ints = {"num_outputs": num_outputs, "num_inputs": num_inputs, "bias_mode": bias_mode}
    # dlib computes x @ W with W stored (num_inputs, num_outputs).
    tensors: dict[str, np.ndarray] = {"weight": weights.reshape(num_inputs, num_outputs)}
    if biases.size:
        tensors["bias"] = biases.reshape(-1)
    return DlibLayer("fc", tag, at, ints, tensors)


_LAYER_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": _read_plain("relu"),
    "add_prev_": _read_plain("add_prev"),
    "max_pool_2": _read_pool("max_pool"),
    "avg_pool_2": _read_pool("avg_pool"),
    "fc_2": _read_fc,
}
_TAG_PATTERNS = {bytes([0x01, len(tag)]) + tag.encode(): tag for tag in _LAYER_READERS}


def _next_tag(data: bytes, start: int) -> tuple[int, str] | None:
    """Position of the next layer tag (its length integer), checking that only bookkeeping precedes it."""
    stop = start + _MAX_GLUE_BYTES
    found = [(data.find(pattern, start, stop), tag) for pattern, tag in _TAG_PATTERNS.items()]
    hits = [(pos, tag) for pos, tag in found if pos >= 0]
    end = min(hits)[0] if hits else min(len(data), start + _MAX_GLUE_BYTES)
    glue = _Stream(data, start, end)
    while glue.pos < end:
        if data[glue.pos] in _BOOL_CHARS:
            glue.pos += 1
            continue
        value = glue.integer()
        if abs(value) > 16:  # versions, bools, empty tensors' zeros, a sample expansion factor
            raise DatFormatError(f"byte {glue.pos}: unexpected value {value} between layers (unknown layer?)")
    if not hits:
        if end < len(data):
            raise DatFormatError(f"byte {start}: no known layer tag within {_MAX_GLUE_BYTES} bytes")
        return None
    return min(hits)


def read_network(data: bytes) -> DlibNetwork:
    """Parse a serialised dlib network (loss_metric over an RGB input) into its layers' weights."""
    s = _Stream(data)
    s.integer()  # add_loss_layer version
    loss = s.string()
    if loss != "loss_metric_2":
        raise DatFormatError(f"loss layer {loss!r}: only dlib's loss_metric_2 networks are read")
    margin = s.real()
    distance_threshold = s.real()
    input_pattern = b"\x01\x15input_rgb_image_sized"
    input_at = data.find(input_pattern, s.pos, s.pos + 4096)
    if input_at < 0:
        raise DatFormatError("no input_rgb_image_sized layer after the loss header")
    s.pos = input_at
    input_tag = s.string()
    mean = (s.real(), s.real(), s.real())
    size = (s.integer(), s.integer())
    layers: list[DlibLayer] = []
    while (hit := _next_tag(data, s.pos)) is not None:
        at, tag = hit
        s.pos = at
        s.string()
        layers.append(_LAYER_READERS[tag](s, tag, at))
    return DlibNetwork(loss, input_tag, mean, size, layers, margin, distance_threshold)
