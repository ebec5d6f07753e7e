"""Sample plugins built into wheels and installed into fresh virtual environments: real entry
points for the discovery, ``hooktrain`` command and scaffold tests.

Nothing is installed into the environment running the suite (other tests use ``report_to="all"``
and would pick the samples up). Instead:

* the sample distributions under ``tests/sample_plugins/`` are copied to a temporary folder and
  built into wheels with ``pip wheel --no-deps --no-build-isolation``;
* ``python -m venv`` makes a fresh environment, and a ``.pth`` file there runs
  ``site.addsitedir(...)`` for each site-packages folder of the running interpreter, so the venv
  sees torch, pluggy, pytest and hooktrain (editable install included) without reinstalling them.
  This also works when the suite runs inside a tox virtualenv whose base interpreter has no torch;
* the wheels are installed there with ``<venv>/bin/python -m pip install --no-deps --no-index``;
* tests run small scripts with the venv's interpreter and read one ``RESULT {json}`` line.

Venvs and wheels are built once per session (see :func:`sample_venv`); the ``clean_venv``,
``full_venv`` and ``dup_venv`` fixtures in ``conftest.py`` hand them to tests.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hooktrain

SAMPLE_SOURCES = Path(__file__).parent / "sample_plugins"

#: entry-point name -> distribution folder under tests/sample_plugins
DISTRIBUTIONS = {
    "alpha": "hooktrain-alpha",
    "beta": "hooktrain-beta",
    "omega": "aaa-omega",
    "broken": "hooktrain-broken",
    "typo": "hooktrain-typo",
    "alpha-fork": "hooktrain-alpha-fork",
}

#: The venvs the tests use: which sample distributions each holds.
VENVS: dict[str, tuple[str, ...]] = {
    "clean": ("alpha", "beta", "omega"),
    "full": ("alpha", "beta", "omega", "broken", "typo"),
    "dup": ("alpha", "alpha-fork"),
}

#: The well-behaved samples: what the clean venv holds.
SAMPLES = VENVS["clean"]

#: Written into every venv as ``sample_driver.py``: what the test scripts share.
DRIVER = '''\
"""Helpers for the scripts the discovery tests run inside a sample venv."""

import json
import logging
import os
import sys


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append({"level": record.levelname, "message": record.getMessage()})


LOG = Collect()
logging.getLogger("hooktrain").addHandler(LOG)


def messages(level="WARNING"):
    return [r["message"] for r in LOG.records if r["level"] == level]


def reset_log():
    LOG.records.clear()


def make_trainer(callbacks=(), args=None, **overrides):
    """A Trainer on the tiny regression task; report_to defaults to "all"."""
    from hooktrain import Trainer
    from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args

    if args is None:
        overrides.setdefault("report_to", "all")
        args = tiny_args(os.environ.get("SAMPLE_OUTPUT", "out"), **overrides)
    return Trainer(model=TinyRegressor(), args=args, train_dataset=RegressionDataset(16),
                   callbacks=list(callbacks))


def entry_points(trainer):
    """Names of the entry-point plugins of ``trainer``, in dispatch order."""
    from hooktrain.plugin_host import Band

    return [r.name for r in trainer.plugin_manager.records() if r.band == Band.ENTRY_POINT]


def layout(trainer):
    """``[band, name or class]`` for every registered plugin, in dispatch order."""
    from hooktrain.plugin_host import Band

    rows = []
    for record in trainer.plugin_manager.records():
        label = record.name if record.band == Band.ENTRY_POINT else type(record.plugin).__name__
        rows.append([record.band.name, label])
    return rows


def plugin(trainer, name):
    for record in trainer.plugin_manager.records():
        if record.name == name:
            return record.plugin
    raise LookupError(name)


def trace():
    path = os.environ.get("SAMPLE_TRACE")
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\\n") for line in handle]


def clear_trace():
    path = os.environ.get("SAMPLE_TRACE")
    if path and os.path.exists(path):
        os.remove(path)


def attempt(function):
    """Run ``function``; ``None`` if it returns, else the error's type names and message."""
    try:
        function()
    except Exception as exc:  # noqa: BLE001
        return {"types": [c.__name__ for c in type(exc).__mro__], "message": str(exc)}
    return None


def imported(module):
    return module in sys.modules


def emit(**values):
    print("RESULT " + json.dumps(values, default=str), flush=True)
