"""What `pip install .` installs: the library only, and console commands that resolve."""

import importlib
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_only_the_library_is_installed():
    # A top-level `export` package would collide with any other of that name.
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["vqvae_tf*"]


def test_console_scripts_resolve_to_callables():
    scripts = PYPROJECT["project"]["scripts"]
    assert set(scripts) == {"vqvae-codec", "vqvae-export", "vqvae-sample"}
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_licence_file_matches_the_metadata():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "Apache License" in (REPO / "LICENSE").read_text().splitlines()[1]
