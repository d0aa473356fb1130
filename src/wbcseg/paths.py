"""Where each pipeline stage reads and writes, relative to the repository root: the one place for the layout."""

from __future__ import annotations

import os
from pathlib import Path

#: Where a notebook run by hand writes, under the repository: git- and DVC-ignored.
SCRATCH = Path("reports") / "scratch"


def output_root(root: str | os.PathLike, out_root: str | os.PathLike | None = None) -> Path:
    """Where a notebook writes: `out_root` when given (`wbcseg notebook` passes the repository), else
    SCRATCH under `root`, so that a notebook run by hand never replaces a pipeline output or a model."""
    return Path(out_root) if out_root is not None else Path(root) / SCRATCH


def stage_paths(root: str | os.PathLike, variant: str | None = None) -> dict[str, Path]:
    """The project's folders and files under `root`; with `variant`, also that model's own."""
    root = Path(root)
    paths = {
        "params": root / "params.yaml",
        "raw": root / "data" / "raw",
        "extra": root / "data" / "extra",
        "processed": root / "data" / "processed",
        "split": root / "data" / "processed" / "split.csv",
        "reports": root / "reports",
        "explore": root / "reports" / "explore",
        "crossval": root / "reports" / "crossval",
    }
    if variant is not None:
        paths.update(
            model=root / "models" / variant,
            live=root / "dvclive" / variant,
            report=root / "reports" / variant,
            overlays=root / "reports" / variant / "overlays",
        )
    return paths