'''


def parent_site_dirs() -> list[str]:
    """Folders the venv must see: this interpreter's site-packages and hooktrain's own root."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    # hooktrain is usually an editable install (found through a .pth above); if the suite runs
    # with PYTHONPATH instead, its source root still has to be visible.
    dirs.append(str(Path(hooktrain.__file__).resolve().parent.parent))
    seen: list[str] = []
    for entry in dirs:
        if entry not in seen:
            seen.append(entry)
    return seen


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without anything that steers plugins, plus ``extra``."""
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("HOOKTRAIN_", "ALPHA_", "SAMPLE_", "PYTEST_"))
        and key not in ("PYTHONPATH", "RANK", "WORLD_SIZE", "LOCAL_RANK", "PYTHONHOME")
    }
    env.update(OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("env", clean_env())
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, command))} failed ({proc.returncode}):\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return proc


def create_venv(path: Path) -> Path:
    """A fresh venv at ``path`` that sees this interpreter's packages; returns its python."""
    has_pip = importlib.util.find_spec("pip") is not None
    # pip comes from the parent's site-packages through the .pth file, which saves the seconds
    # ensurepip costs; without pip here, the venv gets its own.
    _run([sys.executable, "-m", "venv", *(["--without-pip"] if has_pip else []), str(path)])
    python = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    site_packages = Path(purelib.stdout.strip())
    lines = [f"import site; site.addsitedir(r{d!r})" for d in parent_site_dirs()]
    (site_packages / "_hooktrain_parent_site.pth").write_text("\n".join(lines) + "\n")
    (site_packages / "sample_driver.py").write_text(DRIVER)
    return python


def build_wheels(sources: list[Path], wheel_dir: Path, work_dir: Path) -> dict[str, Path]:
    """Build each source tree (copied first, so the repository stays clean); name -> wheel."""
    copies = []
    for source in sources:
        copy = work_dir / source.name
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                                    "__pycache__"))
        copies.append(str(copy))
    wheel_dir.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "--disable-pip-version-check", "-w", str(wheel_dir), *copies])
    wheels = {}
    for source in sources:
        prefix = source.name.replace("-", "_") + "-"
        found = [w for w in wheel_dir.glob("*.whl") if w.name.startswith(prefix)]
        if len(found) != 1:
            raise RuntimeError(f"expected one wheel for {source.name}, found {found}")
        wheels[source.name] = found[0]
    return wheels


def install(python: Path, wheels: list[Path]) -> None:
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", *map(str, wheels)])


@dataclass
class SampleVenv:
    """A venv holding some sample plugins."""

    root: Path
    python: Path
    plugins: tuple[str, ...]

    def run(self, code: str, *, cwd: Path, timeout: float = 180,
            **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``code`` (dedented) with the venv's python; ``env`` adds variables."""
        script = cwd / f"script_{next(_SCRIPTS)}.py"
        script.write_text(textwrap.dedent(code))
        environment = clean_env(SAMPLE_OUTPUT=str(cwd / "out"), **env)
        return subprocess.run([str(self.python), str(script)], cwd=cwd, env=environment,
                              capture_output=True, text=True, timeout=timeout)

    def result(self, code: str, *, cwd: Path, **env: str) -> dict[str, Any]:
        """Run ``code`` and return what its ``emit(...)`` printed; fail loudly otherwise."""
        return result_of(self.run(code, cwd=cwd, **env))

    def cli(self, *argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        """``python -m hooktrain.cli ARGV`` in the venv (hooktrain has no console script there)."""
        return subprocess.run([str(self.python), "-m", "hooktrain.cli", *argv], cwd=cwd,
                              env=clean_env(**env), capture_output=True, text=True, timeout=180)


def names_with(messages: list[str], *needles: str) -> list[str]:
    """The messages (from a venv script's log) that contain every one of ``needles``."""
    return [m for m in messages if all(n in m for n in needles)]


def result_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"script failed (exit {proc.returncode})\n--- stdout\n{proc.stdout}\n--- stderr\n"
        f"{proc.stderr}"
    )
    return json.loads(lines[-1][len("RESULT "):])


_CACHE: dict[str, Any] = {}
_SCRIPTS = itertools.count()


def sample_venv(tmp_path_factory: Any, kind: str) -> SampleVenv:
    """The session's venv ``kind`` (see :data:`VENVS`), built on first use."""
    if kind in _CACHE:
        return _CACHE[kind]
    if "wheels" not in _CACHE:
        base = tmp_path_factory.mktemp("sample_wheels")
        sources = [SAMPLE_SOURCES / folder for folder in DISTRIBUTIONS.values()]
        _CACHE["wheels"] = build_wheels(sources, base / "wheels", base / "src")
    wheels = _CACHE["wheels"]
    root = tmp_path_factory.mktemp(f"venv_{kind}") / "venv"
    python = create_venv(root)
    install(python, [wheels[DISTRIBUTIONS[name]] for name in VENVS[kind]])
    venv = _CACHE[kind] = SampleVenv(root, python, VENVS[kind])
    return venv
