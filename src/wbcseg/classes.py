"""Class names, mask values and the targets scored: the one place for the label conventions.

Masks on disk hold grey values (0 background, 128 cytoplasm, 255 nucleus); in memory a class map
holds class indices (0, 1, 2). A binary model knows only 0 rest / 1 cell.
"""

from __future__ import annotations

import numpy as np

#: Class index -> name, and the grey value that encodes the class in the dataset's PNG masks.
CLASS_NAMES = ("background", "cytoplasm", "nucleus")
MASK_VALUES = np.array([0, 128, 255], dtype=np.uint8)
#: Classes a model of each task predicts, in output-channel order.
TASK_CLASSES = {"binary": ("background", "cell"), "tissue": CLASS_NAMES}
#: Targets scored for each task, in report order: the whole cell (cytoplasm and nucleus), nucleus, cytoplasm.
TASK_TARGETS = {"binary": ("cell",), "tissue": ("cell", "nucleus", "cytoplasm")}
#: Cell type labels (1-5) of the dataset's class-label CSVs.
CELL_TYPES = {1: "neutrophil", 2: "lymphocyte", 3: "monocyte", 4: "eosinophil", 5: "basophil"}


def check_task(task: str) -> None:
    if task not in TASK_CLASSES:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASK_CLASSES)}")


def snap_mask_values(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Grey mask values -> class map (0, 1, 2) by the nearest of 0/128/255; also the count of
    pixels whose value was not exactly one of those (stray values such as 9 in Dataset 2)."""
    values = np.asarray(values)
    classes = np.abs(values[..., None].astype(np.int16) - MASK_VALUES.astype(np.int16)).argmin(-1)
    stray = int((~np.isin(values, MASK_VALUES)).sum())
    return classes.astype(np.uint8), stray


def mask_to_png_values(labels: np.ndarray, task: str) -> np.ndarray:
    """A label map as the dataset's PNG grey values: tissue 0/128/255, binary 0/255."""
    check_task(task)
    if task == "tissue":
        return MASK_VALUES[labels]
    return np.where(labels > 0, 255, 0).astype(np.uint8)


def task_labels(class_map: np.ndarray, task: str) -> np.ndarray:
    """A 3-class map in a task's label space: binary gives 0 rest / 1 cell, tissue is unchanged."""
    check_task(task)
    return (class_map > 0).astype(np.uint8) if task == "binary" else class_map


def target_masks(labels: np.ndarray, task: str) -> dict[str, np.ndarray]:
    """Boolean masks of each target of `task` from labels in the task's label space."""
    check_task(task)
    labels = np.asarray(labels)
    if task == "binary":
        return {"cell": labels == 1}
    return {"cell": labels > 0, "nucleus": labels == 2, "cytoplasm": labels == 1}


def truth_masks(class_map: np.ndarray, task: str) -> dict[str, np.ndarray]:
    """Boolean masks of each target of `task` from a 3-class ground-truth class map."""
    masks = target_masks(class_map, "tissue")
    return {target: masks[target] for target in TASK_TARGETS[task]}
