"""The dashboard's third-party assets (uPlot; Swagger UI for /v1/docs), from npm as locked in
web/package-lock.json, copied into the package at daemon/fleetctl/api/static/vendor. Run by the
wheel's build hook (hatch_build.py) when they are missing, and by `make static`:

    python3 web/assets.py          # npm ci, then copy (always)

Standard library only: it runs inside pip's isolated build environment. No install scripts
(`--ignore-scripts`): the files are used as published, and swagger-ui-dist's only script is a
usage-analytics ping."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

VENDOR = Path("daemon/fleetctl/api/static/vendor")
# (package in web/node_modules, file in it) -> copied into VENDOR under its own name.
FILES = (
    ("uplot", "dist/uPlot.iife.min.js"),
    ("uplot", "dist/uPlot.min.css"),
    ("swagger-ui-dist", "swagger-ui-bundle.js"),
    ("swagger-ui-dist", "swagger-ui.css"),
)


class AssetsError(RuntimeError):
    """The assets cannot be made here (no npm, or npm failed); the text says what to do."""


def missing(root: Path) -> list[str]:
    """The asset files not yet in the package under `root`."""
    return [Path(f).name for _, f in FILES if not (root / VENDOR / Path(f).name).is_file()]


def build(root: Path) -> list[Path]:
    """`npm ci` in web/ from its lock, then copy the files into the package; their paths."""
    web = root / "web"
    npm = shutil.which("npm")
    if npm is None:
        raise AssetsError(
            "npm is needed to build the dashboard's assets (uPlot, Swagger UI) from "
            "web/package-lock.json and is not installed: apt-get install -y npm "
            "(or build from a tree where `make static` has run)"
        )
    command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    result = subprocess.run(command, cwd=web, check=False)
    if result.returncode != 0:
        raise AssetsError(f"`npm ci` in {web} failed (exit {result.returncode}), see above")
    target = root / VENDOR
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for package, name in FILES:
        source = web / "node_modules" / package / name
        if not source.is_file():
            raise AssetsError(f"{source} is not in the npm package: web/package.json changed?")
        # A fresh mtime (not the tarball's): make compares it with the lock.
        copied.append(Path(shutil.copyfile(source, target / Path(name).name)))
    return copied


def main() -> int:
    """`make static`: build the assets of the tree this file is in."""
    root = Path(__file__).resolve().parents[1]
    try:
        for path in build(root):
            print(f"vendored {path.relative_to(root)}")
    except AssetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
