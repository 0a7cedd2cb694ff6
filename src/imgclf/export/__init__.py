"""The export stage: the trained model as SavedModel, LiteRT and ONNX files, each scored.

``formats`` is the table of the formats (file, runtime, writer, bounds), ``writers``
makes the files, ``representative`` picks the int8 model's representative (calibration)
images, ``scoring`` measures a runtime (accuracy, agreement, latency, throughput),
``bounds`` checks the targets, and ``stage`` ties them together into
``metrics/export.json``.
"""
