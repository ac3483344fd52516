"""Build time: everything that makes, trains, imports, optimises or evaluates a model version.

These modules may import torch, onnx, scikit-learn and the packages that ship weights; the runtime
(``ml`` outside this package: pipelines, sessions, decoding) never imports anything from here, so a
worker image needs onnxruntime alone. ``tests/test_architecture.py`` keeps that line.
"""
