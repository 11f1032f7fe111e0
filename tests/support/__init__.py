"""Helpers shared by the tests and the benchmarks: ONNX graph builders, photo crops, a local HTTP server, sandboxes."""
