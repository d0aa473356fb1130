"""The whole DVC pipeline on a temporary copy of the project, at a tiny parameter set: its outputs,
the reports a reader gets, the DVC views, and a fresh clone that pulls instead of rerunning."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from wbcseg.runner import shown_in_report

from lab_data import write_lab_dataset
from projects import make_project
from projects import run as _run

pytestmark = pytest.mark.integration
VARIANTS = ["main", "original", "d1_to_d2", "d2_to_d1"]
REPORTS = ["01_explore.html", "02_preprocess.html", *[f"{v}/{n}.html" for v in VARIANTS for n in ("03_train", "04_evaluate")],
           "lab_finetuned/07_finetune.html", "05_compare.html", "06_crossval.html"]
METRICS = [*[f"reports/{v}/{name}.json" for v in VARIANTS for name in ("dice", "validation")], "reports/lab_finetuned/dice.json",
           "reports/crossval/dice.json", "reports/metrics.json"]
CHROMIUM = shutil.which("chromium")
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


def test_metrics_are_held_out_dice_per_model_dataset_and_target(project):
    root, _, _ = project
    dice = {v: json.loads((root / "reports" / v / "dice.json").read_text()) for v in VARIANTS}
    assert set(dice["main"]) == {"d1", "d2"} and set(dice["main"]["d2"]) == {"cell", "nucleus", "cytoplasm"}
    assert set(dice["d1_to_d2"]) == {"d2"} and set(dice["original"]["d1"]) == {"cell"}
    assert 0 <= dice["main"]["d1"]["nucleus"] <= 1
    targets = json.loads((root / "reports" / "metrics.json").read_text())
    assert targets["targets_met"] + targets["targets_missed"] == len(pd.read_csv(root / "reports" / "quality_targets.csv")) > 8
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


def test_git_status_after_the_run_is_the_lock_and_the_metrics(project):
    root, env, _ = project
    status = _run(["git", "status", "--porcelain", "--untracked-files=all"], root, env).stdout
    assert sorted(line[3:] for line in status.splitlines()) == sorted(["dvc.lock", *METRICS])


def test_a_notebook_run_by_hand_writes_to_scratch_only(project, tmp_path):
    root, env, _ = project
    processed = root / "data" / "processed" / "train.npz"
    before = processed.stat().st_mtime_ns, _run(["git", "status", "--porcelain"], root, env).stdout
    # as JupyterLab runs it: from notebooks/, with the parameters cell's defaults
    _run([sys.executable, "-m", "papermill", "02_preprocess.ipynb", str(tmp_path / "run.ipynb"), "--cwd", "."], root / "notebooks", env)
    assert (root / "reports" / "scratch" / "data" / "processed" / "train.npz").is_file()
    assert (processed.stat().st_mtime_ns, _run(["git", "status", "--porcelain"], root, env).stdout) == before
    assert json.loads(_run([sys.executable, "-m", "dvc", "status", "--json"], root, env).stdout) == {}
    shutil.rmtree(root / "reports" / "scratch")


def test_crossval_scores_every_train_and_val_image_once(project):
    root, _, _ = project
    per_image = pd.read_csv(root / "reports" / "crossval" / "per_image.csv")
    split = pd.read_csv(root / "data" / "processed" / "split.csv", dtype={"dataset": str})
    public = split[split["dataset"].isin(["1", "2"])]  # crossval.variant main's datasets
    cells = per_image[per_image["target"] == "cell"]
    assert sorted(cells["sample_id"]) == sorted(public.loc[public["split"] != "test", "sample_id"])
    assert set(cells["fold"]) == {0, 1}
    metrics = json.loads((root / "reports" / "crossval" / "dice.json").read_text())
    assert metrics["folds"] == 2 and set(metrics["d1"]) == set(metrics["sd"]["d1"]) == {"cell", "nucleus", "cytoplasm"}


def _output_texts(output) -> list[str]:
    if output["output_type"] == "stream":
        return [output["text"]]
    return [value for key, value in output.get("data", {}).items() if key.startswith("text/")]


def test_reports_state_findings_first_without_noise_or_machine_paths(project):
    root, _, _ = project
    machine = [str(root), str(Path.home()), tempfile.gettempdir(), "site-packages", "Traceback"]
    for name in REPORTS:
        book = nbformat.read(root / "reports" / name.replace(".html", ".ipynb"), as_version=4)
        outputs = [output for cell in book.cells if shown_in_report(cell) for output in cell.get("outputs", [])]
        assert "text/markdown" in outputs[0].get("data", {}), f"{name} does not open with its findings"
        for output in (o for cell in book.cells for o in cell.get("outputs", [])):
            assert output["output_type"] != "error" and output.get("name") != "stderr", f"{name}: {output}"
            assert not (output["output_type"] == "execute_result" and list(output["data"]) == ["text/plain"]), (
                f"{name} shows a stray value: {output['data']}")
            for text in _output_texts(output):
                assert not [m for m in machine if m in text], f"{name} shows {[m for m in machine if m in text]}: {text[:300]}"
        html = (root / "reports" / name).read_text()
        body = html[html.index("<body"):]
        assert "data:image/png;base64" in body, f"{name} has no figure"
        assert "application/vnd.jupyter.stderr" not in body and "hl-ipython3" not in body, f"{name} shows stderr or code"
        # embedded figures are base64, whose alphabet spells "/tmp" by chance in a few MB of it
        visible = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "", body)
        assert not [m for m in machine if m in visible], f"{name} names {[m for m in machine if m in visible]}"
    card = json.loads((root / "models" / "main" / "model_card.json").read_text())
    assert card["task"] == "tissue" and card["input_size"] == 96


def test_the_index_links_every_report_and_the_compare_report_each_missed_target(project):
    root, _, _ = project
    index = (root / "reports" / "index.html").read_text()
    links = re.findall(r'<a href="([^"]+)">', index)
    assert sorted(links) == sorted(REPORTS) and all((root / "reports" / link).is_file() for link in links)
    assert "<table>" in index and "± " in index
    targets = pd.read_csv(root / "reports" / "quality_targets.csv")
    compare = nbformat.read(root / "reports" / "05_compare.ipynb", as_version=4)
    findings = next(o for c in compare.cells for o in c.get("outputs", []) if "text/markdown" in o.get("data", {}))
    for row in targets[~targets["met"] & targets["reached"].notna()].itertuples():
        sentence = f"{row.model} on Dataset {row.dataset.removeprefix('d')} {row.target}: Dice {row.reached:.3f}, needs {row.requirement}"
        assert sentence in findings["data"]["text/markdown"]


def test_crossval_not_asked_for_is_one_line_saying_how(project, tmp_path):
    root, env, _ = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["crossval"]["folds"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for name in ("notebooks", "data"):
        (tmp_path / name).symlink_to(root / name)
    _run([sys.executable, "-m", "wbcseg.cli", "notebook", "06_crossval", "--params", str(tmp_path / "params.yaml")], root, env)
    book = nbformat.read(tmp_path / "reports" / "06_crossval.ipynb", as_version=4)
    (output,) = [o for cell in book.cells if shown_in_report(cell) for o in cell.get("outputs", [])]
    line = output["data"]["text/markdown"]
    assert len(line.splitlines()) == 1 and "`dvc exp run -S crossval.folds=5 crossval`" in line
    assert json.loads((tmp_path / "reports" / "crossval" / "dice.json").read_text()) == {"folds": 0}


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_reports_render_in_a_browser_and_fit_the_page(project, tmp_path):
    root, _, _ = project
    # After the page has laid out, mark the outputs wider than their area (a table or figure that
    # would make the reader scroll sideways); --dump-dom returns the page with the mark.
    probe = ("<script>window.onload = () => document.body.setAttribute('data-too-wide', [...document.querySelectorAll("
             "'.jp-OutputArea-output, table, img')].filter(e => e.scrollWidth > e.parentElement.clientWidth + 1).length)</script>")
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
               "--window-size=1280,1600", "--virtual-time-budget=5000"]
    for name in [*REPORTS, "index.html"]:
        page = tmp_path / name.replace("/", "_")
        page.write_text((root / "reports" / name).read_text().replace("</body>", f"{probe}</body>"))
        dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
        mark = re.search(r'data-too-wide="(\d+)"', dom)
        assert mark and mark.group(1) == "0", f"{name}: {mark.group(1) if mark else 'no'} outputs wider than the page"
        shot = page.with_suffix(".png")
        subprocess.run([*browser, f"--screenshot={shot}", (root / "reports" / name).as_uri()], capture_output=True, timeout=120)
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
        assert pixels.std() > 10, f"{name} renders blank"


def test_dvc_views_read_at_a_glance_and_render_offline(project, tmp_path):
    root, env, _ = project
    shown = _run([sys.executable, "-m", "dvc", "metrics", "show"], root, env).stdout
    header, *rows = [line.split() for line in shown.splitlines() if line.strip()]
    # one table, a row per file: each model's Dice per dataset and target under the same columns (the
    # lab dataset's only from the model fine-tuned on it; the spread over folds of `main`'s datasets)
    dice = {f"{d}.{t}" for d in ("d1", "d2") for t in ("cell", "nucleus", "cytoplasm")}
    lab = {f"lab.{t}" for t in ("cell", "nucleus", "cytoplasm")}
    assert set(header) == {"Path", "folds", "targets_met", "targets_missed", *dice, *lab, *{f"sd.{c}" for c in dice}}, shown
    assert sorted(row[0] for row in rows) == sorted(METRICS), shown
    _run([sys.executable, "-m", "dvc", "plots", "show", "--out", str(tmp_path / "plots")], root, env)
    page = (tmp_path / "plots" / "index.html").read_text()
    assert "<script src=" not in page  # nothing to load from the web
    for variant in VARIANTS:
        for name in ("training_curves", "per_image", "confusion"):
            assert f"reports/{variant}/{name}.png" in page, f"dvc plots show lacks {variant}/{name}.png"


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


def test_a_fresh_clone_pulls_the_outputs_and_predicts_without_training(project, tmp_path):
    root, env, _ = project
    dvc = [sys.executable, "-m", "dvc"]
    git = ["git", "-c", "user.name=wbcseg-test", "-c", "user.email=test@wbcseg.invalid"]
    _run([*dvc, "remote", "add", "-d", "shared", str(tmp_path / "remote")], root, env)
    _run([*dvc, "push"], root, env)
    _run([*git, "add", "-A"], root, env)
    _run([*git, "commit", "-qm", "reference run"], root, env)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(root), str(clone)], tmp_path, env)
    assert not (clone / "models" / "main").exists()

    _run([*dvc, "pull"], clone, env)

    assert json.loads(_run([*dvc, "status", "--json"], clone, env).stdout) == {}
    model = Path("models") / "main" / "model.keras"
    assert (clone / model).read_bytes() == (root / model).read_bytes()
    image = next((clone / "data" / "raw" / "Dataset 1").glob("*.bmp"))
    _run([sys.executable, "-m", "wbcseg.cli", "predict", str(image), "--model", "models/main", "--out", "predictions"], clone, env)
    assert (clone / "predictions" / "masks" / f"{image.stem}.png").is_file()
    assert "Running stage" not in _run([*dvc, "repro", "--dry"], clone, env).stdout  # nothing to train
