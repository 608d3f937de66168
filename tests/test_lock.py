"""The lock that `make setup` installs agrees with pyproject.toml, and LoRA refuses a peft its transformers rejects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from st_pooling.training import TrainConfig
from st_pooling.training.compat import (
    PEFT_FLOORS,
    check_lora_dependencies,
    installed_version,
    lora_incompatibility,
    oldest_peft_for,
)

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
LOCK_FILES = ("requirements/cpu.lock", "requirements/torch-cpu.txt", "requirements/decoder-model.txt")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", re.MULTILINE)


def pins(relative_path: str) -> dict[str, Version]:
    text = (ROOT / relative_path).read_text(encoding="utf-8")
    return {canonicalize_name(name): Version(number) for name, number in PIN.findall(text)}


def locked_versions() -> dict[str, Version]:
    merged: dict[str, Version] = {}
    for relative_path in LOCK_FILES:
        merged.update(pins(relative_path))
    return merged


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def declared_requirements(extra: str = "dev") -> list[Requirement]:
    """The project's dependencies plus those of ``extra``, following the project's references to its own extras."""
    project = pyproject()["project"]
    own_name = canonicalize_name(project["name"])
    optional = project["optional-dependencies"]
    requirements, pending, seen = [Requirement(r) for r in project["dependencies"]], [extra], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in optional[name]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == own_name:
                pending.extend(requirement.extras)
            else:
                requirements.append(requirement)
    return [r for r in requirements if r.marker is None or r.marker.evaluate()]


def test_every_declared_dependency_is_locked_inside_its_declared_range():
    locked = locked_versions()
    problems = []
    for requirement in declared_requirements():
        name = canonicalize_name(requirement.name)
        if name not in locked:
            problems.append(f"{requirement} is declared in pyproject.toml but missing from the lock")
        elif not requirement.specifier.contains(locked[name], prereleases=True):
            problems.append(f"{name}=={locked[name]} is locked outside pyproject.toml's range {requirement}")
    assert not problems, "run `make lock`, then `make setup test`:\n" + "\n".join(problems)


def test_the_lock_pins_every_package_with_hashes():
    text = (ROOT / "requirements/cpu.lock").read_text(encoding="utf-8")
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 6)[-1])  # one entry per pinned package
    pinned = [entry for entry in entries if PIN.match(entry)]
    assert len(pinned) > 50
    assert all("--hash=sha256:" in entry for entry in pinned), [e.split()[0] for e in pinned if "--hash" not in e]
    assert "torch" not in pins("requirements/cpu.lock"), "torch belongs in requirements/torch-cpu.txt (CPU wheel)"


def test_the_installed_environment_is_the_locked_one():
    """`make setup` installed exactly the lock (a drifted venv would test a different set)."""
    drifted = {name: (str(version), installed_version(name)) for name, version in locked_versions().items()
               if installed_version(name) is not None and Version(installed_version(name)).public != version.public}
    assert not drifted, f"installed versions differ from the lock (run `make setup` in a new venv): {drifted}"


def test_the_lora_extra_admits_no_pair_that_transformers_rejects():
    lora = {canonicalize_name(r.name): r.specifier for r in map(Requirement, pyproject()["project"]
                                                                ["optional-dependencies"]["lora"])}
    for first_release, oldest_peft in PEFT_FLOORS:
        if not lora["transformers"].contains(first_release):
            continue
        lower_bounds = [Version(s.version) for s in lora["peft"] if s.operator in (">=", "==", "~=")]
        assert lower_bounds and max(lower_bounds) >= Version(oldest_peft), (
            f"the lora extra admits transformers {first_release} with peft below {oldest_peft}")
    newest_floor_release = Version(PEFT_FLOORS[-1][0])
    assert not lora["transformers"].contains(newest_floor_release) or lora["peft"].contains(PEFT_FLOORS[-1][1])


def test_the_peft_floors_match_what_the_installed_transformers_demands():
    peft_integration = pytest.importorskip("transformers.integrations.peft")
    own_minimum = getattr(peft_integration, "MIN_PEFT_VERSION", None)
    if own_minimum is None:
        pytest.skip("this transformers release does not declare MIN_PEFT_VERSION")
    assert Version(oldest_peft_for(installed_version("transformers"))) == Version(own_minimum)


@pytest.mark.skipif(installed_version("peft") is None, reason="peft is not installed (the lora extra)")
def test_the_installed_pair_is_accepted():
    assert lora_incompatibility(installed_version("transformers"), installed_version("peft")) is None
    check_lora_dependencies()
    TrainConfig(mode="lora")


@pytest.mark.skipif(installed_version("peft") is None, reason="peft is not installed (the lora extra)")
def test_an_incompatible_pair_is_refused_before_training_with_both_versions_and_the_fix():
    """The installed peft against a transformers that needs a newer one (5.24 needs peft >= 0.22)."""
    installed_peft = installed_version("peft")
    if Version(installed_peft) >= Version(oldest_peft_for("5.24.0")):
        pytest.skip(f"peft {installed_peft} already serves transformers 5.24")
    with pytest.raises(ImportError) as refused:
        check_lora_dependencies(transformers_version="5.24.0")
    message = str(refused.value)
    assert "transformers 5.24.0" in message and f"peft {installed_peft}" in message
    assert "peft >= 0.22.0" in message and "pip install 'st-pooling[lora]'" in message
