"""Training: the input pipeline, the schedule, mixed precision, and repeatable runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from wbcseg import network, train
from wbcseg.backend import tf
from wbcseg.fields_scale import training_cell_diameter

from stand_ins import tiny_config


def _arrays(cell_image, n=4):
    from wbcseg.preprocess import resize_image, resize_labels

    image, labels = cell_image
    return {"images": np.stack([resize_image(image, 96)] * n), "labels": np.stack([resize_labels(labels, 96)] * n)}


def _epoch(dataset) -> list[np.ndarray]:
    return [images.numpy() for images, _ in dataset]


def test_dataset_yields_float_images_and_targets(cell_image):
    arrays = _arrays(cell_image)
    images, targets = next(iter(train.make_dataset(arrays["images"], arrays["labels"], "tissue", 2, augment="stain")))
    assert images.shape == (2, 96, 96, 3) and images.dtype.name == "float32"
    assert targets.shape == (2, 96, 96, 3)
    np.testing.assert_allclose(targets.numpy().sum(-1), 1.0)
    _, binary = next(iter(train.make_dataset(arrays["images"], arrays["labels"], "binary", 2)))
    assert binary.shape == (2, 96, 96, 1) and set(np.unique(binary)) == {0.0, 1.0}


def test_augmentation_is_seeded_per_image_and_changes_every_epoch(cell_image):
    arrays = _arrays(cell_image, n=6)
    make = lambda seed: train.make_dataset(arrays["images"], arrays["labels"], "tissue", 3, augment="stain", shuffle=True, seed=seed)  # noqa: E731
    first, again = make(1), make(1)
    epoch1, epoch2 = _epoch(first), _epoch(first)
    for a, b in zip(epoch1, _epoch(again)):
        np.testing.assert_array_equal(a, b)  # the same seed, the same batches
    assert not all(np.array_equal(a, b) for a, b in zip(epoch1, epoch2))  # a new draw each epoch
    assert not all(np.array_equal(a, b) for a, b in zip(epoch1, _epoch(make(2))))


def test_cosine_schedule_warms_up_then_decays_to_one_percent():
    config = tiny_config(epochs=10, warmup_epochs=2, schedule="cosine", learning_rate=1e-3)
    schedule = train.learning_rate(config, steps_per_epoch=5)
    rates = np.array([float(schedule(step)) for step in range(50)])
    np.testing.assert_allclose(rates[:11], np.linspace(0, 1e-3, 11), rtol=1e-5, atol=1e-12)  # linear warm-up to the peak
    assert np.all(np.diff(rates[10:]) <= 1e-12)  # then only down
    assert float(schedule(50)) == pytest.approx(1e-3 * train.FINAL_LR_FRACTION, rel=1e-4)
    assert train.learning_rate(tiny_config(schedule="constant"), 5) == 1e-3


def test_training_precision_names():
    assert train.resolve_training_precision("auto") == ("mixed_bfloat16" if train.native_bfloat16() else "float32")
    with pytest.raises(ValueError, match="unknown training precision 'half'"):
        train.resolve_training_precision("half")


def test_mixed_precision_computes_in_bfloat16_but_returns_float32_probabilities():
    with train.dtype_policy("mixed_bfloat16"):
        model = network.build_unet("inceptionv3", "tissue", 96)
    assert tf.keras.mixed_precision.global_policy().name == "float32"  # restored after the block
    convolutions = [layer for layer in model.layers[2].layers if isinstance(layer, tf.keras.layers.Conv2D)]
    assert convolutions[0].compute_dtype == "bfloat16" and convolutions[0].variable_dtype == "float32"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    assert model.predict_on_batch(np.zeros((1, 96, 96, 3))).dtype == np.float32
    copy = network.float32_copy(model, "inceptionv3", "tissue", 96)
    assert copy.layers[2].layers[1].compute_dtype == "float32"
    np.testing.assert_array_equal(copy.get_weights()[0], model.get_weights()[0])


@pytest.mark.slow
def test_train_and_save_writes_model_card_and_dvclive(tmp_path, cell_image, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # DVCLive looks for a DVC repository from the working directory
    arrays = _arrays(cell_image)
    config = tiny_config(augment="basic", schedule="cosine", epochs=2, warmup_epochs=1, precision="mixed_bfloat16")
    model, history, card = train.train_and_save(config, arrays, arrays, tmp_path / "model", live_dir=tmp_path / "live")
    assert list(history.index) == [1, 2] and {"loss", "val_loss", "dice", "val_dice"} <= set(history)
    assert card["best_epoch"] in (1, 2) and card["n_train"] == 4 and "dice" in card["val_metrics"]
    assert card["train_params"]["schedule"] == "cosine" and model.layers[2].layers[1].compute_dtype == "float32"
    assert card["scale"]["cell_diameter_px"] == pytest.approx(training_cell_diameter(arrays["labels"], 96), abs=0.01)
    reloaded, saved_card = network.load_model(tmp_path / "model")
    assert saved_card["train_params"]["epochs"] == 2
    np.testing.assert_allclose(reloaded.predict(arrays["images"][:1], verbose=0), model.predict(arrays["images"][:1], verbose=0), atol=1e-5)
    assert (tmp_path / "live" / "plots" / "metrics" / "eval" / "dice.tsv").is_file()
    lines = [line for line in capsys.readouterr().out.splitlines() if "epoch" in line]
    assert len(lines) == 2 and lines[1].startswith("test: epoch 2/2: loss ") and "validation Dice" in lines[1]


REPEAT = textwrap.dedent(
    """
    import hashlib
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from stand_ins import tiny_config
    from wbcseg.data import list_samples, read_sample
    from wbcseg.preprocess import resize_image, resize_labels
    from wbcseg.train import fit

    rows = list_samples(sys.argv[2], datasets=[1]).head(6)
    pairs = [read_sample(row) for _, row in rows.iterrows()]
    arrays = {"images": np.stack([resize_image(i, 96) for i, _ in pairs]), "labels": np.stack([resize_labels(l, 96) for _, l in pairs])}
    config = tiny_config(augment="stain", deterministic=True, precision=sys.argv[3], batch_size=3, epochs=1)
    model, _ = fit(config, arrays, arrays, progress=False)
    print(hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest())
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_a_deterministic_run_repeats_exactly(mirror, precision):
    """Each training stage is a process of its own: two processes with the same seed train the same weights."""
    digests = []
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", REPEAT, str(Path(__file__).parent), str(mirror), precision], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        digests.append(result.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1]


