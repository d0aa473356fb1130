"""wbcseg: white blood cell segmentation with an InceptionV3 U-Net (segmentation_models on TensorFlow).

Modules: data (fetch, read), split, preprocess, augment, model, train, evaluate, baseline, viz,
predict, engine, notebooks, params, cli. Importing `wbcseg` itself loads no TensorFlow.
"""

__version__ = "0.1.0"


class WbcsegError(ValueError):
    """Bad user input (a dataset file, a parameter, a model directory); the message names it."""
