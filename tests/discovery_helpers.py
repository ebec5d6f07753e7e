"""What the entry-point discovery tests (``test_discovery*.py``) share: the sample names, the
clean sample venv and a message filter.

``clean_venv`` is a fixture: test modules import it as ``from discovery_helpers import clean_venv
as clean_venv``, which pytest finds by name and linters read as a deliberate re-export.
"""

from __future__ import annotations

import pytest

from venv_helpers import sample_venv

SAMPLES = ("alpha", "beta", "omega")


@pytest.fixture(scope="session")
def clean_venv(tmp_path_factory):
    """A venv with hooktrain-alpha, hooktrain-beta and aaa-omega installed."""
    return sample_venv(tmp_path_factory, "clean")


def names_with(messages: list[str], *needles: str) -> list[str]:
    return [m for m in messages if all(n in m for n in needles)]
