"""Where each pipeline stage reads and writes, relative to the repository root: the one place for the layout."""

from __future__ import annotations

import os
from pathlib import Path


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
