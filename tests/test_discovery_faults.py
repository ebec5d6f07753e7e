"""Entry-point plugins that go wrong, and rank gating (issue 5; docs/architecture.md, "Selecting
plugins"): broken imports, misspelled hooks, two distributions with one entry-point name, a plugin
that raises while training, and plugins on a rank other than 0.

Real entry points in fresh venvs (see ``wheel_venv.py`` and ``test_discovery.py``). Samples:
``alpha`` (class), ``beta`` (module), ``omega`` (instance, runs on every rank), ``broken`` (its
dependency is missing), ``typo`` (implements ``on_stepend``), ``alpha-fork`` (a second
distribution with an entry point named ``alpha``).
"""

from __future__ import annotations

import pytest
from wheel_venv import SAMPLES, names_with

# ---- broken imports and misspelled hooks -----------------------------------------------------

BROKEN_SCRIPT = """
from sample_driver import *
from hooktrain.plugin_host import discovery

result = {"installed": list(discovery.installed_plugins())}
reset_log()
trainer = make_trainer(disable_plugins=["typo"])
result["all_entry_points"] = entry_points(trainer)
result["all_warnings"] = messages()
reset_log()
result["all_steps"] = trainer.train().global_step
result["end_warnings"] = messages()
result["named"] = attempt(lambda: make_trainer(report_to=["alpha", "broken"]))
reset_log()
result["typo_all"] = attempt(lambda: make_trainer(disable_plugins=["broken"]))
result["typo_all_warnings"] = messages()
result["typo_all_entry_points"] = entry_points(make_trainer(disable_plugins=["broken"]))
result["typo_all_with_broken"] = attempt(lambda: make_trainer())
result["typo_named"] = attempt(lambda: make_trainer(report_to=["typo"]))
result["typo_disabled"] = attempt(lambda: make_trainer(disable_plugins=["typo", "broken"]))
result["typo_env_disabled"] = None
os.environ["HOOKTRAIN_DISABLE_PLUGINS"] = "typo"
result["typo_env_disabled"] = attempt(lambda: make_trainer())
emit(**result)
"""


