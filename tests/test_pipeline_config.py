"""dvc.yaml, params.yaml and the notebooks agree with each other."""

import json
from pathlib import Path

import pytest
import yaml

from wbcseg.paths import stage_paths
from wbcseg.runner import PER_VARIANT

REPO = Path(__file__).resolve().parents[1]
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
    assert "root = " in source and "params = None" in source
    assert ("variant = " in source) == (path.stem in PER_VARIANT)


def test_every_notebook_is_a_stage_in_order():
    commands = [stage.get("cmd") or stage["do"]["cmd"] for stage in _dvc()["stages"].values()]
    run = [c.split()[2] for c in commands if c.startswith("wbcseg notebook")]
    assert run == [p.stem for p in NOTEBOOKS] == sorted(run)


def test_compare_depends_on_every_variant():
    deps = _dvc()["stages"]["compare"]["deps"]
    for variant in _params()["variants"]:
        summary = stage_paths(".", variant)["report"] / "summary.csv"
        assert summary.as_posix().removeprefix("./") in deps, f"compare stage misses {summary}"


def test_metrics_and_plots_are_declared():
    dvc = _dvc()
    assert {"reports/metrics.json": {"cache": False}} in dvc["stages"]["compare"]["metrics"]
    plots = [next(iter(p)) if isinstance(p, dict) else p for p in dvc["plots"]]
    assert "dvclive/main/plots/metrics" in plots
