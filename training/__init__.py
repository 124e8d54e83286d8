"""Training pipeline: validate data, split, fit, export to LiteRT, evaluate, gate, report.

Kept import-light (no TensorFlow here): the service imports `training.schema`.
"""
