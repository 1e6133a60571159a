"""vidflow_export: HF Video LLM -> vidflow model package (ONNX graphs, model.yaml, golden files)."""
