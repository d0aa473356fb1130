"""The whole DVC pipeline on a temporary copy of the project, at a tiny parameter set."""

import hashlib
import json
import re
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from lab_data import write_lab_dataset
from projects import make_project
from projects import run as _run

pytestmark = pytest.mark.integration
REPORTS = ["01_explore.html", "02_preprocess.html", "main/03_train.html", "main/04_evaluate.html", "05_compare.html", "06_crossval.html",
           "lab_finetuned/07_finetune.html"]
#: A generated lab dataset, and a model fine-tuned on it from `main`.
LAB = {"data": {"extra_datasets": {"lab": {"mask_values": "classes", "pixel_size": 0.1}}},
       "finetuned": {"lab_finetuned": {"init_from": "models/main", "datasets": ["lab"]}}}


@pytest.fixture(scope="module")
def project(tmp_path_factory, mirror):
    root = tmp_path_factory.mktemp("project")
    write_lab_dataset(root / "data" / "extra" / "lab", n=12)
    env = make_project(root, mirror, LAB)
    repro = _run([sys.executable, "-m", "dvc", "repro"], root, env)
    return root, env, repro.stdout + repro.stderr


def test_metrics_are_held_out_dice_per_dataset_and_target(project):
    root, _, _ = project
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"protocol", "classical_baseline", "main", "original", "d1_to_d2", "d2_to_d1"}
    assert metrics["protocol"].startswith("held-out test split")
    assert set(metrics["main"]) == {"d1", "d2"} and set(metrics["main"]["d2"]) == {"cell", "nucleus", "cytoplasm"}
    assert set(metrics["d1_to_d2"]) == {"d2"} and set(metrics["original"]["d1"]) == {"cell"}
    assert 0 <= metrics["main"]["d1"]["nucleus"]["dice"] <= 1
    per_image = pd.read_csv(root / "reports" / "main" / "per_image.csv")
    split = pd.read_csv(root / "data" / "processed" / "split.csv", dtype={"dataset": str})
    public = split[split["dataset"].isin(["1", "2"])]  # main's datasets; the lab's are the fine-tuned model's
    assert set(per_image["sample_id"]) == set(public.loc[public["split"] == "test", "sample_id"])
    assert set(per_image["target"]) == {"cell", "nucleus", "cytoplasm"}
    assert per_image["dice"].between(0, 1).all()
    original = pd.read_csv(root / "reports" / "original" / "per_image.csv")
    assert set(original["target"]) == {"cell"} and set(original["dataset"]) == {1}
    cross = pd.read_csv(root / "reports" / "d1_to_d2" / "per_image.csv")
    assert set(cross["dataset"]) == {2}


def test_crossval_scores_every_train_and_val_image_once(project):
    root, _, _ = project
    per_image = pd.read_csv(root / "reports" / "crossval" / "per_image.csv")
    split = pd.read_csv(root / "data" / "processed" / "split.csv", dtype={"dataset": str})
    public = split[split["dataset"].isin(["1", "2"])]  # crossval.variant main's datasets
    cells = per_image[per_image["target"] == "cell"]
    assert sorted(cells["sample_id"]) == sorted(public.loc[public["split"] != "test", "sample_id"])
    assert set(cells["fold"]) == {0, 1}
    metrics = json.loads((root / "reports" / "crossval" / "metrics.json").read_text())
    assert metrics["protocol"].startswith("2-fold cross-validation") and metrics["d1/nucleus"]["folds"] == 2


def test_html_reports_have_their_figures(project):
    root, _, _ = project
    for name in REPORTS:
        html = (root / "reports" / name).read_text()
        assert "data:image/png;base64" in html, f"{name} has no figure"
    assert list((root / "reports" / "main" / "overlays").glob("*.png"))
    card = json.loads((root / "models" / "main" / "model_card.json").read_text())
    assert card["task"] == "tissue" and card["input_size"] == 96


def test_a_lab_dataset_is_scored_under_its_name_and_fine_tuned_on(project):
    root, _, _ = project
    split = pd.read_csv(root / "data" / "processed" / "split.csv")
    lab_test = split[(split["dataset"] == "lab") & (split["split"] == "test")]["sample_id"]
    per_image = pd.read_csv(root / "reports" / "lab_finetuned" / "per_image.csv")
    assert set(per_image["dataset"]) == {"lab"} and set(per_image["sample_id"]) == set(lab_test)
    versus = pd.read_csv(root / "reports" / "lab_finetuned" / "versus_base.csv")
    assert list(versus.columns) == ["dataset", "target", "dice models/main", "dice lab_finetuned", "gain", "n_images"]
    assert set(versus["dataset"]) == {"lab"} and versus["dice models/main"].between(0, 1).all()
    card = json.loads((root / "models" / "lab_finetuned" / "model_card.json").read_text())
    assert card["init_from"]["model_dir"] == "models/main" and card["train_params"]["datasets"] == ["lab"]
    assert card["init_from"]["sha256"] == hashlib.sha256((root / "models" / "main" / "model.keras").read_bytes()).hexdigest()
    assert json.loads((root / "models" / "lab_finetuned" / "test_metrics.json").read_text())["lab"]["cell"]["n_images"] == len(lab_test)


