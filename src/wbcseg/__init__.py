"""wbcseg: white blood cell segmentation with an InceptionV3 U-Net (segmentation_models on TensorFlow).

The package is a stack of small modules whose imports only point down (docs/architecture.md has
the ranks, and tests/test_architecture.py enforces them). Importing `wbcseg` loads nothing heavy:
TensorFlow is imported by `wbcseg.backend`, and only the modules that run a network import that.
"""

__version__ = "0.2.0"
