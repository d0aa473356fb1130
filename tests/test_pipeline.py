"""The whole DVC pipeline on a temporary copy of the project, at a tiny parameter set."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration
TINY = {
    "data": {"max_images_per_dataset": 12},
    "model": {"input_size": 96},
    "train": {"epochs": 1, "batch_size": 4},
    "evaluate": {"overlays": 2},
    "crossval": {"folds": 2},
}
REPORTS = ["01_explore.html", "02_preprocess.html", "main/03_train.html", "main/04_evaluate.html", "05_compare.html", "06_crossval.html"]


def _run(args, cwd, env, check=True):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if check and result.returncode:
        pytest.fail(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory, mirror):
    root = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml", ".gitignore", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    for folder in ("notebooks", "src"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    for group, values in TINY.items():
        params[group].update(values)
    for overrides in params["variants"].values():
        overrides.pop("epochs", None)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # The copy's own package, not the checkout's, even though `wbcseg` runs from the checkout's venv.
    env = {**os.environ, "WBC_DATA_SOURCE": str(mirror), "PYTHONPATH": str(root / "src"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    git = ["git", "-c", "user.name=wbcseg-test", "-c", "user.email=test@wbcseg.invalid"]
    _run(["git", "init", "-q"], root, env)
    _run([sys.executable, "-m", "dvc", "init", "-q"], root, env)
    _run(git + ["add", "-A"], root, env)
    _run(git + ["commit", "-qm", "tiny project"], root, env)
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
    split = pd.read_csv(root / "data" / "processed" / "split.csv")
    assert set(per_image["sample_id"]) == set(split.loc[split["split"] == "test", "sample_id"])
    assert set(per_image["target"]) == {"cell", "nucleus", "cytoplasm"}
    assert per_image["dice"].between(0, 1).all()
    original = pd.read_csv(root / "reports" / "original" / "per_image.csv")
    assert set(original["target"]) == {"cell"} and set(original["dataset"]) == {1}
    cross = pd.read_csv(root / "reports" / "d1_to_d2" / "per_image.csv")
    assert set(cross["dataset"]) == {2}


def test_crossval_scores_every_train_and_val_image_once(project):
    root, _, _ = project
    per_image = pd.read_csv(root / "reports" / "crossval" / "per_image.csv")
    split = pd.read_csv(root / "data" / "processed" / "split.csv")
    cells = per_image[per_image["target"] == "cell"]
    assert sorted(cells["sample_id"]) == sorted(split.loc[split["split"] != "test", "sample_id"])
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
    for noise in ("cuInit", "Kernel is running over TCP", "oneDNN custom operations", "Segmentation Models: using", "NodeDef mentions", "DT_INT32"):
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
