"""llm4seg.export: checkpoint -> ONNX (FP32, FP16, INT8 QDQ) -> TensorRT engines."""
