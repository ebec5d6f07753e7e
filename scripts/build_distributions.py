"""Build the sdist and wheel of every distribution of this repository and check them for an index.

    python scripts/build_distributions.py --outdir dist        # hooktrain and the 14 plugins
    python scripts/build_distributions.py --outdir dist mlflow # hooktrain-mlflow only

`tox -e packaging` runs it. For each distribution (`pyproject.toml` at the root: hooktrain;
`plugins/<name>/pyproject.toml`: hooktrain-<name>) it

* builds the sdist, then the wheel from that sdist (`python -m build`, isolated, so the
  `build-system` requirements are what a user's pip would use), into `<outdir>/<name>/`;
* checks the wheel ships `py.typed` beside the package and LICENSE in its metadata, and the
  sdist holds README.md, LICENSE and pyproject.toml (and `py.typed`);
* checks every classifier is a known trove classifier (an index refuses an upload with an
  unknown one, and `twine check` does not look) and that `Typing :: Typed` is among them;
* runs `twine check --strict` on both files (the README renders, the metadata is complete).

One line per distribution, four built at a time; a failure names the distribution, and the run
exits 1 once all are done.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class DistributionError(Exception):
    """What is wrong with one distribution's build or files."""


def distributions(names: list[str]) -> dict[str, Path]:
    """``{short name: source folder}``: ``hooktrain`` (the root) first, then the plugins."""
    found = {"hooktrain": ROOT}
    found.update((p.parent.name, p.parent) for p in sorted(ROOT.glob("plugins/*/pyproject.toml")))
    unknown = sorted(set(names) - set(found))
    if unknown:
        raise SystemExit(f"unknown distribution {', '.join(unknown)}; choose from "
                         f"{', '.join(found)}")
    return {name: path for name, path in found.items() if not names or name in names}


def package_name(source: Path) -> str:
    """The import package a distribution ships: ``hooktrain`` or ``hooktrain_<name>``."""
    return "hooktrain" if source == ROOT else f"hooktrain_{source.name}"


def run(command: list[str], what: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DistributionError(f"{what} failed (exit {proc.returncode}):\n"
                                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")


def build(source: Path, outdir: Path) -> tuple[Path, Path]:
    shutil.rmtree(outdir, ignore_errors=True)
    command = [sys.executable, "-m", "build", "--outdir", str(outdir), str(source)]
    if shutil.which("uv"):
        command[3:3] = ["--installer", "uv"]  # isolated build environments in a second, not ten
    run(command, "python -m build")
    (sdist,), (wheel,) = list(outdir.glob("*.tar.gz")), list(outdir.glob("*.whl"))
    return sdist, wheel


def check_wheel(wheel: Path, package: str) -> list[str]:
    """The wheel's classifiers, after checking it ships ``<package>/py.typed``."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        if f"{package}/py.typed" not in names:
            raise DistributionError(f"{wheel.name} lacks {package}/py.typed: list it in "
                                    "[tool.setuptools.package-data]")
        if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
            raise DistributionError(f"{wheel.name} lacks the LICENSE file: copy the repository's "
                                    "LICENSE beside the distribution's pyproject.toml")
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = HeaderParser().parsestr(archive.read(metadata).decode())
    return headers.get_all("Classifier") or []


def check_sdist(sdist: Path, package: str) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    wanted = {"README.md", "pyproject.toml", "LICENSE"}
    missing = sorted(wanted - names)
    if not any(name.endswith(f"{package}/py.typed") for name in names):
        missing.append(f"{package}/py.typed")
    if missing:
        raise DistributionError(f"{sdist.name} lacks {', '.join(missing)}")


def check_classifiers(classifiers: list[str]) -> None:
    try:
        from trove_classifiers import classifiers as known
    except ImportError:  # outside `tox -e packaging`: checked by the index on upload
        known = set(classifiers)
    unknown = [c for c in classifiers if c not in known]
    if unknown:
        raise DistributionError(f"unknown trove classifiers {unknown}: see https://pypi.org/classifiers/")
    if "Typing :: Typed" not in classifiers:
        raise DistributionError("the classifier 'Typing :: Typed' is missing (it ships py.typed)")


def check(name: str, source: Path, outdir: Path) -> str:
    started = time.perf_counter()
    sdist, wheel = build(source, outdir / name)
    package = package_name(source)
    check_sdist(sdist, package)
    check_classifiers(check_wheel(wheel, package))
    run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
        "twine check --strict")
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    return (f"{project['name']} {project['version']}: {sdist.name} + {wheel.name}, py.typed, "
            f"README, twine check ok ({time.perf_counter() - started:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="hooktrain, or plugin folder names (default all)")
    parser.add_argument("--outdir", type=Path, default=ROOT / "dist")
    options = parser.parse_args(argv)
    selected = distributions(options.names)
    outdir = options.outdir.resolve()
    failed = 0
    # Four at a time: a build mostly waits on subprocesses (uv, setuptools, twine start-up);
    # each distribution's line is printed in order once it is done.
    with ThreadPoolExecutor(max_workers=4) as pool:
        checks = {name: pool.submit(check, name, source, outdir)
                  for name, source in selected.items()}
        for name, done in checks.items():
            try:
                print(done.result(), flush=True)
            except DistributionError as error:
                failed += 1
                print(f"FAILED {name} ({selected[name].relative_to(ROOT)}): {error}",
                      file=sys.stderr, flush=True)
    if failed:
        return 1
    print(f"{len(selected)} distributions built and checked into {options.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
