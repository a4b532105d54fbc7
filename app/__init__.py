"""Atelier: style transfer, face detection and face verification served over HTTP with onnxruntime."""

__version__ = "0.1.0"
