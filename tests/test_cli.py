"""The `wbcseg` commands other than predict: one-line errors, exit codes, and what they need."""

from __future__ import annotations

import contextlib
import io
import shutil

import pytest
import yaml

from wbcseg import cli, data

from projects import REPO


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """cli.main in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def _small_mirror(tmp_path, mirror, monkeypatch):
    manifest = dict(list(data.read_manifest().items())[:2])
    for rel in manifest:
        (tmp_path / "mirror" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(mirror / rel, tmp_path / "mirror" / rel)
    monkeypatch.setattr(data, "read_manifest", lambda path=None: manifest)
    return tmp_path / "mirror"


def test_fetch_with_the_variable_set_needs_no_params_yaml(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv(data.SOURCE_ENV, str(_small_mirror(tmp_path, mirror, monkeypatch)))
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    code, stdout, _ = run_cli(["fetch", "--out", "raw"])
    assert code == 0 and "dataset verified" in stdout


def test_fetch_prefers_the_variable_to_params_yaml(tmp_path, mirror, monkeypatch):
    source = _small_mirror(tmp_path, mirror, monkeypatch)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["source"] = str(tmp_path / "nowhere")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(data.SOURCE_ENV, str(source))
    assert run_cli(["fetch", "--out", "raw"])[0] == 0
    monkeypatch.delenv(data.SOURCE_ENV)
    code, _, stderr = run_cli(["fetch", "--out", "raw2"])
    assert code == 2 and stderr.strip() == f"wbcseg fetch: error: {tmp_path / 'nowhere'}: the dataset mirror (from --source, WBC_DATA_SOURCE or data.source) is not a folder"


def test_fetch_into_a_file_is_one_line(tmp_path, mirror):
    (tmp_path / "taken").write_text("x")
    code, _, stderr = run_cli(["fetch", "--out", str(tmp_path / "taken"), "--source", str(mirror)])
    assert code == 2 and stderr.strip() == f"wbcseg fetch: error: {tmp_path / 'taken'}: exists and is not a folder; give --out a folder for the dataset"


def test_check_writes_its_stamp_only_for_usable_params(tmp_path, monkeypatch):
    monkeypatch.delenv(data.SOURCE_ENV, raising=False)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_cli(["check", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "data" / "checked.txt")])[0] == 0
    assert (tmp_path / "data" / "checked.txt").read_text() == cli.CHECKED
    params["train"]["epochs"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code, _, stderr = run_cli(["check", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "again.txt")])
    assert code == 2 and stderr.strip() == "wbcseg check: error: train.epochs: must be a whole number >= 1, got 0"
    assert not (tmp_path / "again.txt").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["notebook", "01_explore", "--variant", "main"], "01_explore runs once for all variants; --variant applies to 03_train, 04_evaluate, 07_finetune only"),
        (["notebook", "03_train", "--variant", "best"], "variants.best: no such variant; params.yaml defines main, original, d1_to_d2, d2_to_d1"),
        (["notebook", "99_nothing"], "notebooks/99_nothing.ipynb: no such notebook"),
    ],
)
def test_notebook_mistakes_are_one_line(argv, message, monkeypatch):
    monkeypatch.chdir(REPO)
    code, _, stderr = run_cli(argv)
    assert code == 2
    (line,) = stderr.strip().splitlines()
    assert line.startswith("wbcseg notebook: error: ") and line.endswith(message)
