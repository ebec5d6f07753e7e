"""The test kit's fixtures reach every pytest run through hooktrain's ``pytest11`` entry point.

Each case runs pytest in a subprocess, as a plugin author's suite runs: pytest itself finds the
entry point among the installed distributions, with no ``conftest.py`` line.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

USES_THE_FIXTURES = """
    import sys

    def test_plugin_loaded_without_torch(request):
        assert request.config.pluginmanager.get_plugin("hooktrain").__name__ == (
            "hooktrain.pytest_plugin")
        assert "torch" not in sys.modules  # the entry point costs no torch import

    def test_no_network(no_network):
        assert no_network == []

    def test_run_training(run_training, hook_recorder):
        run = run_training(plugins=[hook_recorder], num_train_epochs=1)
        assert run.recorder.events.count("on_train_end") == 1
        assert hook_recorder.events.count("on_train_end") == 1
"""

USES_ONE_FIXTURE = """
    def test_hook_recorder(hook_recorder):
        assert hook_recorder.calls == []
"""


@pytest.fixture(autouse=True)
def plugin_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs below load entry points, whatever the calling shell says."""
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)


def test_the_entry_point_names_the_light_module() -> None:
    (entry,) = [e for e in importlib.metadata.entry_points(group="pytest11")
                if e.name == "hooktrain"]
    assert entry.value == "hooktrain.pytest_plugin"
    probe = "import sys, hooktrain.pytest_plugin; print('torch' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              check=True)
    assert imported.stdout.strip() == "False"


def test_the_fixtures_need_no_conftest_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_THE_FIXTURES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_no_hooktrain_opts_out(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_ONE_FIXTURE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:hooktrain")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'hook_recorder' not found*"])


@pytest.mark.parametrize("options", [(), ("-p", "no:hooktrain")], ids=["entry point", "opted out"])
def test_the_old_conftest_line_still_works(pytester: pytest.Pytester, options: tuple[str, ...]):
    """``pytest_plugins = ["hooktrain.testing"]`` beside the entry point registers no module
    twice (no error); with the entry point off it is how a directory opts back in."""
    pytester.makeconftest('pytest_plugins = ["hooktrain.testing"]')
    pytester.makepyfile(USES_ONE_FIXTURE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *options)
    result.assert_outcomes(passed=1)
