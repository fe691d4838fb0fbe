"""requirements/lock.txt (the pinned versions `make setup` installs, written by `make lock`)
agrees with pyproject.toml, the Makefile's torch version, and the environment it was installed in."""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, version

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from peftlab.core.paths import repo_root

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before 3.11
    import tomli as tomllib

ROOT = repo_root()
LOCK = ROOT / "requirements" / "lock.txt"
# torch's CUDA runtime from PyPI's Linux build: a CPU machine must not download it (nvidia-ml-py,
# the NVML bindings the project imports, is a dependency of its own).
CUDA_RUNTIME = re.compile(r"^(nvidia-(?!ml-py$).+|cuda-.+|triton)$")


def direct_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def lock_pins() -> dict[str, list[tuple[Version, Requirement]]]:
    """Package (canonical name) -> its pins: (version, the line as a requirement). A universal
    lock may pin one package twice under exclusive markers (one per Python version)."""
    pins: dict[str, list[tuple[Version, Requirement]]] = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.startswith((" ", "#", "-")):
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"lock line is not a pin: {line!r}"
        pins.setdefault(canonicalize_name(requirement.name), []).append((Version(specifiers[0].version), requirement))
    return pins


def applies_here(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate()


def test_every_direct_dependency_is_pinned_within_its_range():
    pins = lock_pins()
    problems = []
    for requirement in direct_requirements():
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} is not in the lock")
            continue
        for pinned, _ in pins[name]:
            if not requirement.specifier.contains(pinned, prereleases=True):
                problems.append(f"{requirement}: the lock pins {pinned}")
        if sum(applies_here(line) for _, line in pins[name]) != 1:
            problems.append(f"{requirement}: not exactly one pin applies to this Python and platform")
    assert not problems, "requirements/lock.txt disagrees with pyproject.toml (run `make lock`):\n" + "\n".join(
        problems
    )


def test_lock_holds_no_cuda_runtime():
    cuda = sorted(name for name in lock_pins() if CUDA_RUNTIME.match(name))
    assert not cuda, (
        f"requirements/lock.txt pins torch's CUDA runtime {cuda}: requirements/uv.toml's torch metadata "
        "must name the Makefile's TORCH_VERSION"
    )


def test_torch_pin_is_the_makefiles():
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^TORCH_VERSION\s*\?=\s*(\S+)", makefile, flags=re.MULTILINE)
    assert match, "the Makefile no longer sets TORCH_VERSION"
    torch_version = Version(match.group(1))
    pinned = [str(v) for v, _ in lock_pins().get("torch", [])]
    assert pinned == [str(torch_version)], f"requirements/lock.txt pins torch {pinned}, the Makefile {torch_version}"
    settings = tomllib.loads((ROOT / "requirements" / "uv.toml").read_text())
    described = {Version(entry["version"]) for entry in settings["dependency-metadata"] if entry["name"] == "torch"}
    assert described == {torch_version}, "requirements/uv.toml describes another torch than the Makefile installs"


def test_installed_direct_dependencies_are_the_locked_ones():
    """The environment running the tests was installed from the lock (make setup): each direct
    dependency's installed version is its pin. A local version label is ignored (torch's CPU
    build is 2.13.0+cpu for the pin 2.13.0). Fails on an environment set up before the lock last
    changed: `make setup` brings it in line."""
    pins = lock_pins()
    problems = []
    for requirement in direct_requirements():
        name = canonicalize_name(requirement.name)
        pinned = next((v for v, line in pins.get(name, []) if applies_here(line)), None)
        if pinned is None:
            continue  # reported by test_every_direct_dependency_is_pinned_within_its_range
        try:
            installed = Version(version(requirement.name))
        except PackageNotFoundError:
            problems.append(f"{requirement.name} is not installed (the lock pins {pinned})")
            continue
        if Version(installed.public) != pinned:
            problems.append(f"{requirement.name}: installed {installed}, the lock pins {pinned}")
    if problems:
        pytest.fail("this environment differs from requirements/lock.txt (run `make setup`):\n" + "\n".join(problems))
