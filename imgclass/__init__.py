"""imgclass: classify images with ONNX exports of Inception v3 and ResNet."""

__version__ = "0.1.0"
