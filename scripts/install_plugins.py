"""Install plugin distributions from ``plugins/`` with the hooktrain-* plugins they build on.

    python scripts/install_plugins.py mlflow          # plugins/mlflow[test]
    python scripts/install_plugins.py dagshub         # plugins/dagshub[test] and plugins/mlflow
    python scripts/install_plugins.py --all           # every plugin under plugins/ (no extras)
    python scripts/install_plugins.py --oldest wandb  # then wandb==<the lower bound it declares>
    python scripts/install_plugins.py wandb-oldest    # the same, as tox's wandb-oldest calls it

tox's environments call this, so `tox.ini` names each plugin once (in its env_list): a plugin
that requires another of this repository's plugins (hooktrain-dagshub requires hooktrain-mlflow,
which is not on an index) gets it from its folder here. One pip command installs them together.

With --oldest (or a name ending in ``-oldest``), a second command then installs every library
the named plugins declare as ``LIB>=X`` at exactly ``X``: the oldest release each plugin says it
supports, so its suite tests that claim. The versions live in the plugins' pyproject.toml files
only. A plugin it builds on keeps its newest libraries (dagshub-oldest: dagshub at its lower
bound, MLflow the newest); that plugin's own -oldest environment tests its bounds.
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
OLDEST_SUFFIX = "-oldest"
#: ``LIB>=X`` (maybe with an extra and further clauses such as ``,<Y``): the name and ``X``
LOWER_BOUND = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)")


def local_requirements(name: str) -> list[str]:
    """The plugin's ``hooktrain-*`` dependencies that have a folder under ``plugins/``."""
    project = tomllib.loads((PLUGINS / name / "pyproject.toml").read_text())["project"]
    found = []
    for requirement in project.get("dependencies", []):
        match = re.match(r"hooktrain-([A-Za-z0-9_-]+)", requirement)
        if match and (PLUGINS / match.group(1).replace("-", "_")).is_dir():
            found.append(match.group(1).replace("-", "_"))
    return found


def oldest_requirements(name: str) -> list[str]:
    """``LIB==X`` for each ``LIB>=X`` the plugin declares, hooktrain's own distributions aside."""
    project = tomllib.loads((PLUGINS / name / "pyproject.toml").read_text())["project"]
    pins = []
    for requirement in project.get("dependencies", []):
        match = LOWER_BOUND.match(requirement)
        if match and not match.group(1).lower().startswith("hooktrain"):
            pins.append(f"{match.group(1)}=={match.group(2)}")
    return pins


def plugin_of_env(env_name: str) -> tuple[str, bool]:
    """A tox environment's plugin folder and whether it tests the oldest versions:
    ``wandb`` is ``("wandb", False)``, ``wandb-oldest`` is ``("wandb", True)``."""
    if env_name.endswith(OLDEST_SUFFIX):
        return env_name.removesuffix(OLDEST_SUFFIX), True
    return env_name, False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*",
                        help=f"plugin folder names under plugins/ (NAME{OLDEST_SUFFIX}: --oldest)")
    parser.add_argument("--all", action="store_true", help="every plugin under plugins/")
    parser.add_argument("--oldest", action="store_true",
                        help="then install each LIB>=X the plugins declare at exactly X")
    options = parser.parse_args(argv)
    names = sorted(p.parent.name for p in PLUGINS.glob("*/pyproject.toml")) if options.all \
        else [plugin_of_env(n)[0] for n in options.names]
    oldest = options.oldest or any(plugin_of_env(n)[1] for n in options.names)
    unknown = [n for n in names if not (PLUGINS / n / "pyproject.toml").is_file()]
    if unknown or not names:
        known = ", ".join(sorted(p.parent.name for p in PLUGINS.glob("*/pyproject.toml")))
        parser.error(f"unknown plugin {', '.join(unknown) or '(none given)'}; known: {known}")
    # each plugin's own suite needs its test extras; --all only installs the plugins
    targets = [str(PLUGINS / n) if options.all else f"{PLUGINS / n}[test]" for n in names]
    local = [dep for name in names for dep in local_requirements(name) if dep not in names]
    targets += [str(PLUGINS / dep) for dep in dict.fromkeys(local)]
    code = subprocess.call([*installer(), "--quiet", *targets])
    if code or not oldest:
        return code
    # A second command, so the resolver first proves the plugins install as declared; the
    # pins then move only the libraries with a lower bound (and what those require).
    pins = sorted({pin for name in names for pin in oldest_requirements(name)})
    if not pins:
        print(f"{', '.join(names)}: no LIB>=X dependency, nothing older to install")
        return 0
    print("oldest supported versions:", " ".join(pins))
    return subprocess.call([*installer(), "--quiet", *pins])


def installer() -> list[str]:
    """uv where the environment has it (tox-uv's environments have no pip), else pip."""
    uv = Path(sys.executable).with_name("uv")
    uv_command = str(uv) if uv.exists() else shutil.which("uv")
    if uv_command:
        return [uv_command, "pip", "install", "--python", sys.executable]
    return [sys.executable, "-m", "pip", "install"]


if __name__ == "__main__":
    sys.exit(main())
