"""The export stage: the trained model as SavedModel, LiteRT and ONNX files, each scored.

``writers`` makes the files, ``calibration`` picks the int8 calibration images,
``scoring`` measures a runtime (accuracy, agreement, latency, throughput), ``bounds``
checks the targets, and ``stage`` ties them together into ``metrics/export.json``.
"""
