"""Build, compile, save and load the U-Net, through segmentation_models.

The saved model takes RGB images with values 0-255 at its input size: the InceptionV3 scaling
(x / 127.5 - 1) is a layer inside it, so nobody can feed it wrongly normalised pixels. Beside
`model.keras` lies `model_card.json`, which tells `wbcseg predict` everything it needs.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("SM_FRAMEWORK", "tf.keras")
# TensorFlow's C++ INFO lines (oneDNN, missing CUDA on CPU machines) drown the pipeline's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import segmentation_models as sm  # noqa: E402

from wbcseg import WbcsegError  # noqa: E402
from wbcseg.data import DATASET_COMMIT, TASK_CLASSES  # noqa: E402
from wbcseg.params import PRECISIONS  # noqa: E402

MODEL_FILE = "model.keras"
CARD_FILE = "model_card.json"
TEST_METRICS_FILE = "test_metrics.json"
CARD_VERSION = 1
NORMALISATION = "RGB uint8 0-255 in; scaled inside the model by x / 127.5 - 1 (InceptionV3)"
#: Few steps per epoch leave Keras' default (0.99) moving statistics far behind the weights,
#: which made validation Dice lag training Dice badly; 0.9 follows them closely enough.
BATCH_NORM_MOMENTUM = 0.9
REQUIRED_CARD_KEYS = ("task", "classes", "input_size", "backbone", "normalisation")
#: The TensorFlow graph rewrite behind bfloat16 inference: oneDNN's automatic mixed precision runs
#: convolutions and the like in bfloat16 and keeps numerically sensitive ops (softmax) in float32.
_BF16_REWRITE = "auto_mixed_precision_onednn_bfloat16"


class ModelError(WbcsegError):
    """A model directory is missing, incomplete or inconsistent."""


def available_backbones() -> list[str]:
    return list(sm.Backbones.models_names())


def build_unet(backbone: str, task: str, input_size: int, encoder_weights: str | None = None) -> tf.keras.Model:
    """A U-Net for `task` ('binary': one sigmoid channel; 'tissue': three softmax channels)."""
    if backbone not in available_backbones():
        raise ValueError(f"unknown backbone {backbone!r}; segmentation_models knows {sorted(available_backbones())}")
    if task not in TASK_CLASSES:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASK_CLASSES)}")
    if input_size < 96 or input_size % 32:
        raise ValueError(f"input size {input_size}: the U-Net needs a side >= 96 divisible by 32")
    n_classes = len(TASK_CLASSES[task])
    unet = sm.Unet(
        backbone,
        classes=1 if task == "binary" else n_classes,
        activation="sigmoid" if task == "binary" else "softmax",
        encoder_weights=encoder_weights,
        input_shape=(input_size, input_size, 3),
    )
    for layer in unet.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = BATCH_NORM_MOMENTUM
    inputs = tf.keras.Input((input_size, input_size, 3), name="rgb_0_255")
    scaled = tf.keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="inception_scaling")(inputs)
    return tf.keras.Model(inputs, unet(scaled), name=f"unet_{backbone}_{task}")


class TverskyLoss(sm.base.Loss):
    """1 - Tversky index over the foreground classes; alpha weighs false positives, beta false negatives."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, class_indexes=None, smooth: float = 1e-5):
        super().__init__(name="tversky_loss")
        self.alpha, self.beta, self.class_indexes, self.smooth = alpha, beta, class_indexes, smooth

    def __call__(self, gt, pr):
        if self.class_indexes is not None:
            gt = tf.gather(gt, self.class_indexes, axis=-1)
            pr = tf.gather(pr, self.class_indexes, axis=-1)
        axes = [0, 1, 2]
        tp = tf.reduce_sum(gt * pr, axis=axes)
        fp = tf.reduce_sum((1 - gt) * pr, axis=axes)
        fn = tf.reduce_sum(gt * (1 - pr), axis=axes)
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        return 1 - tf.reduce_mean(index)


def make_loss(name: str, task: str):
    """The training loss by name (params `train.loss`)."""
    binary = task == "binary"
    foreground = None if binary else [1, 2]
    dice = sm.losses.DiceLoss(class_indexes=foreground)
    cross_entropy = sm.losses.BinaryCELoss() if binary else sm.losses.CategoricalCELoss()
    focal = sm.losses.BinaryFocalLoss() if binary else sm.losses.CategoricalFocalLoss()
    losses = {
        "dice_ce": lambda: dice + cross_entropy,
        "focal_dice": lambda: dice + focal,
        "focal": lambda: focal,
        "tversky": lambda: TverskyLoss(class_indexes=foreground),
    }
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(losses)}")
    return losses[name]()


def compile_model(model: tf.keras.Model, task: str, loss: str, learning_rate: float) -> tf.keras.Model:
    foreground = None if task == "binary" else [1, 2]
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate),
        loss=make_loss(loss, task),
        metrics=[
            sm.metrics.FScore(threshold=0.5, class_indexes=foreground, name="dice"),
            sm.metrics.IOUScore(threshold=0.5, class_indexes=foreground, name="iou"),
        ],
    )
    return model


