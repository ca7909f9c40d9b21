"""Exporting searched models: choosing them, config files, checkpoints, ONNX in the released convention."""
