"""Metrics on hand-computed cases, the target mapping, and the tables built from them."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from wbcseg import classes, crossval, evaluate, metrics, report, scoring
from wbcseg.classes import MASK_VALUES


def squares(shape=(20, 20), pred_rows=(0, 10), truth_rows=(5, 15)):
    pred, truth = np.zeros(shape, bool), np.zeros(shape, bool)
    pred[pred_rows[0]:pred_rows[1], :10] = True
    truth[truth_rows[0]:truth_rows[1], :10] = True
    return pred, truth


def test_overlap_metrics_match_hand_counts():
    pred, truth = squares()  # 100 px each, 50 px shared, in 400 px
    m = metrics.segmentation_metrics(pred, truth)
    assert m["dice"] == pytest.approx(0.5)
    assert m["iou"] == pytest.approx(50 / 150)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)
    assert m["pixel_accuracy"] == pytest.approx(1 - 100 / 400)


def test_precision_and_recall_are_not_swapped():
    pred = np.zeros((10, 10), bool)
    pred[:2] = True  # 20 px, all inside the truth
    truth = np.zeros((10, 10), bool)
    truth[:4] = True  # 40 px
    m = metrics.segmentation_metrics(pred, truth)
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(0.5)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_hd95_of_bands_offset_by_k_is_k(k):
    # Full-width bands sharing their top edge: half of the boundary is 0 px apart, the bottom
    # edges are k px apart, so both the maximum and the 95th percentile are k.
    pred, truth = np.zeros((60, 40), bool), np.zeros((60, 40), bool)
    pred[10:30] = True
    truth[10:30 + k] = True
    assert metrics.hd95(pred, truth) == pytest.approx(k)
    assert metrics.hd95(truth, pred) == pytest.approx(k)
    assert metrics.segmentation_metrics(pred, truth)["hd95"] == pytest.approx(k)


def test_hd95_of_concentric_discs_is_the_radius_difference():
    yy, xx = np.mgrid[:101, :101]
    r = np.hypot(yy - 50, xx - 50)
    assert metrics.hd95(r < 20, r < 25) == pytest.approx(5, abs=1)


def test_hd95_ignores_a_stray_pixel_unlike_the_maximum():
    truth = np.zeros((80, 80), bool)
    truth[10:50, 10:50] = True
    pred = truth.copy()
    pred[75, 75] = True  # one boundary pixel ~36 px away among ~300 at distance 0
    assert metrics.hd95(pred, truth) == 0


def test_identical_masks_are_perfect():
    pred, _ = squares()
    m = metrics.segmentation_metrics(pred, pred)
    assert (m["dice"], m["iou"], m["precision"], m["recall"], m["pixel_accuracy"], m["hd95"]) == (1, 1, 1, 1, 1, 0)


def test_both_empty_counts_as_right():
    empty = np.zeros((8, 8), bool)
    m = metrics.segmentation_metrics(empty, empty)
    assert m == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "pixel_accuracy": 1.0, "hd95": 0.0}


@pytest.mark.parametrize("missing", ["pred", "truth"])
def test_one_empty_scores_zero_and_nan_distance(missing):
    full, empty = squares()[0], np.zeros((20, 20), bool)
    pred, truth = (empty, full) if missing == "pred" else (full, empty)
    m = metrics.segmentation_metrics(pred, truth)
    assert m["dice"] == m["iou"] == m["precision"] == m["recall"] == 0
    assert math.isnan(m["hd95"])
    assert m["pixel_accuracy"] == pytest.approx(1 - 100 / 400)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same resolution"):
        metrics.segmentation_metrics(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


def test_tissue_targets_union_cytoplasm_and_nucleus():
    labels = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    masks = classes.target_masks(labels, "tissue")
    assert list(masks) == ["cell", "nucleus", "cytoplasm"]
    np.testing.assert_array_equal(masks["cell"], [[0, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(masks["nucleus"], [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(masks["cytoplasm"], [[0, 1, 0], [0, 1, 0]])


def test_binary_prediction_and_truth_map_to_cell_only():
    np.testing.assert_array_equal(classes.target_masks(np.array([[0, 1]]), "binary")["cell"], [[False, True]])
    truth = classes.truth_masks(np.array([[0, 1, 2]], np.uint8), "binary")
    assert list(truth) == ["cell"]
    np.testing.assert_array_equal(truth["cell"], [[False, True, True]])


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="unknown task"):
        classes.target_masks(np.zeros((2, 2)), "nuclei")


# --------------------------------------------------------------------------- per image


@pytest.fixture
def written_samples(tmp_path, cell_image):
    """Two samples on disk (one per dataset) made from the generated cell, with their class maps."""
    image, class_map = cell_image
    rows = []
    for dataset in (1, 2):
        stem = tmp_path / f"d{dataset}_001"
        Image.fromarray(image).save(f"{stem}.bmp")
        Image.fromarray(MASK_VALUES[class_map]).save(f"{stem}.png")
        rows.append({"sample_id": stem.name, "dataset": dataset, "image": f"{stem}.bmp", "mask": f"{stem}.png", "cell_type": 2})
    return pd.DataFrame(rows), image, class_map


def test_evaluate_labels_long_format(written_samples):
    samples, _, class_map = written_samples
    shrunk = class_map.copy()
    shrunk[class_map == 1] = 0  # the prediction misses the whole cytoplasm
    table = scoring.evaluate_labels([class_map, shrunk], samples, "tissue")
    assert list(table.columns) == list(scoring.PER_IMAGE_COLUMNS)
    assert len(table) == 2 * 3
    by = table.set_index(["sample_id", "target"])
    assert by.loc[("d1_001", "cell"), "dice"] == 1.0
    assert by.loc[("d2_001", "nucleus"), "dice"] == 1.0
    assert by.loc[("d2_001", "cytoplasm"), "dice"] == 0.0
    assert by.loc[("d2_001", "cell"), "recall"] == pytest.approx((class_map == 2).sum() / (class_map > 0).sum())
    assert (table["height"] == 120).all() and (table["width"] == 120).all()


def test_evaluate_labels_refuses_model_size_predictions(written_samples):
    samples, _, class_map = written_samples
    with pytest.raises(ValueError, match="native resolution"):
        scoring.evaluate_labels([class_map[:96, :96]] * 2, samples, "tissue")
    with pytest.raises(ValueError, match="1 predictions for 2 samples"):
        scoring.evaluate_labels([class_map], samples, "tissue")


def test_confusion_counts_truth_rows_prediction_columns():
    truth = np.array([[0, 0, 1, 2]])
    pred = np.array([[0, 1, 1, 1]])
    np.testing.assert_array_equal(metrics.confusion_counts(pred, truth, 3), [[1, 1, 0], [0, 1, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match="same resolution"):
        metrics.confusion_counts(pred[:, :2], truth, 3)


@pytest.mark.parametrize("task, classes_", [("tissue", ["background", "cytoplasm", "nucleus"]), ("binary", ["background", "cell"])])
def test_pixel_confusion_sums_every_pixel_in_the_task_classes(written_samples, task, classes_):
    samples, _, class_map = written_samples
    missed_cytoplasm = np.where(class_map == 1, 0, class_map) if task == "tissue" else (class_map == 2).astype(np.uint8)
    truth = class_map if task == "tissue" else (class_map > 0).astype(np.uint8)
    confusion = scoring.pixel_confusion([truth, missed_cytoplasm], samples, task)
    assert list(confusion.index) == list(confusion.columns) == classes_
    assert confusion.to_numpy().sum() == 2 * class_map.size
    assert confusion.loc[classes_[1], "background"] == (class_map == 1).sum()  # the second image's missed cytoplasm
    assert confusion.loc["background", "background"] == 2 * (class_map == 0).sum()


def test_evaluate_images_drives_segment_many(written_samples):
    samples, image, class_map = written_samples

    class StandIn:
        task = "binary"
        seen: list = []

        def segment_many(self, images, batch_size=16):
            for im in images:
                self.seen.append(im.shape)
                yield SimpleNamespace(labels=(class_map > 0).astype(np.uint8))

    table = evaluate.evaluate_images(StandIn(), samples)
    assert StandIn.seen == [image.shape, image.shape]
    assert list(table["target"]) == ["cell", "cell"]
    assert (table["dice"] == 1.0).all()


# --------------------------------------------------------------------------- tables


@pytest.fixture
def per_image():
    return pd.DataFrame(
        {
            "sample_id": ["a", "b", "c", "a", "b", "c"],
            "dataset": [1, 1, 2, 1, 1, 2],
            "cell_type": [1] * 6,
            "target": ["cell"] * 3 + ["nucleus"] * 3,
            "dice": [0.8, 1.0, 0.6, 0.5, 0.7, 0.9],
            "iou": [0.7, 1.0, 0.5, 0.4, 0.6, 0.8],
            "precision": [0.9] * 6,
            "recall": [0.8] * 6,
            "pixel_accuracy": [0.95] * 6,
            "hd95": [2.0, np.nan, 4.0, 1.0, 3.0, np.nan],
            "height": [120] * 6,
            "width": [120] * 6,
        }
    )


def test_summarize_means_stds_and_counts(per_image):
    summary = scoring.summarize(per_image).set_index(["dataset", "target"])
    assert set(summary.index) == {(d, t) for d in ("d1", "d2", "all") for t in ("cell", "nucleus")}
    assert summary.loc[("d1", "cell"), "dice_mean"] == pytest.approx(0.9)
    assert summary.loc[("d1", "cell"), "dice_std"] == pytest.approx(np.std([0.8, 1.0], ddof=1))
    assert summary.loc[("all", "cell"), "dice_mean"] == pytest.approx(0.8)
    assert summary.loc[("all", "nucleus"), "iou_mean"] == pytest.approx(0.6)
    assert summary.loc[("all", "cell"), "n_images"] == 3
    assert summary.loc[("d2", "cell"), "n_images"] == 1
    # NaN HD95 is skipped by the mean and counted.
    assert summary.loc[("d1", "cell"), "hd95_mean"] == pytest.approx(2.0)
    assert summary.loc[("d1", "cell"), "hd95_nan"] == 1
    assert summary.loc[("all", "nucleus"), "hd95_nan"] == 1


def test_headline_metrics_is_nested_json(per_image):
    summary = scoring.summarize(per_image)
    summary.loc[(summary["dataset"] == "d2") & (summary["target"] == "nucleus"), "hd95_mean"] = np.nan
    headline = scoring.headline_metrics(summary, "holdout test split")
    assert headline["protocol"] == "holdout test split"
    assert headline["d1"]["cell"]["dice"] == pytest.approx(0.9)
    assert headline["all"]["nucleus"]["n_images"] == 3
    assert headline["d2"]["nucleus"]["hd95"] is None
    assert headline["d1"]["cell"]["hd95_nan"] == 1
    assert set(headline["d1"]["cell"]) == set(scoring.METRICS) | {"n_images", "hd95_nan"}
    json.dumps(headline, allow_nan=False)


def test_quality_targets_gap_sign_and_rivals():
    main = pd.DataFrame(
        {"dataset": ["d1", "d1", "d2", "all"], "target": ["cell", "nucleus", "cell", "cell"], "dice_mean": [0.99, 0.95, 0.98, 0.985]}
    )
    rival = pd.DataFrame({"dataset": ["d1", "d1"], "target": ["cell", "nucleus"], "dice_mean": [0.99, 0.94]})
    targets = {"main": {"d1": {"cell": 0.985, "nucleus": 0.97}, "d2": {"cell": 0.98, "nucleus": 0.982}}, "absent": {"d1": {"cell": 0.9}}}
    table = report.quality_targets_table({"main": main, "rival": rival}, targets, rivals={"main": ["rival"]})
    by = table.set_index(["model", "requirement", "dataset", "target"])
    assert by.loc[("main", ">= 0.985", "d1", "cell"), "gap"] == pytest.approx(0.005) and by.loc[("main", ">= 0.985", "d1", "cell"), "met"]
    assert by.loc[("main", ">= 0.97", "d1", "nucleus"), "gap"] == pytest.approx(-0.02)
    assert not by.loc[("main", ">= 0.97", "d1", "nucleus"), "met"]
    assert by.loc[("main", ">= 0.98", "d2", "cell"), "met"]  # exactly on target counts as met
    assert np.isnan(by.loc[("main", ">= 0.982", "d2", "nucleus"), "reached"]) and not by.loc[("main", ">= 0.982", "d2", "nucleus"), "met"]
    assert np.isnan(by.loc[("absent", ">= 0.9", "d1", "cell"), "reached"])
    assert not by.loc[("main", "> rival", "d1", "cell"), "met"]  # a tie does not beat a rival
    assert by.loc[("main", "> rival", "d1", "nucleus"), "met"]
    assert len(table[table["requirement"] == "> rival"]) == 2  # shared targets only, never 'all'


def test_published_figures_are_marked_quoted():
    assert set(report.PUBLISHED["value"]) == {0.9635, 0.9809, 0.98}
    assert report.PUBLISHED["protocol"].str.startswith("quoted").all()


def test_comparison_table_labels_training_and_test_data(per_image):
    summary = scoring.summarize(per_image)
    only_d2 = scoring.summarize(per_image[per_image["dataset"] == 2])
    configs = {
        "main": SimpleNamespace(task="tissue", datasets=(1, 2), test_datasets=(1, 2)),
        "d1_to_d2": SimpleNamespace(task="tissue", datasets=(1,), test_datasets=(2,)),
    }
    table = report.comparison_table({"baseline": summary, "main": summary, "d1_to_d2": only_d2}, configs)
    cross = table[table["cross_dataset"]]
    assert set(cross["model"]) == {"d1_to_d2"}
    assert set(cross["dataset"]) == {"d2"}  # its 'all' row repeats d2 and is dropped
    main = table[table["model"] == "main"]
    assert set(main["dataset"]) == {"d1", "d2", "all"} and set(main["tested_on"]) == {"d1+d2"}
    assert set(table.loc[table["model"] == "baseline", "trained_on"]) == {"none (no training)"}


# --------------------------------------------------------------------------- inference options


class ColourModel:
    """A stand-in Keras model: nucleus where the image is dark, cytoplasm where mid-bright, and a
    false 'cell' square in the top-left corner that post-processing should remove."""

    def predict_on_batch(self, x):
        green = x[..., 1]
        labels = np.where(green < 100, 2, np.where(green < 190, 1, 0))
        labels[:, :6, :6] = 1
        return np.eye(3, dtype=np.float32)[labels] * 0.9 + 0.1 / 3


def test_compare_inference_options_matches_segmenter(written_samples):
    from wbcseg.segmenter import Segmenter

    samples, _, _ = written_samples
    card = {"task": "tissue", "classes": ["background", "cytoplasm", "nucleus"], "input_size": 96}
    table = evaluate.compare_inference_options(ColourModel(), card, samples)
    assert len(table) == 6 * 3  # options x (d1, d2, all)
    for option in evaluate.DEFAULT_OPTIONS:
        direct = scoring.summarize(evaluate.evaluate_images(Segmenter(ColourModel(), card, **option), samples))
        got = table[(table["tta"] == option["tta"]) & (table["postprocess"] == option["postprocess"])]
        got = got.set_index("dataset")["cell"]
        want = direct[direct["target"] == "cell"].set_index("dataset")["dice_mean"]
        pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)
    plain = table[(table["tta"] == "none") & (table["dataset"] == "all")].set_index("postprocess")["cell"]
    off, on = plain[False], plain[True]
    assert on > off
    assert set(table["engine"]) == {"tensorflow"} and set(table["precision"]) == {"float32"}


def test_compare_inference_options_per_run(written_samples):
    samples, _, _ = written_samples
    card = {"task": "tissue", "classes": ["background", "cytoplasm", "nucleus"], "input_size": 96}
    runs = [("tensorflow", "float32"), ("tensorflow", "bfloat16"), ("tensorflow", "auto")]
    table = evaluate.compare_inference_options(ColourModel(), card, samples, runs=runs)
    assert list(dict.fromkeys(table["precision"])) == ["float32", "bfloat16"]  # 'auto' is one of them
    assert len(table) == 2 * 6 * 3
    by_precision = {precision: rows.drop(columns="precision").reset_index(drop=True) for precision, rows in table.groupby("precision")}
    pd.testing.assert_frame_equal(by_precision["float32"], by_precision["bfloat16"])  # a stand-in has no precision


def test_crossval_summary_spreads_fold_means():
    rows = []
    for fold, dices in enumerate([[0.8, 0.9], [0.6, 0.7]]):
        for i, dice in enumerate(dices):
            rows.append({"sample_id": f"d1_{fold}{i}", "dataset": 1, "cell_type": 1, "target": "cell", "dice": dice,
                         "iou": dice, "precision": 1.0, "recall": dice, "pixel_accuracy": 0.9, "hd95": 1.0,
                         "height": 10, "width": 10, "fold": fold})
    summary = crossval.crossval_summary(pd.DataFrame(rows)).set_index(["dataset", "target"])
    d1 = summary.loc[("d1", "cell")]
    assert d1["dice_mean_over_folds"] == pytest.approx(0.75)  # mean of the fold means 0.85 and 0.65
    assert d1["dice_std_over_folds"] == pytest.approx(np.std([0.85, 0.65], ddof=1))
    assert (d1["dice_min_over_folds"], d1["dice_max_over_folds"]) == pytest.approx((0.65, 0.85))
    assert d1["folds"] == 2 and d1["n_images"] == 4


def test_results_table_has_a_row_per_model_and_test_dataset(per_image):
    summary = scoring.summarize(per_image)
    configs = {"main": SimpleNamespace(task="tissue", datasets=(1, 2), test_datasets=(1, 2))}
    table = report.results_table(report.comparison_table({"main": summary}, configs))
    targets = [t for t in ("cell", "nucleus", "cytoplasm") if t in set(per_image["target"])]
    assert list(table.columns) == ["model", "trained on", "tested on", *targets, "images"]
    assert list(zip(table["model"], table["tested on"])) == [("main", "d1"), ("main", "d2")]
    row = summary.set_index(["dataset", "target"]).loc[("d1", "cell")]
    assert table.loc[0, "cell"] == f"{row.dice_mean:.3f} ± {row.dice_std:.3f}"
