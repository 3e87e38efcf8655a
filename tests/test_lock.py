"""The lock files: what `make` and the Dockerfile install is what pyproject.toml declares,
pinned with hashes, with the runtime packages at one version in both locks."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# A pin, with the extras it is installed with: ``uvicorn[standard]==0.54.0``.
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?)==([^\s\\;]+)", re.MULTILINE)


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    bare = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", bare).lower()


def _pins(path: Path) -> dict[str, str]:
    return {_name(n): v for n, v in _PIN.findall(path.read_text(encoding="utf-8"))}


def test_every_pin_carries_a_hash() -> None:
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / lock).read_text(encoding="utf-8")
        entries = re.split(r"\n(?=[A-Za-z0-9])", text)
        pinned = [e for e in entries if _PIN.match(e)]
        assert pinned, lock
        missing = [e.split()[0] for e in pinned if "--hash=sha256:" not in e]
        assert not missing, f"{lock}: pins without a hash: {missing}"


def test_locks_hold_what_pyproject_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    dev = {_name(r) for r in project["optional-dependencies"]["dev"]}
    runtime_lock, dev_lock = (
        _pins(ROOT / "requirements.lock"),
        _pins(ROOT / "requirements-dev.lock"),
    )
    assert runtime - set(runtime_lock) == set(), "run `make lock`: runtime lock is stale"
    assert (runtime | dev) - set(dev_lock) == set(), "run `make lock`: dev lock is stale"
    assert runtime_lock["torch"].startswith("2.13.0")  # the CPU build, never an unpinned torch


def test_runtime_packages_have_one_version_in_both_locks() -> None:
    runtime_lock, dev_lock = (
        _pins(ROOT / "requirements.lock"),
        _pins(ROOT / "requirements-dev.lock"),
    )
    differ = {n: (v, dev_lock.get(n)) for n, v in runtime_lock.items() if dev_lock.get(n) != v}
    assert not differ, f"runtime lock and dev lock disagree (run `make lock`): {differ}"


def _pinned_extras(path: Path) -> set[tuple[str, str]]:
    """(name, extra) for every pin written with extras, from the same pins as ``_pins``."""
    return {
        (_name(pin), extra.strip())
        for pin, _ in _PIN.findall(path.read_text(encoding="utf-8"))
        if "[" in pin
        for extra in pin[pin.index("[") + 1 : -1].split(",")
    }


def test_a_locked_package_asked_for_with_extras_is_pinned_with_them() -> None:
    """pip's hash mode treats ``chromadb``'s ``uvicorn[standard]`` as a requirement of its
    own: pinned only as ``uvicorn==``, pip looks for the newest uvicorn and refuses the
    install as soon as one newer than the pin is published."""
    dev_pins = _pins(ROOT / "requirements-dev.lock")
    asked: set[tuple[str, str, str]] = set()
    for dist in importlib.metadata.distributions():  # what the dev lock installed
        if _name(dist.metadata["Name"]) not in dev_pins:
            continue
        for line in dist.requires or []:
            req = Requirement(line)
            # unconditional here (a marker naming the dependent's own extra is not asked for)
            if req.extras and (req.marker is None or req.marker.evaluate({"extra": ""})):
                asked |= {(dist.metadata["Name"], _name(req.name), e) for e in req.extras}
    for lock in ("requirements.lock", "requirements-dev.lock"):
        pins, extras = _pins(ROOT / lock), _pinned_extras(ROOT / lock)
        missing = sorted(
            f"{who} needs {name}[{extra}]"
            for who, name, extra in asked
            if name in pins and (name, extra) not in extras
        )
        assert not missing, f"{lock}: pin these with their extras: {missing}"
