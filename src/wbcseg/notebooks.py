"""Run one pipeline notebook with papermill and render it to HTML with nbconvert.

Each stage of dvc.yaml is `wbcseg notebook <name> [--variant V]`: params.yaml is checked first,
then injected into the notebook's `parameters` cell, and the executed copy and its HTML are
written to `reports/` only once the whole notebook has run.
"""

from __future__ import annotations

import os
from pathlib import Path

from wbcseg.params import load_params, run_config

#: Notebooks that run once per variant of params.yaml (their reports go to reports/<variant>/).
PER_VARIANT = ("03_train", "04_visualize")


def stage_paths(root: str | os.PathLike, variant: str | None = None) -> dict[str, Path]:
    """Where each stage reads and writes, relative to the repository `root` (one place for the layout)."""
    root = Path(root)
    paths = {
        "raw": root / "data" / "raw",
        "processed": root / "data" / "processed",
        "split": root / "data" / "processed" / "split.csv",
        "reports": root / "reports",
        "explore": root / "reports" / "explore",
    }
    if variant is not None:
        paths.update(
            model=root / "models" / variant,
            live=root / "dvclive" / variant,
            report=root / "reports" / variant,
            overlays=root / "reports" / variant / "overlays",
        )
    return paths


def run_stage_notebook(name: str, variant: str | None = None, params_path: str | os.PathLike = "params.yaml") -> list[Path]:
    """Execute notebooks/<name>.ipynb with params.yaml injected; write reports/[<variant>/]<name>.ipynb and .html."""
    import papermill as pm

    params_path = Path(params_path).resolve()
    root = params_path.parent
    params = load_params(params_path)
    notebook = root / "notebooks" / f"{name}.ipynb"
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook}: no such notebook")
    parameters = {"root": str(root), "params": params}
    if name in PER_VARIANT:
        run_config(params, variant or "main")  # an unknown variant fails here, before any work
        parameters["variant"] = variant or "main"
        out_dir = stage_paths(root, parameters["variant"])["report"]
    elif variant:
        raise ValueError(f"{name} runs once for all variants; --variant applies to {', '.join(PER_VARIANT)} only")
    else:
        out_dir = root / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    executed, html = out_dir / f"{name}.ipynb", out_dir / f"{name}.html"
    tmp = out_dir / f".{name}.running.ipynb"
    try:
        pm.execute_notebook(
            str(notebook), str(tmp), parameters=parameters, cwd=str(root),
            kernel_name="python3", progress_bar=False, log_output=True,
        )
        write_html(tmp, html)
        tmp.replace(executed)
    finally:
        tmp.unlink(missing_ok=True)
    return [executed, html]


def write_html(notebook: str | os.PathLike, html: str | os.PathLike) -> Path:
    """Render an executed notebook to a standalone HTML file (figures embedded)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_filename(str(notebook))
    html = Path(html)
    tmp = html.with_name(f".{html.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(html)
    return html
