"""One place for the pins: requirements.lock. environment.yml and pip both install from it."""

import re

import yaml

from projects import REPO


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, f"requirements.lock: {line!r} is not an exact pin"
            name, version = line.split("==")
            pins[_name(name)] = version.strip()
    return pins


def test_environment_yml_installs_from_the_lock():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert "-r requirements.lock" in pip_section
    conda_packages = [item for item in env["dependencies"] if isinstance(item, str)]
    # the only conda packages are the interpreter and pip: everything else comes from the lock
    assert {_name(p) for p in conda_packages} == {"python", "pip"}
    python = next(p for p in conda_packages if p.startswith("python"))
    assert python.split("=")[1] == "3.11"


def test_every_direct_dependency_is_pinned_in_the_lock():
    lock = _lock()
    direct = [_name(line) for line in (REPO / "requirements.in").read_text().splitlines() if line.strip() and not line.startswith("#")]
    missing = [name for name in direct if name not in lock]
    assert not missing, f"requirements.in names {missing}, absent from requirements.lock: run `make lock`"
    assert lock["tensorflow"].startswith("2.21.") and lock["segmentation-models"] == "1.0.1"


def test_installed_versions_match_the_lock():
    from importlib.metadata import version

    lock = _lock()
    for name in ("tensorflow", "segmentation-models", "albumentations", "dvc", "papermill", "pandas"):
        assert version(name) == lock[name], f"{name} installed {version(name)}, locked {lock[name]}"


def test_the_lock_satisfies_pyproject():
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = _lock()
    wanted = project["dependencies"] + [dep for extra in project["optional-dependencies"].values() for dep in extra]
    for requirement in map(Requirement, wanted):
        pinned = lock.get(_name(requirement.name))
        assert pinned is not None, f"pyproject.toml needs {requirement.name}, which requirements.lock does not pin"
        assert requirement.specifier.contains(pinned, prereleases=True), f"requirements.lock pins {requirement.name}=={pinned}, outside {requirement}"
