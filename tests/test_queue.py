"""Studies as queued DVC experiments: `dvc exp run --queue -S ...` then `dvc queue start -j 2`, each
experiment in its own temporary workspace, on a copy of the project. The target is `preprocess`
(check, fetch, preprocess: seconds), and the data source comes from WBC_DATA_SOURCE, which
reaches the queued experiments only through the environment of `dvc queue start`."""

from __future__ import annotations

import json
import re
import subprocess
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


def start_workers(dvc: list, root, env) -> None:
    """`dvc queue start -j 2`, its output to a file: the workers it forks inherit the command's
    output, so with pipes it would return only when the last worker exits."""
    with open(root / "queue-start.log", "a") as log:
        subprocess.run([*dvc, "queue", "start", "-j", "2"], cwd=root, env=env, stdout=log, stderr=log, check=True, timeout=120)


def worker_logs(root) -> str:
    """The last lines of each queue worker's log, for a failure message."""
    logs = sorted((root / ".dvc" / "tmp" / "exps" / "celery").glob("*.out"))
    return "\n".join(f"{log.name}:\n{log.read_text(errors='replace')[-1500:]}" for log in logs)


@pytest.fixture(scope="module")
def queued(tmp_path_factory, mirror):
    root = tmp_path_factory.mktemp("queued")
    env = make_project(root, mirror)
    dvc = [sys.executable, "-m", "dvc"]
    for seed in SEEDS:
        run([*dvc, "exp", "run", "--queue", "-S", f"split.seed={seed}", "preprocess"], root, env)
    start_workers(dvc, root, env)
    deadline = time.monotonic() + 900
    idle_since = None
    try:
        while time.monotonic() < deadline:
            status = run([*dvc, "queue", "status"], root, env).stdout
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            if "Running" in status or not re.search(r"Worker status: 0 active", status):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 60:
                # Workers gone with tasks still queued (treeverse/dvc#10562): start again, as a user would.
                start_workers(dvc, root, env)
                idle_since = None
            time.sleep(5)
        yield root, env, json.loads(run([*dvc, "exp", "show", "--json"], root, env).stdout), status, worker_logs(root)
    finally:
        run([*dvc, "queue", "stop", "--kill"], root, env, check=False, timeout=120)


def test_both_queued_experiments_ran_and_show(queued):
    root, env, shown, status, logs = queued
    found = experiments(shown)
    assert set(found) == set(SEEDS), (status, json.dumps(shown)[:3000], logs)
    assert all(state == "success" for state in found.values()), (found, status, logs)
