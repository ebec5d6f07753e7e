"""``hooktrain.plugin_host.settings.from_environment``: the settings of a plugin built by hand.

A plugin built in Python without settings (``ClearMLPlugin()``) never goes through hooktrain's
config resolution, so this helper is what makes its fields' environment variables and defaults
apply, with the same checks and errors as a ``[plugins.<name>]`` table.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from hooktrain.errors import ConfigError
from hooktrain.plugin_host.settings import from_environment, resolve

# Names no real environment sets, so the machine running the tests cannot change the results.
STEPS_ENV = "HOOKTRAIN_TEST_HELPER_STEPS"
OFFLINE_ENV = "HOOKTRAIN_TEST_HELPER_OFFLINE"


@dataclass
class DemoSettings:
    project: str = "demo"  # no environment variable: always the default here
    steps: int = field(default=10, metadata={"env": STEPS_ENV})
    offline: bool = field(default=False, metadata={"env": OFFLINE_ENV})


class DemoPlugin:
    """The constructor every bundled plugin uses."""

    settings = DemoSettings

    def __init__(self, settings: DemoSettings | None = None) -> None:
        self.config = settings or from_environment("demo", DemoSettings)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    monkeypatch.delenv(STEPS_ENV, raising=False)
    monkeypatch.delenv(OFFLINE_ENV, raising=False)


def test_defaults_without_environment():
    built = from_environment("demo", DemoSettings)
    assert type(built) is DemoSettings
    assert built == DemoSettings()


def test_environment_variables_are_honoured_and_parsed(monkeypatch):
    monkeypatch.setenv(STEPS_ENV, "7")
    monkeypatch.setenv(OFFLINE_ENV, "yes")
    built = from_environment("demo", DemoSettings)
    assert built == DemoSettings(project="demo", steps=7, offline=True)
    assert built == resolve("demo", DemoSettings, {}), "the same as an empty config table"


def test_an_empty_variable_means_unset(monkeypatch):
    monkeypatch.setenv(STEPS_ENV, "")
    assert from_environment("demo", DemoSettings).steps == 10


def test_a_bad_value_gives_the_error_resolve_gives(monkeypatch):
    monkeypatch.setenv(STEPS_ENV, "many")
    with pytest.raises(ConfigError) as helper:
        from_environment("demo", DemoSettings)
    with pytest.raises(ConfigError) as config:
        resolve("demo", DemoSettings, {})
    message = str(helper.value)
    assert message == str(config.value)
    # names the plugin, the setting and the variable it came from, and what was wrong
    for part in ("[plugins.demo] steps", f"${STEPS_ENV}", "must be int", "'many'"):
        assert part in message, (part, message)


def test_a_plugin_built_by_hand(monkeypatch):
    monkeypatch.setenv(STEPS_ENV, "3")
    assert DemoPlugin().config.steps == 3, "no settings: the environment applies"
    given = DemoSettings(steps=5)
    assert DemoPlugin(given).config is given, "given settings are kept, not re-resolved"


def test_importing_it_does_not_import_torch():
    # Plugin modules import the helper at the top; `hooktrain plugins` must stay torch-free.
    code = "import sys, hooktrain.plugin_host.settings; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False", result.stderr
