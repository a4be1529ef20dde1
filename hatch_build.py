"""The wheel's build hook: the dashboard's assets (web/assets.py) go into the package when they
are not there yet, so `pip install .` from a clean clone (and the Docker image) serves a page
that draws. An sdist carries them too, so a wheel built from it needs no npm. Editable installs
(`make venv`) use the tree's own files, made by `make static`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def _assets_module(root: Path) -> Any:
    # Loaded by path: the hook runs in pip's isolated environment, the tree is not importable.
    spec = importlib.util.spec_from_file_location("fleet_web_assets", root / "web" / "assets.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class AssetsHook(BuildHookInterface):
    """Makes the vendored assets before a wheel or sdist is built, when they are missing."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Build the assets if any is missing (not for editable wheels)."""
        del build_data  # the artifacts pattern in pyproject.toml ships them
        if version == "editable":
            return
        root = Path(self.root)
        assets = _assets_module(root)
        if not assets.missing(root):
            return
        print("building the dashboard's assets with npm (web/package-lock.json)", file=sys.stderr)
        try:
            assets.build(root)
        except assets.AssetsError as exc:
            # One line that says what to do, not a traceback through pip and hatchling.
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
