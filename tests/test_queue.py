"""Studies as queued DVC experiments: `dvc exp run --queue -S ...` then `dvc queue start -j 2`, each
experiment in its own temporary workspace, on a copy of the project. The target is `preprocess`
(check, fetch, preprocess: seconds), and the data source comes from WBC_DATA_SOURCE, which
reaches the queued experiments only through the environment of `dvc queue start`."""

from __future__ import annotations

import json
import sys
import time

import pytest

from projects import make_project, run

pytestmark = pytest.mark.integration
SEEDS = (1, 2)


def experiments(exp_show: list) -> dict[int, str]:
    """split.seed -> state ('success', 'failed', ...) of each experiment of `dvc exp show --json`;
    an experiment without an executor is one collected from its git ref, done."""
    found = {}
    for baseline in exp_show:
        for experiment in baseline.get("experiments") or []:
            state = (experiment.get("executor") or {}).get("state", "success")
            for rev in experiment["revs"]:
                values = ((rev.get("data") or {}).get("params") or {}).get("params.yaml", {}).get("data", {})
                if "split" in values:
                    found[values["split"]["seed"]] = state
    return found


@pytest.fixture(scope="module")
def queued(tmp_path_factory, mirror):
    root = tmp_path_factory.mktemp("queued")
    env = make_project(root, mirror)
    dvc = [sys.executable, "-m", "dvc"]
    for seed in SEEDS:
        run([*dvc, "exp", "run", "--queue", "-S", f"split.seed={seed}", "preprocess"], root, env)
    run([*dvc, "queue", "start", "-j", "2"], root, env)
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            status = run([*dvc, "queue", "status"], root, env).stdout
            if not any(word in status for word in ("Queued", "Running")):
                break
            time.sleep(5)
        yield root, env, json.loads(run([*dvc, "exp", "show", "--json"], root, env).stdout), status
    finally:
        run([*dvc, "queue", "stop"], root, env, check=False)


def test_both_queued_experiments_ran_and_show(queued):
    root, env, shown, status = queued
    found = experiments(shown)
    assert set(found) == set(SEEDS), (status, json.dumps(shown)[:3000])
    assert all(state == "success" for state in found.values()), (found, status)
