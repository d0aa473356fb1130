"""A temporary copy of the project, at a tiny parameter set, as a git + DVC repository: what the
whole-pipeline and queued-experiment tests run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "data": {"max_images_per_dataset": 12},
    "model": {"input_size": 96},
    "train": {"epochs": 1, "warmup_epochs": 0, "batch_size": 4},
    "evaluate": {"overlays": 2},
    "crossval": {"folds": 2},
}
GIT = ["git", "-c", "user.name=wbcseg-test", "-c", "user.email=test@wbcseg.invalid"]


def run(args, cwd, env, check=True, timeout=1800):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode:
        pytest.fail(f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def make_project(root: Path, mirror: Path, changes: dict | None = None) -> dict:
    """Copy the project to `root` with TINY (and `changes`, group by group) in params.yaml, commit
    it to a new git repository with DVC initialised; returns the environment to run it in (the
    data source is `mirror`, and `dvc`, `wbcseg` come from this interpreter's folder)."""
    for name in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    for folder in ("notebooks", "src", "data/extra"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"), dirs_exist_ok=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for group, values in [*TINY.items(), *(changes or {}).items()]:
        params[group].update(values)
    for overrides in params["variants"].values():
        overrides.pop("epochs", None)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # The copy's own package, not the checkout's, even though `wbcseg` runs from the checkout's venv.
    env = {**os.environ, "WBC_DATA_SOURCE": str(mirror), "PYTHONPATH": str(root / "src"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run(["git", "init", "-q"], root, env)
    run([sys.executable, "-m", "dvc", "init", "-q"], root, env)
    run(GIT + ["add", "-A"], root, env)
    run(GIT + ["commit", "-qm", "tiny project"], root, env)
    return env
