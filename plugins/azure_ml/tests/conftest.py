"""azureml-core outside Azure ML for the whole session: no AZUREML_* job variables, so
``Run.get_context()`` is the offline run, which prints every call; no network beyond 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def outside_azure_ml() -> Iterator[None]:
    """A developer's shell or a CI runner inside Azure ML may carry a job's variables."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("AZUREML_"):
                mp.delenv(name)
        yield


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # The plugin announces the offline fallback once per process; each test sees it afresh.
    import hooktrain_azure_ml

    monkeypatch.setattr(hooktrain_azure_ml, "_said_offline", False)


@pytest.fixture(autouse=True)
def network_attempts(no_network: list[str]) -> list[str]:
    """No network beyond 127.0.0.1 (hooktrain.testing's guard; attempts fail the test)."""
    return no_network
