"""Run one pipeline notebook with papermill and render it to HTML with nbconvert.

Each notebook stage of dvc.yaml is `wbcseg notebook <name> [--variant V]`: params.yaml is checked
first, then injected into the notebook's `parameters` cell, and the executed copy and its HTML
are written to `reports/` only once the whole notebook has run. While it runs, the console shows
a bar of cells done and the lines the notebook prints (training prints one per epoch), without
TensorFlow's start-up noise; a failure ends in one line naming the cell and the error.

The HTML is for a reader: no code (the executed notebook keeps it), no prompts, no empty cells,
no cell tagged NOTEBOOK_ONLY (the notebook's link to its own report; progress lines, which the
console shows while the stage runs); the known start-up noise is dropped from the executed
notebook too. The notebook runs in the repository with `root` and `out_root` set to ".", so no
output names a folder of the machine it ran on.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from wbcseg.atomic import write_text
from wbcseg.errors import WbcsegError
from wbcseg.noise import drop_noise
from wbcseg.params import load_params, run_config
from wbcseg.paths import stage_paths

#: Notebooks that run once per model of params.yaml (their reports go to reports/<variant>/): a
#: variant's, or a fine-tuned model's (07_finetune).
PER_VARIANT = ("03_train", "04_evaluate", "07_finetune")
#: The tag of a cell left out of the HTML report.
NOTEBOOK_ONLY = "notebook-only"
#: JupyterLab's HTML template without the scripts it loads from the web (require.js, MathJax): a
#: report has no widgets or formulas to run them for, and it opens the same without internet.
REPORT_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
"""


class NotebookError(WbcsegError):
    """A pipeline notebook stopped with an error."""


class ConsoleLines:
    """A file-like sink for a kernel's output stream: whole lines go to the console (through tqdm,
    so they do not break the progress bar), prefixed with the stage, known start-up noise dropped."""

    def __init__(self, prefix: str, stream):
        self.prefix, self.stream, self.pending = prefix, stream, ""

    def write(self, text: str) -> None:
        from tqdm import tqdm

        *lines, self.pending = (self.pending + text).split("\n")
        for line in drop_noise("\n".join(lines) + "\n").splitlines() if lines else []:
            if line.strip():
                tqdm.write(f"{self.prefix}{line}", file=self.stream)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def kernel_manager(cwd: str | os.PathLike):
    """A Python kernel, working in `cwd`, that talks over local sockets in a temporary folder: over
    TCP, ipykernel warns on every start that its traffic is unencrypted, a line that reads like a failure."""
    from jupyter_client.manager import KernelManager

    with tempfile.TemporaryDirectory(prefix="wbcseg-kernel-") as sockets:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "kernel"))
        # ipykernel copies what native code writes to its file descriptors both into the notebook
        # and onto the kernel's own stdout and stderr; the notebook's copy reaches the console
        # through ConsoleLines, filtered, so the kernel's own streams would only print it twice.
        km.start_kernel(cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield km
        finally:
            if km.has_kernel:  # papermill shuts down only the kernels it started itself
                km.shutdown_kernel()


def _failure(notebook_path: Path) -> str:
    """One line for a failed run: the first cell with an error, its error name and value."""
    import nbformat

    book = nbformat.read(notebook_path, as_version=4)
    for index, cell in enumerate(book.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"cell {index} raised {output['ename']}: {output['evalue']} (the executed notebook is {notebook_path})"
    return f"it stopped before finishing (the executed notebook is {notebook_path})"


def run_stage_notebook(name: str, variant: str | None = None, params_path: str | os.PathLike = "params.yaml") -> list[Path]:
    """Execute notebooks/<name>.ipynb with params.yaml injected; write reports/[<variant>/]<name>.ipynb and .html."""
    import papermill as pm

    params_path = Path(params_path).resolve()
    root = params_path.parent
    params = load_params(params_path)
    notebook = root / "notebooks" / f"{name}.ipynb"
    if not notebook.is_file():
        raise WbcsegError(f"{notebook}: no such notebook")
    parameters = {"root": ".", "out_root": ".", "params": params}
    if name in PER_VARIANT:
        parameters["variant"] = variant or "main"
        run_config(params, parameters["variant"])  # an unknown variant fails here, before any work
        out_dir = stage_paths(root, parameters["variant"])["report"]
        label = f"{name}@{parameters['variant']}"
    elif variant:
        raise WbcsegError(f"{name} runs once for all variants; --variant applies to {', '.join(PER_VARIANT)} only")
    else:
        out_dir = stage_paths(root)["reports"]
        label = name
    out_dir.mkdir(parents=True, exist_ok=True)
    executed, html = out_dir / f"{name}.ipynb", out_dir / f"{name}.html"
    tmp, failed = out_dir / f".{name}.running.ipynb", out_dir / f"{name}.failed.ipynb"
    try:
        with kernel_manager(root) as km:
            pm.execute_notebook(
                str(notebook), str(tmp), parameters=parameters, cwd=str(root), kernel_name="python3", km=km,
                progress_bar={"desc": label, "unit": "cell", "file": sys.stderr, "disable": None},
                stdout_file=ConsoleLines(f"{label}: ", sys.stdout), stderr_file=ConsoleLines(f"{label}: ", sys.stderr),
            )
        drop_stream_noise(tmp)
        write_html(tmp, html)
        tmp.replace(executed)
        failed.unlink(missing_ok=True)
    except pm.PapermillExecutionError:
        tmp.replace(failed)
        raise NotebookError(f"{label}: {_failure(failed)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return [executed, html]


def drop_stream_noise(notebook: str | os.PathLike) -> None:
    """Remove known start-up noise from the printed outputs of an executed notebook (in place): the
    kernel's TensorFlow writes some of it straight to file descriptor 2 when a first op runs."""
    import nbformat

    book = nbformat.read(notebook, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            for output in cell.outputs:
                if output.output_type == "stream":
                    output.text = drop_noise(output.text)
            cell.outputs = [o for o in cell.outputs if o.output_type != "stream" or o.text]
    nbformat.write(book, notebook)


def report_title(book) -> str:
    """The first heading of a notebook, for the HTML page's title."""
    for cell in book.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("#"):
            return cell.source.splitlines()[0].lstrip("#").strip()
    return "wbcseg report"


def shown_in_report(cell) -> bool:
    """Whether the HTML report shows a cell: prose and outputs, not NOTEBOOK_ONLY cells or cells without output."""
    if NOTEBOOK_ONLY in cell.metadata.get("tags", []):
        return False
    return cell.cell_type == "markdown" or bool(cell.get("outputs"))


def write_html(notebook: str | os.PathLike, html: str | os.PathLike) -> Path:
    """Render an executed notebook to a standalone HTML page for a reader (figures embedded)."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    book = nbformat.read(notebook, as_version=4)
    book.cells = [cell for cell in book.cells if shown_in_report(cell)]
    exporter = HTMLExporter(
        template_name="lab", extra_loaders=[DictLoader({"report.html.j2": REPORT_TEMPLATE})], template_file="report.html.j2",
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(book, resources={"metadata": {"name": report_title(book)}})
    return write_text(html, body)
