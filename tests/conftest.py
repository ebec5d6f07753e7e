"""Fixtures shared by the core test modules (pytest finds them here by name).

Support code that tests import lives beside this file, each module named for what it holds:

* ``trainers.py``: ``make_trainer``, the one trainer factory beside ``hooktrain.testing``, and
  model and weight helpers;
* ``wheel_venv.py``: sample plugins built into wheels and installed into fresh venvs.

``hooktrain.testing`` (the plugin author's test kit) adds ``run_training``, ``hook_recorder`` and
``no_network``.
"""

from __future__ import annotations

import pytest

from wheel_venv import SampleVenv, sample_venv

pytest_plugins = ["hooktrain.testing"]


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
