"""Export a tuned model for fast serving: ONNX (fp32 + int8) with parity gates, Triton repositories."""