@pytest.fixture(scope="module")
def broken_run(full_venv, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("broken")
    return full_venv.result(BROKEN_SCRIPT, cwd=tmp_path)


def test_broken_plugin_under_all_is_one_warning_and_the_run_goes_on(broken_run):
    r = broken_run
    assert {"broken", "typo"} <= set(r["installed"])
    assert "broken" not in r["all_entry_points"]
    assert [n for n in r["all_entry_points"] if n in SAMPLES] == list(SAMPLES)
    warnings = names_with(r["all_warnings"], "broken")
    assert len(warnings) == 1, r["all_warnings"]
    assert "hooktrain-broken" in warnings[0]  # the distribution
    assert "hooktrain_sample_missing_dependency" in warnings[0]  # the error
    assert "Traceback" not in warnings[0] and len(warnings[0].splitlines()) == 1  # one line
    assert r["all_steps"] == 8


def test_broken_plugin_is_in_the_end_of_training_summary(broken_run):
    """Broken imports go to the logger and to the end-of-training summary (docs/architecture.md,
    "Selecting plugins")."""
    assert names_with(broken_run["end_warnings"], "broken"), broken_run["end_warnings"]


def test_broken_plugin_named_explicitly_is_an_error(broken_run):
    named = broken_run["named"]
    assert named is not None and "PluginError" in named["types"]
    assert "hooktrain-broken" in named["message"]
    assert "hooktrain_sample_missing_dependency" in named["message"]


def test_misspelled_hook_named_in_report_to_is_an_error_at_construction(broken_run):
    error = broken_run["typo_named"]
    assert error is not None and "HookNameError" in error["types"], error
    message = error["message"]
    assert "'typo" in message  # the plugin
    assert "'on_stepend'" in message  # the hook
    assert "'on_step_end'" in message  # the closest real hook
    assert "disable_plugins" in message  # how to switch it off


def test_misspelled_hook_under_all_is_skipped_with_one_warning(broken_run):
    """One bad third-party wheel must not stop every default run."""
    assert broken_run["typo_all"] is None and broken_run["typo_all_with_broken"] is None
    assert "typo" not in broken_run["typo_all_entry_points"]
    (warning,) = names_with(broken_run["typo_all_warnings"], "typo")
    for needle in ("hooktrain-typo", "'on_stepend'", "'on_step_end'", "disable_plugins"):
        assert needle in warning, warning


def test_disabled_typo_plugin_is_not_checked(broken_run):
    assert broken_run["typo_disabled"] is None
    assert broken_run["typo_env_disabled"] is None


# ---- duplicate names -------------------------------------------------------------------------


def test_two_distributions_with_one_entry_point_name_is_an_error(dup_venv, tmp_path):
    r = dup_venv.result(
        """
        from sample_driver import *
        from hooktrain.plugin_host import discovery
        emit(error=attempt(discovery.installed_plugins), torch=imported("torch"))
        """,
        cwd=tmp_path,
    )
    error = r["error"]
    assert error is not None and "PluginError" in error["types"]
    assert "'alpha'" in error["message"]
    assert "hooktrain-alpha-fork" in error["message"]
    assert "hooktrain-alpha " in error["message"] or "hooktrain-alpha." in error["message"]
    cli = dup_venv.cli("plugins", cwd=tmp_path)
    assert cli.returncode == 2
    assert "hooktrain: error:" in cli.stderr and "hooktrain-alpha-fork" in cli.stderr


# ---- isolation and rank gating ---------------------------------------------------------------


FAULTS_SCRIPT = """
from sample_driver import *
import hooktrain_beta

os.environ["ALPHA_RAISE_IN"] = "on_log"
trainer = make_trainer(report_to=["alpha", "beta"])
output = trainer.train()
result = dict(
    steps=output.global_step,
    alpha=plugin(trainer, "alpha").events,
    beta=list(hooktrain_beta.EVENTS),
    errors=messages("ERROR"),
    warnings=messages(),
)
result["raise_mode"] = attempt(
    lambda: make_trainer(report_to=["alpha"], plugin_errors="raise").train())
del os.environ["ALPHA_RAISE_IN"]

# as rank 1 (without WORLD_SIZE, so no process group is joined; tests/test_distributed.py
# checks the same gating under a real torchrun): only plugins with hooktrain_all_ranks run
os.environ.update(RANK="1", LOCAL_RANK="1")
trainer = make_trainer(report_to=["alpha", "omega"])
trainer.train()
result["rank1"] = dict(alpha=plugin(trainer, "alpha").events,
                       omega=plugin(trainer, "omega").events,
                       zero=trainer.state.is_world_process_zero)
emit(**result)
"""


@pytest.fixture(scope="module")
def faults_run(clean_venv, tmp_path_factory):
    return clean_venv.result(FAULTS_SCRIPT, cwd=tmp_path_factory.mktemp("faults"))


def test_entry_point_plugin_that_raises_is_switched_off_and_training_finishes(faults_run):
    r = faults_run
    assert r["steps"] == 8
    assert r["alpha"] == ["on_train_begin", "on_log"]  # switched off after raising
    assert r["beta"].count("on_log") == 4 + 1  # 8 steps, logging_steps=2, plus the final log
    assert r["beta"][-1] == "on_train_end"
    errors = names_with(r["errors"], "alpha", "on_log")
    assert len(errors) == 1, r["errors"]
    assert names_with(r["warnings"], "alpha", "alpha fails in on_log")  # end-of-run summary
    raised = r["raise_mode"]
    assert raised is not None and "RuntimeError" in raised["types"]
    assert "alpha fails in on_log" in raised["message"]


def test_logging_plugins_run_on_the_main_process_only_unless_they_declare_otherwise(faults_run):
    """Issue 5: the manager gates entry-point plugins by rank; omega declares all ranks."""
    r = faults_run["rank1"]
    assert r["zero"] is False
    assert "on_train_begin" in r["omega"]
    assert r["alpha"] == [], "alpha does not declare hooktrain_all_ranks, so rank 1 skips it"
