"""Training: the input pipeline and `fit` with its callbacks (DVCLive logging, best-epoch weights,
one progress line per epoch), then the model saved with its card."""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from wbcseg.augment import training_augmentation
from wbcseg.backend import tf
from wbcseg.card import make_card
from wbcseg.engine import native_bfloat16
from wbcseg.fields_scale import training_cell_diameter
from wbcseg.network import build_unet, compile_model, distribution_strategy, float32_copy, load_weights_from, save_model
from wbcseg.params import TRAINING_PRECISIONS

#: Where the cosine schedule ends, as a fraction of the peak learning rate: near zero, so the last
#: epochs refine rather than jump.
FINAL_LR_FRACTION = 0.01


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    task: str,
    batch_size: int,
    augment: str = "none",
    shuffle: bool = False,
    seed: int = 0,
    groups: np.ndarray | None = None,
    replicas: int = 1,
) -> tf.data.Dataset:
    """A batched, prefetched tf.data pipeline of (RGB 0-255 float32, target) pairs.

    With `groups` (the dataset of each image), an epoch draws as many images as there are, from
    each group in equal shares, instead of each image once: a small dataset is seen as often as a
    large one. Each image's augmentation is drawn from its own seed, which comes from a seeded
    stream that changes every epoch: the same seed gives the same batches, however the map's
    threads interleave. With several `replicas`, a last batch smaller than their number is left
    out: tf.distribute would give some replica no image, which the network cannot run.
    """
    if groups is not None and len(np.unique(groups)) > 1:
        parts = [
            tf.data.Dataset.from_tensor_slices((images[groups == group], labels[groups == group]))
            .shuffle(int((groups == group).sum()), seed=seed + i, reshuffle_each_iteration=True)
            .repeat()
            for i, group in enumerate(np.unique(groups))
        ]
        dataset = tf.data.Dataset.sample_from_datasets(parts, seed=seed, rerandomize_each_iteration=True).take(len(images))
    else:
        dataset = tf.data.Dataset.from_tensor_slices((images, labels))
        if shuffle:
            dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if augment != "none":
        pipelines = threading.local()  # building a pipeline costs more than applying it: one per thread

        def _augment(image, label, element_seed):
            if not hasattr(pipelines, "compose"):
                pipelines.compose = training_augmentation(augment)
            pipelines.compose.set_random_seed(int(element_seed) % 2**32)
            out = pipelines.compose(image=image, mask=label)
            return out["image"], out["mask"]

        def _tf_augment(pair, element_seed):
            image, label = tf.numpy_function(_augment, [*pair, element_seed], [tf.uint8, tf.uint8])
            image.set_shape(images.shape[1:])
            label.set_shape(labels.shape[1:])
            return image, label

        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(_tf_augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    n_classes = 1 if task == "binary" else 3

    def _to_targets(image, label):
        if task == "binary":
            target = tf.cast(label > 0, tf.float32)[..., None]
        else:
            target = tf.one_hot(tf.cast(label, tf.int32), n_classes)
        return tf.cast(image, tf.float32), target

    # take(), not filter(): Keras must know how many batches there are; over a filtered dataset
    # of unknown length, its Dice metric counted one batch too many at the end of each epoch.
    batches = len(images) // batch_size + (len(images) % batch_size >= replicas)
    return dataset.map(_to_targets, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).take(batches).prefetch(tf.data.AUTOTUNE)


def learning_rate(config, steps_per_epoch: int):
    """The learning rate of `config`: a constant, or (`cosine`) a linear warm-up over
    `warmup_epochs` followed by a cosine decay to FINAL_LR_FRACTION of it at the last step."""
    if config.schedule == "constant":
        return config.learning_rate
    warmup = config.warmup_epochs * steps_per_epoch
    return tf.keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.learning_rate,
        decay_steps=max(1, (config.epochs - config.warmup_epochs) * steps_per_epoch),
        alpha=FINAL_LR_FRACTION,
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def resolve_training_precision(precision: str) -> str:
    """'float32' or 'mixed_bfloat16'; 'auto' is mixed_bfloat16 on a CPU with native bfloat16 and
    no GPU (where it is faster), float32 elsewhere."""
    if precision not in TRAINING_PRECISIONS:
        raise ValueError(f"unknown training precision {precision!r}; choose {', '.join(TRAINING_PRECISIONS)}")
    mixed = precision == "mixed_bfloat16" or (precision == "auto" and native_bfloat16())
    return "mixed_bfloat16" if mixed else "float32"


@contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy set to `name` for the block: models built in it compute in that
    precision (their variables stay float32), and models built afterwards are float32 again."""
    before = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(before)


class EpochLine(tf.keras.callbacks.Callback):
    """One line per epoch for a person watching a long run: loss, validation Dice, the best so far, time."""

    def __init__(self, epochs: int, label: str = "", stream=None):
        super().__init__()
        self.epochs, self.label, self.stream = epochs, label, stream or sys.stdout
        self.best = (-np.inf, 0)

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        dice = logs.get("val_dice", np.nan)
        if dice > self.best[0]:
            self.best = (dice, epoch + 1)
        print(
            f"{self.label}epoch {epoch + 1}/{self.epochs}: loss {logs.get('loss', np.nan):.4f}, "
            f"validation Dice {dice:.4f} (best {self.best[0]:.4f} at epoch {self.best[1]}), "
            f"{time.perf_counter() - self.started:.0f} s",
            file=self.stream, flush=True,
        )


def fit(config, train: dict, val: dict, live_dir: str | os.PathLike | None = None, progress: bool = True):
    """Train a U-Net for `config` (params.RunConfig) on model-size arrays {'images', 'labels'}:
    from scratch, or from the weights of the model directory `config.init_from`; on one device,
    or with `config.distribute` 'mirrored' on several, each batch of `config.batch_size` split
    between them.

    The weights of the epoch with the best validation Dice are kept. Per-epoch metrics go to
    DVCLive at `live_dir` (for `dvc plots`), and, with `progress`, one line per epoch to stdout.
    With `config.deterministic`, TensorFlow's ops run deterministically (for the rest of the
    process): the same seed then gives the same model on the same machine. Returns (model,
    history DataFrame).
    """
    tf.keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = distribution_strategy(config.distribute)
    replicas = strategy.num_replicas_in_sync
    train_ds = make_dataset(train["images"], train["labels"], config.task, config.batch_size, augment=config.augment, shuffle=True,
                            seed=config.seed, groups=train.get("dataset") if config.balance else None, replicas=replicas)
    val_ds = make_dataset(val["images"], val["labels"], config.task, config.batch_size, replicas=replicas)
    callbacks = [tf.keras.callbacks.EarlyStopping(monitor="val_dice", mode="max", patience=config.epochs, restore_best_weights=True)]
    if progress:
        callbacks.append(EpochLine(config.epochs, label=f"{config.variant}: "))
    if live_dir is not None:
        from dvclive import Live
        from dvclive.keras import DVCLiveCallback

        callbacks.append(DVCLiveCallback(live=Live(str(live_dir), dvcyaml=None, save_dvc_exp=False)))
    precision = resolve_training_precision(config.precision)
    with dtype_policy(precision), strategy.scope():
        model = build_unet(config.backbone, config.task, config.input_size, config.encoder_weights, synchronized=replicas > 1)
        if config.init_from:
            load_weights_from(model, config.init_from, config)
        compile_model(model, config.task, config.loss, learning_rate(config, steps_per_epoch=int(train_ds.cardinality())))
        # shuffle=False: the tf.data pipeline shuffles; Keras cannot shuffle a Dataset itself
        history = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks, verbose=0, shuffle=False)
    if precision != "float32":  # the best weights in a float32 model, as inference and saving expect
        model = float32_copy(model, config.backbone, config.task, config.input_size)
        compile_model(model, config.task, config.loss, config.learning_rate)
    table = pd.DataFrame(history.history)
    table.index = pd.RangeIndex(1, len(table) + 1, name="epoch")
    return model, table


def validation_metrics(model, val: dict, config) -> dict:
    """Loss, Dice and IoU on the validation arrays at model size, as Keras computes them in training."""
    replicas = model.distribute_strategy.num_replicas_in_sync
    values = model.evaluate(make_dataset(val["images"], val["labels"], config.task, config.batch_size, replicas=replicas), verbose=0, return_dict=True)
    return {name: float(value) for name, value in values.items()}


def train_and_save(config, train: dict, val: dict, model_dir: str | os.PathLike, live_dir=None, split_file: str | None = None):
    """`fit`, then save the best model with its card to `model_dir`; the card records the training
    images' median cell diameter at model size, which field mode needs. Returns (model, history, card)."""
    model, history = fit(config, train, val, live_dir=live_dir)
    best_epoch = int(history["val_dice"].idxmax())
    card = make_card(
        config,
        val_metrics=validation_metrics(model, val, config),
        extra={"best_epoch": best_epoch, "epochs_run": len(history), "split_file": split_file,
               "n_train": len(train["images"]), "n_val": len(val["images"])},
        cell_diameter_px=training_cell_diameter(train["labels"], config.input_size),
    )
    save_model(model, Path(model_dir), card)
    return model, history, card
