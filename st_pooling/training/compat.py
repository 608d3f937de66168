"""Is the installed peft one that the installed transformers accepts? Checked before any LoRA training starts.

transformers refuses a peft older than its own minimum only when the adapter is added, deep inside a run and with a
message that names neither installed version. :func:`check_lora_dependencies` refuses the pair up front.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from packaging.version import Version

# (transformers release, the oldest peft it accepts), oldest first, as transformers' own MIN_PEFT_VERSION says:
# 5.23.0 read from its source (tests/test_lock.py checks the installed release against this table), 5.24.0 from its
# refusal. Releases before 5.23 are held to 5.23's floor (not verified lower). Add a row when one raises it again.
PEFT_FLOORS: tuple[tuple[str, str], ...] = (("5.0.0", "0.20.0"), ("5.24.0", "0.22.0"))

LORA_INSTALL_HINT = ("pip install 'st-pooling[lora]' (it keeps the pair compatible), or `make setup` in a clone, "
                     "which installs the tested set in requirements/cpu.lock")
LORA_MISSING = f"LoRA training needs the optional dependency peft: {LORA_INSTALL_HINT}"


def oldest_peft_for(transformers_version: str) -> str:
    """The oldest peft that this transformers release accepts (by :data:`PEFT_FLOORS`)."""
    floor = "0"
    for first_release, oldest_peft in PEFT_FLOORS:
        if Version(transformers_version) >= Version(first_release):
            floor = oldest_peft
    return floor


def lora_incompatibility(transformers_version: str, peft_version: str) -> str | None:
    """Why this transformers / peft pair cannot train LoRA adapters, or None when it can."""
    needed = oldest_peft_for(transformers_version)
    if Version(peft_version) >= Version(needed):
        return None
    return (f"LoRA training cannot run with transformers {transformers_version} and peft {peft_version}: "
            f"transformers {transformers_version} needs peft >= {needed}. Fix: {LORA_INSTALL_HINT}")


def installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def check_lora_dependencies(transformers_version: str | None = None, peft_version: str | None = None) -> None:
    """Raise ImportError naming both versions and the fix when LoRA training cannot run here.

    The versions default to the installed distributions' metadata; pass others to ask about a pair.
    """
    transformers_version = transformers_version or installed_version("transformers")
    peft_version = peft_version or installed_version("peft")
    if peft_version is None:
        raise ImportError(LORA_MISSING)
    if transformers_version is None:
        raise ImportError(f"LoRA training needs transformers: {LORA_INSTALL_HINT}")
    problem = lora_incompatibility(transformers_version, peft_version)
    if problem:
        raise ImportError(problem)
