"""The sentences that open each report, the compact DVC metrics and the index page: computed from
the tables they are given, on small hand-made tables whose findings are known."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from wbcseg import crossval, findings, report, scoring


@pytest.fixture
def per_image():
    rows = []
    for dataset, dices in ((1, [0.9, 0.7, 0.95]), (2, [0.8, 0.6])):
        for i, dice in enumerate(dices):
            for target, shift in (("cell", 0.0), ("nucleus", -0.1), ("cytoplasm", -0.2)):
                rows.append({"sample_id": f"d{dataset}_{i:03d}", "dataset": dataset, "cell_type": 1, "target": target,
                             "dice": dice + shift, "iou": dice + shift - 0.05, "precision": 0.9, "recall": 0.9,
                             "pixel_accuracy": 0.95, "hd95": np.nan if (dataset, i, target) == (2, 1, "nucleus") else 3.0,
                             "height": 120, "width": 120})
    return pd.DataFrame(rows)


@pytest.fixture
def table(per_image):
    summary = scoring.summarize(per_image)
    d2_only = scoring.summarize(per_image[per_image["dataset"] == 2].assign(dice=lambda t: t["dice"] - 0.2))
    configs = {
        "main": SimpleNamespace(task="tissue", datasets=(1, 2), test_datasets=(1, 2)),
        "d1_to_d2": SimpleNamespace(task="tissue", datasets=(1,), test_datasets=(2,)),
    }
    return report.comparison_table({"classical baseline": d2_only, "main": summary, "d1_to_d2": d2_only}, configs)


def test_explore_findings_count_sizes_types_and_stray_values():
    samples = pd.DataFrame({"cell_type_name": ["neutrophil"] * 3 + ["basophil"]})
    stats = pd.DataFrame({"dataset": [1, 1, 2, 2], "height": [120, 120, 300, 280], "width": [120, 120, 300, 280],
                          "frac_background": [0.6] * 4, "frac_cytoplasm": [0.3] * 4, "frac_nucleus": [0.1] * 4})
    audit = pd.DataFrame({"stray_pixels": [5, 7]})
    text = findings.explore_findings(samples, stats, audit)
    assert "Dataset 1: 2 images, all 120×120 px; Dataset 2: 2 images, 2 sizes from 280×280 to 300×300 px." in text
    assert "The commonest cell type is the neutrophil (75% of the images); the rarest is the basophil (1 image)." in text
    assert "Dataset 1 10% nucleus and 30% cytoplasm" in text
    assert "2 masks hold grey values other than 0/128/255 (12 pixels in all), snapped" in text
    assert "Every mask holds only" in findings.explore_findings(samples, stats, audit.iloc[:0])


def test_split_findings_count_each_split_per_dataset():
    assigned = pd.DataFrame({"dataset": [1, 1, 1, 2, 2], "split": ["train", "val", "test", "train", "test"]})
    text = findings.split_findings(assigned, 128, seed=7)
    assert "5 images split into training / validation / test: Dataset 1 1 / 1 / 1; Dataset 2 1 / 0 / 1" in text
    assert "(seed 7)" in text and "128×128 px" in text


def test_training_findings_name_the_best_epoch_and_a_rising_curve():
    history = pd.DataFrame({"loss": [1.0, 0.8, 0.7], "dice": [0.5, 0.7, 0.8], "val_loss": [0.9, 0.6, 0.65],
                            "val_dice": [0.4, 0.6, 0.5]}, index=pd.RangeIndex(1, 4, name="epoch"))
    card = {"task": "tissue", "input_size": 96, "n_train": 10, "n_val": 4,
            "train_params": {"datasets": [1, 2], "loss": "dice_ce", "augment": True}}
    text = findings.training_findings(history, card)
    assert "Best validation Dice 0.600 at epoch 2 of 3" in text and "(training Dice 0.700 then)" in text
    assert "Validation loss was lowest at epoch 2 (0.600)." in text
    assert "still rising" not in text
    assert "10 training and 4 validation images of Datasets 1 and 2 at 96 px" in text
    rising = history.assign(val_dice=[0.4, 0.5, 0.6])
    assert "Validation Dice was still rising at the last epoch" in findings.training_findings(rising, card)


def test_card_table_is_one_fact_per_row():
    card = {"task": "binary", "classes": ["background", "cell"], "input_size": 128, "backbone": "inceptionv3",
            "encoder_weights": None, "epochs_run": 15, "best_epoch": 12, "val_metrics": {"dice": 0.91234},
            "train_params": {"datasets": [1], "batch_size": 16, "learning_rate": 0.001, "loss": "dice_ce", "augment": False}}
    facts = dict(zip(*findings.card_table(card).to_dict("list").values()))
    assert facts["epochs run / best"] == "15 / 12" and facts["validation dice"] == "0.912"
    assert facts["encoder weights"] == "none (from scratch)" and facts["loss, augmentation"] == "dice_ce, off"


def test_evaluation_findings_per_dataset_worst_image_and_undefined_distances(per_image):
    text = findings.evaluation_findings(scoring.summarize(per_image), per_image, "main: a tissue model")
    lines = text.splitlines()
    assert lines[0] == "- main: a tissue model."
    assert lines[1].startswith("- Dataset 1 (3 held-out images): mean Dice cell 0.850 ± 0.132, nucleus 0.750 ± 0.132")
    assert lines[1].endswith("whole-cell HD95 3.0 px.")
    assert "Worst image: d2_001 (whole-cell Dice 0.600); median whole-cell Dice 0.800." in text
    assert "HD95 is undefined for 1 image-target pair: the prediction or the truth is empty there." in text


def test_summary_table_fits_a_page(per_image):
    table = findings.summary_table(scoring.summarize(per_image))
    assert len(table.columns) == 8 and table.loc[0, "Dice (mean ± sd)"] == "0.850 ± 0.132"


def test_comparison_findings_put_each_model_beside_the_reference(table):
    text = findings.comparison_findings(table, reference="main", baseline="classical baseline")
    assert text.splitlines()[0] == "- main (trained on d1+d2): whole-cell Dice 0.850 on Dataset 1, 0.700 on Dataset 2."
    assert "- classical baseline (no training): whole-cell Dice 0.500 on Dataset 2 (-0.200 against main)." in text
    assert "- d1_to_d2 (trained on d1, tissue task): whole-cell Dice 0.500 on Dataset 2 (-0.200 against main)." in text


def test_targets_findings_give_each_missed_target_its_gap():
    main = pd.DataFrame({"dataset": ["d1", "d1"], "target": ["cell", "nucleus"], "dice_mean": [0.99, 0.95]})
    rival = pd.DataFrame({"dataset": ["d1"], "target": ["cell"], "dice_mean": [0.995]})
    targets = report.quality_targets_table(
        {"main": main, "original": rival}, {"main": {"d1": {"cell": 0.985, "nucleus": 0.97}, "d2": {"cell": 0.98}}},
        rivals={"main": ["original"]},
    )
    text = findings.targets_findings(targets)
    assert text.splitlines() == [
        "3 of 4 quality targets are missed:",
        "- main on Dataset 1 nucleus: Dice 0.950, needs >= 0.97 (0.970): short by 0.020.",
        "- main on Dataset 2 cell: not evaluated (it needs Dice >= 0.98).",
        "- main on Dataset 1 cell: Dice 0.990, needs > original (0.995): short by 0.005.",
    ]
    assert findings.targets_findings(targets[targets["met"]]) == "All 1 quality target are met."
    assert report.targets_metrics(targets) == {"targets_met": 1, "targets_missed": 3}


def test_crossval_findings_and_the_line_that_says_how_to_run_it():
    summary = pd.DataFrame({"dataset": ["d1", "all"], "target": ["cell", "cell"], "dice_mean_over_folds": [0.9, 0.9],
                            "dice_std_over_folds": [0.01, 0.01], "dice_min_over_folds": [0.88, 0.88],
                            "dice_max_over_folds": [0.91, 0.91]})
    text = findings.crossval_findings(summary, 5, "main", 120)
    assert "5-fold cross-validation of main on 120 training and validation images" in text
    assert "Dataset 1: mean Dice over folds cell 0.900 ± 0.010 (folds 0.880 to 0.910)." in text
    assert "Dataset all" not in text
    table = findings.crossval_table(summary.assign(hd95_mean_over_folds=[2.0, 2.0], folds=[5, 5], n_images=[60, 120]))
    assert list(table.iloc[0]) == ["d1", "cell", "0.900 ± 0.010", 0.88, 0.91, 2.0, 5, 60]
    line = findings.crossval_not_run("main", 120)
    assert len(line.splitlines()) == 1 and "`dvc exp run -S crossval.folds=5 crossval`" in line
    metrics = crossval.crossval_metrics(summary, 5)
    assert metrics == {"folds": 5, "d1": {"cell": 0.9}, "sd": {"d1": {"cell": 0.01}}}


def test_dvc_metrics_are_dice_per_dataset_and_target_only(per_image):
    metrics = scoring.dice_metrics(scoring.summarize(per_image))
    assert list(metrics) == ["d1", "d2"]  # no pooled 'all'
    assert metrics["d1"] == {"cell": 0.85, "nucleus": 0.75, "cytoplasm": 0.65}
    json.dumps(metrics, allow_nan=False)


def test_compact_tables_show_three_decimals_and_no_index():
    html = findings.compact(pd.DataFrame({"model": ["main"], "dice": [0.97123456], "hd95": [np.nan]})).to_html()
    assert "0.971" in html and "0.9712" not in html and findings.MISSING in html
    assert "text-align: left" in html  # the text column
    assert 'class="row_heading' not in html


def test_index_links_every_report_with_one_line_and_the_headline(table):
    links = report.report_links(["main", "d1_to_d2"], table)
    assert [line.split("]")[0].lstrip("[") for line in links] == [
        "01_explore", "02_preprocess", "main/03_train", "d1_to_d2/03_train", "main/04_evaluate", "d1_to_d2/04_evaluate",
        "05_compare", "06_crossval",
    ]
    assert "(whole-cell Dice 0.850 on d1, 0.700 on d2)" in links[4]
    page = report.index_page("Reports", links, report.results_table(table), "main meets all 4 quality targets.")
    assert '<a href="main/04_evaluate.html">main/04_evaluate</a>' in page
    assert "<table>" in page and "0.850 ± 0.132" in page and "main meets all 4 quality targets." in page
