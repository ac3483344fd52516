"""Model optimisation: INT8 / FP16 variants of an FP32 ONNX file and the parity checks that gate them."""