def native_bfloat16() -> bool:
    """Whether the model runs on a CPU with native bfloat16 arithmetic (AVX512_BF16 or AMX; read
    from /proc/cpuinfo, so Linux only) and no GPU is visible to TensorFlow."""
    if tf.config.list_physical_devices("GPU"):
        return False
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", cpuinfo) is not None


def resolve_precision(precision: str) -> str:
    """'float32' or 'bfloat16'; 'auto' is bfloat16 where `native_bfloat16()`, else float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


@contextmanager
def inference_precision(precision: str):
    """Run the TensorFlow functions called in the block at `precision` ('float32' or 'bfloat16').

    The graph rewrite is a process-wide TensorFlow option, read when a function runs, so it is
    switched on for the block only: a model trained in the same process afterwards stays float32.
    """
    if resolve_precision(precision) == "float32":
        yield
        return
    before = tf.config.optimizer.get_experimental_options().get(_BF16_REWRITE, False)
    tf.config.optimizer.set_experimental_options({_BF16_REWRITE: True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({_BF16_REWRITE: before})


def as_class_probabilities(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float32)
    if probs.shape[-1] == 1:
        return np.concatenate([1.0 - probs, probs], axis=-1)
    return probs


def save_model(model: tf.keras.Model, model_dir: str | os.PathLike, card: dict) -> Path:
    """Write `model.keras` (weights and graph, without optimizer state) and `model_card.json`.

    Both are written under temporary names and renamed, so a crash leaves no half model.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    missing = [key for key in REQUIRED_CARD_KEYS if key not in card]
    if missing:
        raise ModelError(f"model card lacks {missing}")
    inference = build_unet(card["backbone"], card["task"], card["input_size"])
    inference.set_weights(model.get_weights())
    tmp_model = model_dir / f".{MODEL_FILE}.tmp.keras"
    inference.save(tmp_model)
    tmp_card = model_dir / f".{CARD_FILE}.tmp"
    tmp_card.write_text(json.dumps({"card_version": CARD_VERSION, **card}, indent=2, default=str))
    tmp_model.replace(model_dir / MODEL_FILE)
    tmp_card.replace(model_dir / CARD_FILE)
    return model_dir


def model_card(config, val_metrics: dict | None = None, extra: dict | None = None) -> dict:
    """The card of a model trained with `config` (a params.RunConfig)."""
    return {
        "task": config.task,
        "classes": list(config.classes),
        "input_size": config.input_size,
        "normalisation": NORMALISATION,
        "backbone": config.backbone,
        "encoder_weights": config.encoder_weights,
        "train_params": config.to_dict(),
        "data": {
            "source": f"zxaoyou/segmentation_WBC@{DATASET_COMMIT}",
            "commit": DATASET_COMMIT,
            "datasets": list(config.datasets),
        },
        "val_metrics": val_metrics or {},
        **(extra or {}),
    }


def read_card(model_dir: str | os.PathLike) -> dict:
    """The model card of a model directory, with `test_metrics` when the evaluation has written them."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: model directory not found (train one with `dvc repro`)")
    card_path = model_dir / CARD_FILE
    if not card_path.is_file():
        raise ModelError(f"{model_dir}: no {CARD_FILE}; this is not a complete wbcseg model directory")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{card_path}: not valid JSON ({exc})") from exc
    missing = [key for key in REQUIRED_CARD_KEYS if key not in card]
    if missing:
        raise ModelError(f"{card_path}: model card lacks {missing}")
    if card["task"] not in TASK_CLASSES or list(card["classes"]) != list(TASK_CLASSES[card["task"]]):
        raise ModelError(f"{card_path}: task {card['task']!r} and classes {card['classes']} do not agree")
    # The evaluation stage writes the held-out metrics, and the inference options they were
    # measured with, beside the model: a DVC stage cannot rewrite the card that training made.
    metrics_path = model_dir / TEST_METRICS_FILE
    if metrics_path.is_file():
        card["test_metrics"] = json.loads(metrics_path.read_text())
        card.setdefault("inference", card["test_metrics"].get("inference"))
    return card


def load_model(model_dir: str | os.PathLike) -> tuple[tf.keras.Model, dict]:
    """(model, card) from a directory written by `save_model`; a mismatch is a ModelError."""
    card = read_card(model_dir)
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"{Path(model_dir)}: no {MODEL_FILE} beside {CARD_FILE}")
    try:
        model = tf.keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged file
        raise ModelError(f"{path}: cannot be loaded as a Keras model ({exc})") from exc
    size, channels = card["input_size"], (1 if card["task"] == "binary" else len(card["classes"]))
    if tuple(model.input_shape[1:]) != (size, size, 3) or model.output_shape[-1] != channels:
        raise ModelError(
            f"{path}: model takes {model.input_shape[1:]} and gives {model.output_shape[-1]} channels, "
            f"but its card says {size}x{size}x3 and {channels}"
        )
    return model, card
