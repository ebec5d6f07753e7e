"""The plugin as a user gets it: a wheel installed into a fresh virtual environment."""

from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import json, sys
from hooktrain import Trainer
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args
import hooktrain_tensorboard
trainer = Trainer(TinyRegressor(), tiny_args(sys.argv[1], report_to="all"),
                  train_dataset=RegressionDataset(8))
print(json.dumps({"module": hooktrain_tensorboard.__file__,
                  "plugins": [type(p).__name__ for p in trainer.callbacks]}))
"""


@pytest.mark.timeout(300)
def test_wheel_in_a_fresh_virtualenv_is_discovered_and_listed(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(wheels), str(PLUGIN_ROOT)], check=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip())
    # torch, tensorboardX and hooktrain come from this environment, the plugin from the wheel.
    lines = [f"import site; site.addsitedir({p!r})" for p in site.getsitepackages()]
    (venv_site / "_parent_env.pth").write_text("\n".join(lines) + "\n")
    (wheel,) = wheels.glob("hooktrain_tensorboard-*.whl")
    # --ignore-installed: this environment may have the plugin already (tox installs it); the
    # copy under test must be the one from the wheel, inside the new environment.
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--ignore-installed", str(wheel)], check=True)

    result = subprocess.run([str(python), "-c", CHECK, str(tmp_path / "out")],
                            check=True, capture_output=True, text=True)
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["module"].startswith(str(venv_site))
    assert found["plugins"][-2] == "TensorBoardPlugin"

    listing = subprocess.run([str(python), "-m", "hooktrain.cli", "plugins", "--json"],
                             check=True, capture_output=True, text=True)
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["tensorboard"]["status"] == "enabled"
    assert rows["tensorboard"]["distribution"] == "hooktrain-tensorboard"
    assert "on_log" in rows["tensorboard"]["hooks"]
