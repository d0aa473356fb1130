"""Shared fixtures: the local dataset mirror and small, untrained models saved like real ones."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from projects import REPO


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Path:
    """OpenVINO conversions go to a temporary cache, not the user's (subprocesses inherit it)."""
    path = tmp_path_factory.mktemp("wbcseg-cache")
    before = os.environ.get("WBCSEG_CACHE_DIR")
    os.environ["WBCSEG_CACHE_DIR"] = str(path)
    yield path
    if before is None:
        del os.environ["WBCSEG_CACHE_DIR"]
    else:
        os.environ["WBCSEG_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The local mirror of the dataset ($WBC_DATA_SOURCE, else ../shared/datasets/segmentation_WBC)."""
    path = Path(os.environ.get("WBC_DATA_SOURCE") or REPO.parent / "shared" / "datasets" / "segmentation_WBC")
    if not (path / "Dataset 1").is_dir():
        message = f"dataset mirror not found at {path}; set WBC_DATA_SOURCE"
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI a missing mirror must not pass as skipped tests
        pytest.skip(message)
    return path


def _saved_model(tmp_path_factory, task: str, size: int = 96) -> Path:
    from wbcseg.backend import tf
    from wbcseg.card import make_card
    from wbcseg.network import build_unet, save_model

    from stand_ins import tiny_config

    config = tiny_config(task=task, input_size=size)
    tf.keras.utils.set_random_seed(0)  # the same untrained weights in every session
    model = build_unet(config.backbone, task, size)
    return save_model(model, tmp_path_factory.mktemp(f"model_{task}"), make_card(config))


@pytest.fixture(scope="session")
def tissue_model_dir(tmp_path_factory) -> Path:
    """An untrained 3-class (tissue) model at 96 px with its card."""
    return _saved_model(tmp_path_factory, "tissue")


@pytest.fixture(scope="session")
def binary_model_dir(tmp_path_factory) -> Path:
    """An untrained binary (WBC vs rest) model at 96 px with its card."""
    return _saved_model(tmp_path_factory, "binary")


@pytest.fixture
def cell_image() -> tuple[np.ndarray, np.ndarray]:
    """A generated 120x120 'cell': purple nucleus in a pink cytoplasm on a pale background,
    with its class map (0 background, 1 cytoplasm, 2 nucleus)."""
    yy, xx = np.mgrid[:120, :120]
    r = np.hypot(yy - 60, xx - 60)
    labels = np.where(r < 18, 2, np.where(r < 36, 1, 0)).astype(np.uint8)
    colours = np.array([[235, 215, 170], [210, 150, 190], [90, 40, 140]], np.uint8)
    rng = np.random.default_rng(0)
    image = np.clip(colours[labels].astype(int) + rng.integers(-8, 9, (120, 120, 3)), 0, 255).astype(np.uint8)
    return image, labels
