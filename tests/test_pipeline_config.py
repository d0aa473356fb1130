"""dvc.yaml, params.yaml, .gitignore and the notebooks agree with each other."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from wbcseg.paths import stage_paths
from wbcseg.runner import NOTEBOOK_ONLY, PER_VARIANT

from projects import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _dvc():
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def _params():
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_clean_with_one_parameters_cell(path):
    book = json.loads(path.read_text())
    code = [c for c in book["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), f"{path.name} has outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    assert "root = " in source and "out_root = None" in source and "params = None" in source
    assert ("variant = " in source) == (path.stem in PER_VARIANT)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_links_its_report_and_writes_only_under_out_root(path):
    book = json.loads(path.read_text())
    (link,) = [c for c in book["cells"] if NOTEBOOK_ONLY in c.get("metadata", {}).get("tags", []) and c["cell_type"] == "markdown"]
    variant = {"07_finetune": "lab_finetuned/"}.get(path.stem, "main/") if path.stem in PER_VARIANT else ""
    assert f"(../reports/{variant}{path.stem}.html)" in "".join(link["source"])
    code = "\n".join("".join(c["source"]) for c in book["cells"] if c["cell_type"] == "code")
    # every write goes through outputs = stage_paths(output_root(root, out_root)): scratch when run by hand
    assert "stage_paths(output_root(root, out_root)" in code
    written = re.findall(r"(\w+)\[\"\w+\"\] / ", " ".join(re.findall(r"(?:to_csv|write_\w+|save_figure|train_and_save)\(.*", code)))
    assert set(written) <= {"outputs", "out"}, f"{path.name} writes under {set(written)}"


def test_every_notebook_is_a_stage_in_order():
    commands = [stage.get("cmd") or stage["do"]["cmd"] for stage in _dvc()["stages"].values()]
    run = [c.split()[2] for c in commands if c.startswith("wbcseg notebook")]
    assert run == [p.stem for p in NOTEBOOKS] == sorted(run)


def test_compare_depends_on_every_variant():
    deps = _dvc()["stages"]["compare"]["deps"]
    for variant in _params()["variants"]:
        summary = stage_paths(".", variant)["report"] / "summary.csv"
        assert summary.as_posix().removeprefix("./") in deps, f"compare stage misses {summary}"


def _outputs(fields=("outs", "metrics", "plots")):
    """(path, cached) of every output of dvc.yaml, foreach stages expanded over the variants."""
    for stage in _dvc()["stages"].values():
        body = stage.get("do", stage)
        for key in _params()["variants"] if "foreach" in stage else [None]:
            for field in fields:
                for entry in body.get(field, []):
                    path, options = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
                    yield path.replace("${key}", key or ""), (options or {}).get("cache", True)


def test_metrics_are_small_git_tracked_files_per_model():
    metrics = {path for path, cached in _outputs(["metrics"]) if not cached}
    assert metrics == {"reports/metrics.json", "reports/crossval/dice.json"} | {
        f"reports/{variant}/{name}.json" for variant in _params()["variants"] for name in ("dice", "validation")}


def test_plots_are_images_of_every_variant():
    plots = {path for path, _ in _outputs(["plots"])}
    for variant in _params()["variants"]:
        assert {f"reports/{variant}/{name}.png" for name in ("training_curves", "per_image", "confusion")} <= plots
    assert all(Path(path).suffix == ".png" for path in plots)  # rendered offline, unlike DVC's Vega-Lite charts


def test_git_ignores_every_cached_output_and_tracks_the_metrics():
    outputs = dict(_outputs())
    # a path without a suffix is a folder, which a .gitignore pattern ending in / matches only as one
    asked = [path if Path(path).suffix else f"{path}/" for path in outputs]
    result = subprocess.run(["git", "check-ignore", "--no-index", *asked], cwd=REPO, capture_output=True, text=True)
    ignored = {line.rstrip("/") for line in result.stdout.split()}
    assert {path for path, cached in outputs.items() if cached} - ignored == set(), "add these to .gitignore"
    assert {path for path, cached in outputs.items() if not cached} & ignored == set(), "git must track these"


def test_every_model_is_an_artifact():
    artifacts = _dvc()["artifacts"]
    by_path = {spec["path"]: spec for spec in artifacts.values()}
    for variant in _params()["variants"]:
        spec = by_path[stage_paths(".", variant)["model"].as_posix()]
        assert spec["type"] == "model" and spec["desc"] and spec["labels"]
