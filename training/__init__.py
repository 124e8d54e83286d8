"""Training pipeline: validate data, split, fit, export to LiteRT, evaluate, gate, report.

Kept import-light: TensorFlow loads only in the stages that fit and export a model.
"""
import os

# Set before anything imports TensorFlow (the CLI, the tests, a notebook). Level 3 keeps
# its C++ start-up and tf.data chatter off the progress lines; Python errors still raise.
# oneDNN's kernels are chosen by the CPU's instruction set and announce themselves on
# stderr; TensorFlow's own kernels are plenty for models this size. An environment
# variable set by the caller wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
