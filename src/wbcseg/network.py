"""The U-Net: build it through segmentation_models (on one device or mirrored over several), its
losses, compile it, save and load it with its card, and start it from a trained model's weights.

The saved model takes RGB images with values 0-255 at its input size: the InceptionV3 scaling
(x / 127.5 - 1) is a layer inside it, so nobody can feed it wrongly normalised pixels. Beside
`model.keras` lies the model card (`wbcseg.card`), which says everything else about it.
"""

from __future__ import annotations

import os
from pathlib import Path

from wbcseg.atomic import file_mode
from wbcseg.backend import sm, tf
from wbcseg.card import CARD_FILE, MODEL_FILE, check_card, read_model_dir, write_json
from wbcseg.classes import TASK_CLASSES, check_task
from wbcseg.errors import ModelError
from wbcseg.params import BACKBONES, MIN_INPUT_SIZE, SIZE_MULTIPLE

#: Few steps per epoch leave Keras' default (0.99) moving statistics far behind the weights,
#: which made validation Dice lag training Dice badly; 0.9 follows them closely enough.
BATCH_NORM_MOMENTUM = 0.9


def output_channels(task: str) -> int:
    """1 sigmoid channel for a binary model, one softmax channel per class otherwise."""
    return 1 if task == "binary" else len(TASK_CLASSES[task])


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """Where training runs (params `train.distribute`): 'none', TensorFlow's default strategy (one
    device); 'mirrored', a MirroredStrategy over every GPU TensorFlow sees, or over the logical CPU
    devices where it sees none (the tests make two). Build and compile the model in its `scope()`."""
    if name == "none":
        return tf.distribute.get_strategy()
    if name != "mirrored":
        raise ValueError(f"unknown distribution {name!r}; choose none or mirrored")
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])


def build_unet(backbone: str, task: str, input_size: int, encoder_weights: str | None = None, synchronized: bool = False) -> tf.keras.Model:
    """A U-Net for `task` ('binary': one sigmoid channel; 'tissue': three softmax channels).

    `synchronized`: batch normalisation over the whole batch of every replica (a mirrored model),
    not each replica's share, so that a batch trains as it would on one device.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; segmentation_models knows {', '.join(BACKBONES)}")
    check_task(task)
    if input_size < MIN_INPUT_SIZE or input_size % SIZE_MULTIPLE:
        raise ValueError(f"input size {input_size}: the U-Net needs a side >= {MIN_INPUT_SIZE} divisible by {SIZE_MULTIPLE}")
    unet = sm.Unet(
        backbone,
        classes=output_channels(task),
        activation="linear",
        encoder_weights=encoder_weights,
        input_shape=(input_size, input_size, 3),
    )
    for layer in unet.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = BATCH_NORM_MOMENTUM
            layer.synchronized = synchronized
    inputs = tf.keras.Input((input_size, input_size, 3), name="rgb_0_255")
    scaled = tf.keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="inception_scaling")(inputs)
    # The probabilities are computed in float32 even when the network runs in mixed precision:
    # a softmax (and the loss after it) in bfloat16 loses the small differences training follows.
    probabilities = tf.keras.layers.Activation("sigmoid" if task == "binary" else "softmax", dtype="float32", name="probabilities")
    return tf.keras.Model(inputs, probabilities(unet(scaled)), name=f"unet_{backbone}_{task}")


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


def per_replica(loss):
    """`loss` divided by the number of replicas in sync, so that the gradients summed over replicas
    are those of the mean loss, and Keras logs the mean. Keras divides a loss that gives one value
    per image itself; segmentation_models' losses give one value per batch, which it leaves alone."""

    def replica_loss(gt, pr):
        return loss(gt, pr) / tf.distribute.get_strategy().num_replicas_in_sync

    return replica_loss


def compile_model(model: tf.keras.Model, task: str, loss: str, learning_rate) -> tf.keras.Model:
    """Adam at `learning_rate` (a number or a Keras schedule), the task's loss, Dice and IoU metrics.
    Compile inside the scope the model was built in."""
    foreground = None if task == "binary" else [1, 2]
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate),
        loss=per_replica(make_loss(loss, task)),
        metrics=[
            sm.metrics.FScore(threshold=0.5, class_indexes=foreground, name="dice"),
            sm.metrics.IOUScore(threshold=0.5, class_indexes=foreground, name="iou"),
        ],
    )
    return model


def float32_copy(model: tf.keras.Model, backbone: str, task: str, input_size: int) -> tf.keras.Model:
    """`model`'s weights in a newly built float32 U-Net: a model trained in mixed precision computes
    in bfloat16 forever, and what is saved or run for inference must not."""
    copy = build_unet(backbone, task, input_size)
    copy.set_weights(model.get_weights())
    return copy


def save_model(model: tf.keras.Model, model_dir: str | os.PathLike, card: dict) -> Path:
    """Write `model.keras` (weights and graph, without optimizer state) and the model card.

    Both are written under temporary names and renamed, so a crash leaves no half model.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    check_card(card, "the model card to save")
    inference = float32_copy(model, card["backbone"], card["task"], card["input_size"])
    tmp_model = model_dir / f".{MODEL_FILE}.tmp.keras"
    inference.save(tmp_model)
    os.chmod(tmp_model, file_mode())
    tmp_model.replace(model_dir / MODEL_FILE)
    write_json(model_dir / CARD_FILE, card)
    return model_dir


def load_weights_from(model: tf.keras.Model, model_dir: str | os.PathLike, config) -> dict:
    """Copy into `model`, a U-Net of `config` (a params.RunConfig), the weights of the model in
    `model_dir`, where fine-tuning starts; returns that model's card. ModelError when the two
    differ in task, input size or backbone."""
    card = read_model_dir(model_dir)  # a mismatch is answered before the model loads
    want = {"task": config.task, "input_size": config.input_size, "backbone": config.backbone}
    differ = [f"{key} {card[key]} (this run: {value})" for key, value in want.items() if card[key] != value]
    if differ:
        raise ModelError(f"{model_dir}: cannot start from this model: it has {', '.join(differ)}")
    model.set_weights(load_model(model_dir)[0].get_weights())
    return card


def load_model(model_dir: str | os.PathLike) -> tuple[tf.keras.Model, dict]:
    """(model, card) from a directory written by `save_model`; ModelError naming the problem."""
    card = read_model_dir(model_dir)
    path = Path(model_dir) / MODEL_FILE
    try:
        model = tf.keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged file
        raise ModelError(f"{path}: cannot be loaded as a Keras model ({' '.join(str(exc).split())})") from exc
    size, channels = card["input_size"], output_channels(card["task"])
    if tuple(model.input_shape[1:]) != (size, size, 3) or model.output_shape[-1] != channels:
        raise ModelError(
            f"{path}: model takes {model.input_shape[1:]} and gives {model.output_shape[-1]} channels, "
            f"but its card says {size}x{size}x3 and {channels}"
        )
    return model, card
