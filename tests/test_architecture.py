"""The package's shape: imports only point down, nothing light imports TensorFlow, and every DVC
stage depends on every module it runs."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from projects import REPO

PACKAGE = REPO / "src" / "wbcseg"

#: The ranks of docs/architecture.md: a module may import only modules of a lower rank.
RANKS = {
    0: ["errors", "classes", "paths", "atomic", "noise"],
    1: ["data", "backend", "fields_scale"],
    2: ["params", "split", "preprocess", "augment", "metrics", "postprocess", "tiling"],
    3: ["card", "scoring", "measure", "overlay", "exports", "synthetic_fields", "fields_detect"],
    4: ["files", "network", "baseline", "report", "viz", "findings", "fields"],
    5: ["engine", "model_package"],
    6: ["segmenter"],
    7: ["batch", "train"],
    8: ["evaluate", "cluster", "fieldbatch"],
    9: ["crossval"],
    10: ["runner"],
    11: ["cli"],
}
RANK = {module: rank for rank, modules in RANKS.items() for module in modules}
#: Modules whose import must not load TensorFlow: checking params, reading a card, the CLI's parser.
LIGHT = [
    "wbcseg.params", "wbcseg.card", "wbcseg.data", "wbcseg.files", "wbcseg.scoring", "wbcseg.report", "wbcseg.findings",
    "wbcseg.runner", "wbcseg.cli", "wbcseg.cluster",
]


def package_imports(source: str) -> set[str]:
    """The wbcseg modules a piece of Python imports anywhere (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "wbcseg":  # modules, not the package's own names such as __version__
                found.update(alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").is_file())
            elif node.module.startswith("wbcseg."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("wbcseg."))
    return found


def modules() -> dict[str, set[str]]:
    return {path.stem: package_imports(path.read_text()) for path in PACKAGE.glob("*.py") if path.stem != "__init__"}


def closure(roots) -> set[str]:
    """The modules that importing `roots` runs, `roots` included."""
    graph, seen, todo = modules(), set(), list(roots)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return seen


def notebook_imports(name: str) -> set[str]:
    book = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in book["cells"] if c["cell_type"] == "code")
    return package_imports(code)


def test_every_module_has_a_rank():
    assert set(modules()) == set(RANK), "add new modules to RANKS here and to docs/architecture.md"


@pytest.mark.parametrize("module", sorted(RANK))
def test_imports_point_down(module):
    upward = {other: RANK[other] for other in modules()[module] if RANK[other] >= RANK[module]}
    assert not upward, f"wbcseg.{module} (rank {RANK[module]}) imports modules of its rank or above: {upward}"


def test_light_modules_do_not_import_tensorflow():
    code = "import sys\n" + "".join(f"import {m}\n" for m in LIGHT) + (
        "from wbcseg.cli import build_parser\nbuild_parser().parse_args(['predict', 'x', '--model', 'm', '--out', 'o'])\n"
        "from wbcseg.params import load_params\nload_params('params.yaml')\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'segmentation_models', 'openvino') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _stages():
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _module_deps(stage: dict) -> set[str]:
    deps = (stage.get("do") or stage)["deps"]
    return {Path(d).stem for d in deps if d.startswith("src/wbcseg/") and d.endswith(".py")}


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb")))
def test_each_notebook_stage_depends_on_every_module_it_runs(name):
    # The runner executes and renders the notebook; the notebook's imports run the rest. The `wbcseg`
    # command (cli.py) only dispatches, so it is left out: editing it must not retrain the models.
    (stage,) = [s for s in _stages().values() if f"wbcseg notebook {name}" in (s.get("do") or s)["cmd"]]
    needed = closure(notebook_imports(name) | {"runner"})
    assert _module_deps(stage) == needed, (
        f"dvc.yaml's stage for {name} must depend on exactly src/wbcseg/{{{','.join(sorted(needed))}}}.py; "
        f"missing {sorted(needed - _module_deps(stage))}, extra {sorted(_module_deps(stage) - needed)}"
    )


@pytest.mark.parametrize("stage_name, roots", [("check", {"params", "data", "atomic"}), ("fetch", {"params", "data"})])
def test_command_stages_depend_on_every_module_they_run(stage_name, roots):
    stage = _stages()[stage_name]
    assert _module_deps(stage) == closure(roots)
