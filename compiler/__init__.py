"""edgegrad: compile an ONNX model into a static on-device training step (forward, backward, optimizer) in C."""

__version__ = "0.1.0"
