"""Install plugin distributions from ``plugins/`` with the hooktrain-* plugins they build on.

    python scripts/install_plugins.py mlflow          # plugins/mlflow[test]
    python scripts/install_plugins.py dagshub         # plugins/dagshub[test] and plugins/mlflow
    python scripts/install_plugins.py --all           # every plugin under plugins/ (no extras)

tox's environments call this, so `tox.ini` names each plugin once (in its env_list): a plugin
that requires another of this repository's plugins (hooktrain-dagshub requires hooktrain-mlflow,
which is not on an index) gets it from its folder here. One pip command installs them together.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def local_requirements(name: str) -> list[str]:
    """The plugin's ``hooktrain-*`` dependencies that have a folder under ``plugins/``."""
    project = tomllib.loads((PLUGINS / name / "pyproject.toml").read_text())["project"]
    found = []
    for requirement in project.get("dependencies", []):
        match = re.match(r"hooktrain-([A-Za-z0-9_-]+)", requirement)
        if match and (PLUGINS / match.group(1).replace("-", "_")).is_dir():
            found.append(match.group(1).replace("-", "_"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="plugin folder names under plugins/")
    parser.add_argument("--all", action="store_true", help="every plugin under plugins/")
    options = parser.parse_args(argv)
    names = sorted(p.parent.name for p in PLUGINS.glob("*/pyproject.toml")) if options.all \
        else options.names
    unknown = [n for n in names if not (PLUGINS / n / "pyproject.toml").is_file()]
    if unknown or not names:
        known = ", ".join(sorted(p.parent.name for p in PLUGINS.glob("*/pyproject.toml")))
        parser.error(f"unknown plugin {', '.join(unknown) or '(none given)'}; known: {known}")
    # each plugin's own suite needs its test extras; --all only installs the plugins
    targets = [str(PLUGINS / n) if options.all else f"{PLUGINS / n}[test]" for n in names]
    for name in names:
        targets += [str(PLUGINS / dep) for dep in local_requirements(name) if dep not in names]
    return subprocess.call([*installer(), "--quiet", *targets])


def installer() -> list[str]:
    """uv where the environment has it (tox-uv's environments have no pip), else pip."""
    uv = Path(sys.executable).with_name("uv")
    uv_command = str(uv) if uv.exists() else shutil.which("uv")
    if uv_command:
        return [uv_command, "pip", "install", "--python", sys.executable]
    return [sys.executable, "-m", "pip", "install"]


if __name__ == "__main__":
    sys.exit(main())
