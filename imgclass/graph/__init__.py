"""Reading an ONNX graph: the safe reader, signature, head activation, surgery, runtime sessions, ranking."""
