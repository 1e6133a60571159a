"""The toy VideoLLM: a small LLaVA-NeXT-Video trained on `vidflow synth` data (docs/toy.md).

`python -m vidflow_export toy-train --out models` trains the image stage (`toy-image`) and the
video stage (`toy-video`) and exports both as model packages next to `toy-train.json`.
"""
