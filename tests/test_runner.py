"""The HTML a reader gets from an executed notebook: outputs without code, prompts, notebook-only
cells, console progress or start-up noise, built from hand-made notebooks; and where a stage's
notebook runs (one tiny notebook, executed)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from wbcseg.paths import SCRATCH, output_root
from wbcseg.runner import NOTEBOOK_ONLY, drop_stream_noise, run_stage_notebook, write_html

from projects import REPO

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}

NOISE = "E0000 00:00:1.2 21114 util.cc:131] oneDNN supports DT_INT32 only on platforms with AVX-512. Falling back\n"


def _executed(path):
    link = new_markdown_cell("Rendered report: [reports/x.html](../reports/x.html)")
    link.metadata["tags"] = [NOTEBOOK_ONLY]
    progress = new_code_cell("fit()", outputs=[new_output("stream", name="stdout", text="epoch 1/2: loss 0.5\n")])
    progress.metadata["tags"] = [NOTEBOOK_ONLY]
    book = new_notebook(cells=[
        new_markdown_cell("# 03 · Train the U-Net\n\nWhat it shows."),
        link,
        new_code_cell("secret_source_code = 1", execution_count=1),
        progress,
        new_code_cell("print('finding')", execution_count=3, outputs=[
            new_output("stream", name="stderr", text=NOISE),
            new_output("stream", name="stdout", text="best validation Dice 0.922\n"),
            new_output("execute_result", data={"text/plain": "42"}, execution_count=3),
        ]),
    ])
    nbformat.write(book, path)
    return path


def test_the_report_has_outputs_and_prose_only(tmp_path):
    html = write_html(_executed(tmp_path / ".03_train.running.ipynb"), tmp_path / "03_train.html").read_text()
    assert "<title>03 · Train the U-Net</title>" in html
    assert "What it shows." in html and "best validation Dice 0.922" in html
    assert "secret_source_code" not in html and "print(" not in html  # no code
    assert "Rendered report" not in html  # the notebook's link to its own report
    assert "epoch 1/2" not in html  # console progress
    assert html.count('class="jp-Cell ') == 2  # the title and the cell with outputs; no empty cells
    assert not re.findall(r"<script[^>]*src=", html)  # nothing loaded from the web
    body = html[html.index("<body"):]
    assert "jp-InputPrompt" not in body and "jp-OutputPrompt" not in body


def test_start_up_noise_is_dropped_from_the_executed_notebook(tmp_path):
    path = _executed(tmp_path / "book.ipynb")
    drop_stream_noise(path)
    outputs = nbformat.read(path, as_version=4).cells[4].outputs
    assert [o.output_type for o in outputs] == ["stream", "execute_result"]
    assert outputs[0].name == "stdout" and "oneDNN" not in outputs[0].text


def test_a_notebook_run_by_hand_writes_to_scratch():
    assert output_root("..") == Path("..") / SCRATCH
    assert str(output_root("..", out_root=".")) == "."


def test_a_stage_runs_in_the_folder_of_its_params_whatever_the_callers_folder(tmp_path, monkeypatch):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "notebooks").mkdir(parents=True)
    elsewhere.mkdir()
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    parameters = new_code_cell("root = '..'\nout_root = None\nparams = None")
    parameters.metadata["tags"] = ["parameters"]
    write = new_code_cell("from pathlib import Path\nPath(out_root, 'reports', 'written.txt').write_text('x')")
    nbformat.write(new_notebook(cells=[new_markdown_cell("# 01 · Explore"), parameters, write], metadata=KERNEL), project / "notebooks" / "01_explore.ipynb")
    monkeypatch.chdir(elsewhere)
    run_stage_notebook("01_explore", params_path=project / "params.yaml")
    assert (project / "reports" / "written.txt").is_file() and (project / "reports" / "01_explore.html").is_file()
    assert list(elsewhere.iterdir()) == []
