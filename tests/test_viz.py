"""Overlay colours where they belong, and every figure builds (and is closed)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from wbcseg import viz
from wbcseg.data import image_stats, list_samples
from wbcseg.overlay import overlay


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_error_overlay_colours_tp_fp_fn():
    image = np.zeros((1, 4, 3), np.uint8)
    truth = np.array([[True, False, True, False]])
    pred = np.array([[True, True, False, False]])
    out = viz.error_overlay(image, truth, pred)
    assert out.dtype == np.uint8 and out.shape == image.shape
    expected = [np.round(viz.ERROR_ALPHA * np.array(viz.ERROR_COLOURS[name])) for name in
                ("true positive", "false positive", "false negative")]
    np.testing.assert_array_equal(out[0, :3], np.array(expected, np.uint8))
    np.testing.assert_array_equal(out[0, 3], [0, 0, 0])  # true negative untouched


def test_error_colours_are_distinct():
    assert len(set(viz.ERROR_COLOURS.values())) == 3
    assert [h.get_label() for h in viz.legend_handles(viz.ERROR_COLOURS)] == list(viz.ERROR_COLOURS)


def test_tissue_overlay_tells_nucleus_from_cytoplasm(cell_image):
    image, labels = cell_image
    out = overlay(image, labels, "tissue")
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[labels == 0], image[labels == 0])
    nucleus, cytoplasm = out[60, 60].astype(int), out[60, 30].astype(int)  # interiors, off the outlines
    assert labels[60, 60] == 2 and labels[60, 30] == 1
    assert np.abs(nucleus - image[60, 60]).sum() > 20 and np.abs(cytoplasm - image[60, 30]).sum() > 20


@pytest.mark.parametrize("task", ["tissue", "binary"])
def test_overlay_gallery_builds(cell_image, task):
    image, truth = cell_image
    labels = truth if task == "tissue" else (truth > 0).astype(np.uint8)
    rows = [{"sample_id": f"d1_{i:03d}", "image": image, "truth": truth, "labels": labels, "dice": 0.9} for i in range(2)]
    fig = viz.overlay_gallery(rows, task=task, title="worst first")
    assert len(fig.axes) == 8
    assert fig.axes[3].get_title() == "cell Dice 0.900"


def test_training_curves_builds_with_missing_columns():
    history = pd.DataFrame({"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.7, 0.6], "dice": [0.3, 0.6, 0.8]})
    history.index = pd.RangeIndex(1, 4, name="epoch")
    fig = viz.training_curves(history)
    loss_ax, dice_ax = fig.axes[:2]
    assert len(loss_ax.lines) == 2 and len(dice_ax.lines) == 1


def test_metric_boxplots_builds_with_nan_hd95():
    per_image = pd.DataFrame(
        {"dataset": [1, 1, 2, 2], "target": ["cell", "nucleus"] * 2, "dice": [0.9, 0.8, 0.95, 0.7], "hd95": [1.0, np.nan, 2.0, 3.0]}
    )
    fig = viz.metric_boxplots(per_image)
    assert len(fig.axes) == 2


def test_comparison_and_targets_figures_build():
    table = pd.DataFrame({
        "model": ["main", "main", "main", "d1_to_d2"], "dataset": ["d1", "d2", "all", "d2"], "target": ["cell"] * 4,
        "dice_mean": [0.97, 0.95, 0.96, 0.8], "dice_std": [0.01, 0.02, 0.02, np.nan],
    })
    fig = viz.dice_comparison(table)
    assert [ax.get_title() for ax in fig.axes] == ["tested on d1", "tested on d2"]  # the pooled rows are left out
    assert len(fig.axes[1].patches) == 2
    targets = pd.DataFrame({"model": ["main", "main"], "requirement": [">= 0.98", ">= 0.97"],
                            "dataset": ["d1", "d2"], "target": ["cell", "nucleus"], "required": [0.98, 0.97],
                            "reached": [0.99, np.nan], "gap": [0.01, np.nan], "met": [True, False]})
    fig = viz.quality_targets_chart(targets)
    assert [t.get_text() for t in fig.axes[0].texts] == ["+0.010"]


def test_confusion_figure_writes_row_shares():
    confusion = pd.DataFrame([[8, 2], [0, 0]], index=["background", "cell"], columns=["background", "cell"])
    fig = viz.confusion_figure(confusion)
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.800", "0.200", "0.000", "0.000"]  # an empty class is no error


def test_exploration_figures_build_and_save(mirror, tmp_path):
    samples = list_samples(mirror).groupby("dataset").head(2)
    stats = image_stats(samples)
    viz.size_histogram(stats)
    viz.class_fraction_bars(stats)
    fig = viz.sample_grid(samples, n_per_dataset=2, seed=0)
    assert len(fig.axes) == 2 * 2 * 2
    path = viz.save_figure(fig, tmp_path / "sub" / "grid.png")
    assert path.is_file() and path.stat().st_size > 1000
