"""Run one plugin's suite for a tox environment named after it.

    python scripts/run_plugin_tests.py wandb           # pytest plugins/wandb/tests
    python scripts/run_plugin_tests.py wandb-oldest    # the same folder (the oldest versions)
    python scripts/run_plugin_tests.py wandb -- plugins/wandb/tests/test_wandb.py -x

tox.ini's plugin environments are ``NAME`` and ``NAME-oldest``; tox has no way to take the
suffix off ``{envname}``, so this maps the environment's name to ``plugins/NAME/tests``. Paths or
options after ``--`` (tox's ``{posargs}``) replace that folder, as they did in tox.ini before.
"""

from __future__ import annotations

import subprocess
import sys

from install_plugins import PLUGINS, plugin_of_env

#: quiet, no .pytest_cache in the plugin folders, the five slowest tests named
PYTEST_OPTIONS = ["-q", "-p", "no:cacheprovider", "--durations=5"]


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        sys.exit(f"usage: {sys.argv[0]} ENV_NAME [-- PYTEST_ARGS...]  (ENV_NAME: wandb, "
                 "wandb-oldest, ...)")
    name, _ = plugin_of_env(argv[0])
    tests = PLUGINS / name / "tests"
    if not tests.is_dir():
        sys.exit(f"no plugins/{name}/tests for tox environment {argv[0]!r}")
    chosen = argv[2:] if argv[1:2] == ["--"] else argv[1:]
    targets = chosen or [str(tests.relative_to(PLUGINS.parent))]
    # from the repository's root, as tox runs it: relative paths given are relative to it
    return subprocess.call([sys.executable, "-m", "pytest", *targets, *PYTEST_OPTIONS],
                           cwd=PLUGINS.parent)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
