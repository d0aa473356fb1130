import numpy as np

from wbcseg import network, train
from wbcseg.params import RunConfig


def _config(task):
    return RunConfig(variant="t", task=task, datasets=(1,), test_datasets=(1,), epochs=2, batch_size=2,
                     learning_rate=1e-3, loss="dice_ce", augment=True, seed=0, backbone="inceptionv3",
                     encoder_weights=None, input_size=96)


def _arrays(cell_image, n=4):
    from wbcseg.preprocess import resize_image, resize_labels

    image, labels = cell_image
    return {"images": np.stack([resize_image(image, 96)] * n), "labels": np.stack([resize_labels(labels, 96)] * n)}


def test_dataset_yields_float_images_and_targets(cell_image):
    arrays = _arrays(cell_image)
    images, targets = next(iter(train.make_dataset(arrays["images"], arrays["labels"], "tissue", 2, augment=True)))
    assert images.shape == (2, 96, 96, 3) and images.dtype.name == "float32"
    assert targets.shape == (2, 96, 96, 3)
    np.testing.assert_allclose(targets.numpy().sum(-1), 1.0)
    _, binary = next(iter(train.make_dataset(arrays["images"], arrays["labels"], "binary", 2)))
    assert binary.shape == (2, 96, 96, 1) and set(np.unique(binary)) == {0.0, 1.0}


def test_train_and_save_writes_model_card_and_dvclive(tmp_path, cell_image, monkeypatch):
    monkeypatch.chdir(tmp_path)  # DVCLive looks for a DVC repository from the working directory
    arrays = _arrays(cell_image)
    model, history, card = train.train_and_save(_config("tissue"), arrays, arrays, tmp_path / "model", live_dir=tmp_path / "live")
    assert list(history.index) == [1, 2] and {"loss", "val_loss", "dice", "val_dice"} <= set(history)
    assert card["best_epoch"] in (1, 2) and card["n_train"] == 4 and "dice" in card["val_metrics"]
    reloaded, saved_card = network.load_model(tmp_path / "model")
    assert saved_card["train_params"]["epochs"] == 2
    np.testing.assert_allclose(reloaded.predict(arrays["images"][:1], verbose=0), model.predict(arrays["images"][:1], verbose=0), atol=1e-5)
    assert (tmp_path / "live" / "plots" / "metrics" / "eval" / "dice.tsv").is_file()


def test_batches_too_small_to_give_every_replica_an_image_are_left_out(cell_image):
    arrays = _arrays(cell_image, n=9)
    sizes = {replicas: [len(images) for images, _ in train.make_dataset(arrays["images"], arrays["labels"], "tissue", 4, replicas=replicas)]
             for replicas in (1, 2)}
    assert sizes == {1: [4, 4, 1], 2: [4, 4]}
