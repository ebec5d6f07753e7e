"""Fixtures shared by the core test modules (pytest finds them here by name).

Support code that tests import lives beside this file, each module named for what it holds:

* ``trainers.py``: ``make_trainer``, the one trainer factory beside ``hooktrain.testing``, and
  model and weight helpers;
* ``checkpoint_runs.py``: runs that leave checkpoints (checkpoint and resume tests);
* ``hook_trace.py``: the golden hook-order traces' format and helpers;
* ``wheel_venv.py``: sample plugins built into wheels and installed into fresh venvs.

``run_training``, ``hook_recorder`` and ``no_network`` come from the plugin author's test kit,
which pytest loads through hooktrain's ``pytest11`` entry point (``hooktrain.pytest_plugin``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from checkpoint_runs import train
from wheel_venv import SampleVenv, sample_venv


@pytest.fixture(scope="session")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> SampleVenv:
    """A venv with hooktrain-alpha, hooktrain-beta and aaa-omega installed."""
    return sample_venv(tmp_path_factory, "clean")


@pytest.fixture(scope="session")
def full_venv(tmp_path_factory: pytest.TempPathFactory) -> SampleVenv:
    """The clean venv's plugins plus hooktrain-broken and hooktrain-typo."""
    return sample_venv(tmp_path_factory, "full")


@pytest.fixture(scope="session")
def dup_venv(tmp_path_factory: pytest.TempPathFactory) -> SampleVenv:
    """hooktrain-alpha and hooktrain-alpha-fork, both with an entry point named ``alpha``."""
    return sample_venv(tmp_path_factory, "dup")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """One finished checkpointing run (``checkpoint_runs.train``): a checkpoint every 2 steps
    (2, 4, 6, 8) and evaluation. Module-scoped: each test module that uses it trains its own copy
    once; tests that change it work on a ``checkpoint_runs.copy_run``."""
    out = tmp_path_factory.mktemp("finished") / "run"
    trainer = train(out, eval_strategy="steps", eval_steps=2)
    return out, trainer