def test_second_repro_does_nothing_and_status_is_clean(project):
    root, env, _ = project
    again = _run([sys.executable, "-m", "dvc", "repro"], root, env)
    assert "Running stage" not in again.stdout
    status = _run([sys.executable, "-m", "dvc", "status", "--json"], root, env)
    assert json.loads(status.stdout) == {}


def test_markdown_edit_dirties_only_that_stage_onward(project):
    root, env, _ = project
    path = root / "notebooks" / "04_evaluate.ipynb"
    original = path.read_text()
    book = json.loads(original)
    book["cells"][0]["source"] = "".join(book["cells"][0]["source"]) + "\n\nEdited."
    path.write_text(json.dumps(book))
    try:
        status = json.loads(_run([sys.executable, "-m", "dvc", "status", "--json"], root, env).stdout)
        assert set(status) == {f"evaluate@{v}" for v in ("main", "original", "d1_to_d2", "d2_to_d1")}
    finally:
        path.write_text(original)


def test_progress_is_shown_without_start_up_noise(project):
    _, _, output = project
    assert re.search(r"03_train@main: main: epoch 1/1: loss [0-9.]+, validation Dice [0-9.]+ \(best", output)
    for noise in ("cuInit", "Kernel is running over TCP", "oneDNN custom operations", "Segmentation Models: using"):
        assert noise not in output


@pytest.mark.parametrize(
    "command, edit, message",
    [
        (["dvc", "repro", "preprocess"], ("input_size: 96", "input_size: 100"), "model.input_size"),
        (["dvc", "repro"], ("epochs: 1", "epochs: 0"), "train.epochs: must be a whole number >= 1, got 0"),
    ],
)
def test_a_bad_param_stops_the_pipeline_before_any_output_is_deleted(project, command, edit, message):
    root, env, _ = project
    params_path = root / "params.yaml"
    original = params_path.read_text()
    outputs = [root / "models" / "main" / "model.keras", root / "models" / "main" / "model_card.json", root / "dvclive" / "main",
               root / "data" / "processed" / "train.npz", root / "reports" / "main" / "03_train.html"]
    params_path.write_text(original.replace(*edit))
    try:
        result = _run([sys.executable, "-m", *command], root, env, check=False)
        assert result.returncode != 0
        assert message in result.stdout + result.stderr
        assert all(path.exists() for path in outputs)
    finally:
        params_path.write_text(original)


def test_a_bad_mirror_keeps_the_dataset(project, tmp_path):
    root, env, _ = project
    shutil.copytree(root / "data" / "raw", tmp_path / "mirror")
    victim = next((tmp_path / "mirror" / "Dataset 1").glob("*.bmp"))
    victim.write_bytes(victim.read_bytes()[:-1] + b"x")
    before = sorted(p.relative_to(root) for p in (root / "data" / "raw").rglob("*"))
    result = _run([sys.executable, "-m", "dvc", "repro", "-f", "fetch"], root, {**env, "WBC_DATA_SOURCE": str(tmp_path / "mirror")}, check=False)
    assert result.returncode != 0
    assert f"checksum mismatch: {victim}" in result.stdout + result.stderr
    assert sorted(p.relative_to(root) for p in (root / "data" / "raw").rglob("*")) == before
    assert _run([sys.executable, "-m", "dvc", "status", "fetch", "--json"], root, env).stdout.strip() in ("{}", "")


def test_predict_gives_the_masks_that_the_evaluation_scored(project, tmp_path):
    from PIL import Image

    from wbcseg.data import read_mask
    from wbcseg.metrics import segmentation_metrics

    root, env, _ = project
    per_image = pd.read_csv(root / "reports" / "main" / "per_image.csv")
    scored = per_image[(per_image["target"] == "cell") & (per_image["dataset"] == 1)].head(2)
    images = [root / "data" / "raw" / "Dataset 1" / f"{sid.split('_')[1]}.bmp" for sid in scored["sample_id"]]
    out = tmp_path / "predicted"
    _run([sys.executable, "-m", "wbcseg.cli", "predict", *map(str, images), "--model", str(root / "models" / "main"), "--out", str(out)], root, env)
    for image, dice in zip(images, scored["dice"]):
        predicted = np.asarray(Image.open(out / "masks" / f"{image.stem}.png")) > 0
        truth = read_mask(image.with_suffix(".png")) > 0
        assert segmentation_metrics(predicted, truth)["dice"] == pytest.approx(dice, abs=1e-6), image.name
