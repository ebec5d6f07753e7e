"""Blocking entry-point plugins by name, before import (issue 5; docs/architecture.md, "Selecting
plugins" and "Configuration"):
``HOOKTRAIN_DISABLE_PLUGIN_AUTOLOAD``, ``HOOKTRAIN_DISABLE_PLUGINS``, ``disable_plugins``.

Real entry points in a fresh venv (see ``wheel_venv.py`` and ``test_discovery.py``); samples
``alpha`` (class), ``beta`` (module), ``omega`` (instance, distribution ``aaa-omega``).
"""

from __future__ import annotations

import pytest
from wheel_venv import SAMPLES, names_with

# ---- blocking by name, before import ---------------------------------------------------------

DISABLE_SCRIPT = """
from pathlib import Path
from sample_driver import *
from hooktrain import TrainingArguments

result = {}

os.environ["HOOKTRAIN_DISABLE_PLUGIN_AUTOLOAD"] = "1"
reset_log()
result["autoload_all"] = entry_points(make_trainer())
result["autoload_imported"] = [m for m in ("hooktrain_alpha", "hooktrain_beta", "aaa_omega")
                               if imported(m)]
result["autoload_named"] = entry_points(make_trainer(report_to=["beta"]))
result["autoload_warnings"] = messages()
del os.environ["HOOKTRAIN_DISABLE_PLUGIN_AUTOLOAD"]

os.environ["HOOKTRAIN_DISABLE_PLUGINS"] = "alpha, omega"
reset_log()
result["env_all"] = entry_points(make_trainer())
result["env_all_warnings"] = messages()
reset_log()
result["env_named"] = entry_points(make_trainer(report_to=["alpha", "beta"]))
result["env_named_warnings"] = messages()
del os.environ["HOOKTRAIN_DISABLE_PLUGINS"]

reset_log()
result["arg_all"] = entry_points(make_trainer(disable_plugins=["alpha"]))
result["arg_all_warnings"] = messages()
reset_log()
result["arg_named"] = entry_points(make_trainer(report_to=["alpha"], disable_plugins=["alpha"]))
result["arg_named_warnings"] = messages()

Path("c.toml").write_text(
    '[training]\\noutput_dir = "out"\\nreport_to = ["alpha", "beta"]\\n'
    'disable_plugins = ["alpha"]\\nsave_strategy = "no"\\n'
)
reset_log()
result["toml_named"] = entry_points(make_trainer(args=TrainingArguments.from_toml("c.toml")))
result["toml_named_warnings"] = messages()

result["alpha_imported"] = imported("hooktrain_alpha")
result["trace"] = trace()

# a shared config with a table for the disabled plugin (alpha is still not imported here)
clear_trace()
Path("t.toml").write_text(
    '[training]\\noutput_dir = "out"\\nsave_strategy = "no"\\n'
    'disable_plugins = ["alpha"]\\n\\n[plugins.alpha]\\nlevel = 2\\n'
)
result["table_load"] = attempt(lambda: TrainingArguments.from_toml("t.toml"))
if result["table_load"] is None:
    result["table_trainer"] = attempt(lambda: result.setdefault(
        "table_entry_points",
        entry_points(make_trainer(args=TrainingArguments.from_toml("t.toml")))))
result["table_alpha_imported"] = imported("hooktrain_alpha")
result["table_trace"] = trace()

# from here on alpha is loaded
reset_log()
result["unknown_arg"] = entry_points(make_trainer(disable_plugins=["nosuch_a"]))
result["unknown_arg_warnings"] = messages()
os.environ["HOOKTRAIN_DISABLE_PLUGINS"] = "nosuch_b"
reset_log()
result["unknown_env"] = entry_points(make_trainer(report_to=["beta"]))
result["unknown_env_warnings"] = messages()
del os.environ["HOOKTRAIN_DISABLE_PLUGINS"]
emit(**result)
"""


@pytest.fixture(scope="module")
def disable_run(clean_venv, tmp_path_factory):
    """One process, nothing imported beforehand: alpha is disabled in every check that loads."""
    tmp_path = tmp_path_factory.mktemp("disable")
    return clean_venv.result(DISABLE_SCRIPT, cwd=tmp_path, SAMPLE_TRACE=str(tmp_path / "trace"))


def test_autoload_off_loads_nothing_under_all_but_named_plugins_load(disable_run):
    r = disable_run
    assert r["autoload_all"] == []
    assert r["autoload_imported"] == []
    assert r["autoload_named"] == ["beta"]
    assert r["autoload_warnings"] == []


def test_env_disable_blocks_by_name(disable_run):
    r = disable_run
    assert "alpha" not in r["env_all"] and "omega" not in r["env_all"]
    assert "beta" in r["env_all"]
    assert names_with(r["env_all_warnings"], "'alpha'") == []  # silent under "all"
    assert r["env_named"] == ["beta"]


def test_disabled_and_named_is_one_warning_saying_where_the_disable_came_from(disable_run):
    r = disable_run
    env = names_with(r["env_named_warnings"], "'alpha'")
    assert len(env) == 1, r["env_named_warnings"]
    assert "HOOKTRAIN_DISABLE_PLUGINS" in env[0]
    arg = names_with(r["arg_named_warnings"], "'alpha'")
    assert len(arg) == 1, r["arg_named_warnings"]
    assert "disable_plugins" in arg[0] and "HOOKTRAIN_DISABLE_PLUGINS" not in arg[0]
    assert r["arg_named"] == []
    toml = names_with(r["toml_named_warnings"], "'alpha'")
    assert len(toml) == 1 and "disable_plugins" in toml[0]
    assert r["toml_named"] == ["beta"]


def test_disable_plugins_argument_blocks_by_name(disable_run):
    r = disable_run
    assert "alpha" not in r["arg_all"]
    assert [n for n in r["arg_all"] if n in SAMPLES] == ["beta", "omega"]
    assert names_with(r["arg_all_warnings"], "'alpha'") == []


def test_disabled_plugins_are_never_imported(disable_run):
    r = disable_run
    assert r["alpha_imported"] is False
    assert "alpha imported" not in r["trace"]
    assert "beta imported" in r["trace"]  # the trace works: beta was loaded


def test_unknown_name_in_a_disable_list_is_a_warning(disable_run):
    r = disable_run
    arg = names_with(r["unknown_arg_warnings"], "'nosuch_a'")
    assert len(arg) == 1 and "disable_plugins" in arg[0]
    assert "alpha" in arg[0]  # names what is installed
    assert [n for n in r["unknown_arg"] if n in SAMPLES] == list(SAMPLES)
    env = names_with(r["unknown_env_warnings"], "'nosuch_b'")
    assert len(env) == 1 and "HOOKTRAIN_DISABLE_PLUGINS" in env[0]
    assert r["unknown_env"] == ["beta"]


def test_settings_table_of_a_disabled_plugin_does_not_import_it(disable_run):
    """Disabling blocks before import, even when the shared config has the plugin's table."""
    r = disable_run
    assert r["alpha_imported"] is False  # nothing imported alpha before this check
    assert r["table_load"] is None, r["table_load"]
    assert r["table_trainer"] is None, r["table_trainer"]
    assert "alpha" not in r["table_entry_points"]
    assert r["table_alpha_imported"] is False, r["table_trace"]
    assert "alpha imported" not in r["table_trace"]