def test_balanced_epochs_draw_each_dataset_in_equal_shares():
    images = np.zeros((40, 96, 96, 3), np.uint8)
    images[:30, 0, 0, 0] = 1  # dataset 1: 30 images marked 1, dataset 2: 10 images marked 2
    images[30:, 0, 0, 0] = 2
    groups = np.array([1] * 30 + [2] * 10)
    dataset = train.make_dataset(images, np.zeros((40, 96, 96), np.uint8), "tissue", 8, shuffle=True, seed=0, groups=groups)
    epoch = np.concatenate([batch[:, 0, 0, 0] for batch in _epoch(dataset)])
    assert len(epoch) == 40 and 12 <= (epoch == 2).sum() <= 28  # about half, not a quarter
    plain = np.concatenate([batch[:, 0, 0, 0] for batch in _epoch(train.make_dataset(images, np.zeros((40, 96, 96), np.uint8), "tissue", 8))])
    assert (plain == 2).sum() == 10


def test_batches_too_small_to_give_every_replica_an_image_are_left_out(cell_image):
    arrays = _arrays(cell_image, n=9)
    sizes = {replicas: [len(images) for images, _ in train.make_dataset(arrays["images"], arrays["labels"], "tissue", 4, replicas=replicas)]
             for replicas in (1, 2)}
    assert sizes == {1: [4, 4, 1], 2: [4, 4]}
