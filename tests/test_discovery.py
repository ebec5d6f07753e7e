"""Entry-point discovery through real entry points (DESIGN §5, §5.1, §6; issue 5).

The sample distributions in ``tests/sample_plugins/`` are built into wheels and installed into
fresh virtual environments (see ``venv_helpers.py``); every check runs a script with that venv's
interpreter. No entry point is monkeypatched and nothing is installed into this environment.

Samples: ``alpha`` (class with settings, ``level`` falls back to ``$ALPHA_LEVEL``), ``beta``
(module), ``omega`` (instance, runs on every rank, distribution ``aaa-omega``), ``broken``
(its dependency is missing), ``typo`` (implements ``on_stepend``).

The venv also sees this interpreter's site-packages, so a hooktrain plugin installed here would
show up too: assertions about ``"all"`` compare with what the venv reports as installed.
"""

from __future__ import annotations

import pytest

from venv_helpers import sample_venv

SAMPLES = ("alpha", "beta", "omega")


@pytest.fixture(scope="session")
def clean_venv(tmp_path_factory):
    """A venv with hooktrain-alpha, hooktrain-beta and aaa-omega installed."""
    return sample_venv(tmp_path_factory, "clean")


@pytest.fixture(scope="session")
def full_venv(tmp_path_factory):
    """The clean venv's plugins plus hooktrain-broken and hooktrain-typo."""
    return sample_venv(tmp_path_factory, "full")


@pytest.fixture(scope="session")
def dup_venv(tmp_path_factory):
    """hooktrain-alpha and hooktrain-alpha-fork, both with an entry point named ``alpha``."""
    return sample_venv(tmp_path_factory, "dup")


def names_with(messages: list[str], *needles: str) -> list[str]:
    return [m for m in messages if all(n in m for n in needles)]


# ---- report_to="all": every installed plugin, sorted by entry-point name ----------------------

ORDER_SCRIPT = """
from sample_driver import *
from hooktrain import hookimpl
from hooktrain.plugins import discovery


class User:
    @hookimpl
    def on_train_begin(self, state):
        with open(os.environ["SAMPLE_TRACE"], "a") as handle:
            handle.write("user on_train_begin\\n")


def label(obj):
    return obj.__name__ if type(obj).__name__ == "module" else type(obj).__name__


def selection():
    clear_trace()
    result = {}
    trainer = make_trainer(report_to=["beta", "alpha"])
    result["list"] = entry_points(trainer)
    trainer.train()
    result["begin"] = [l.split()[0] for l in trace() if l.endswith(" on_train_begin")]
    result["single"] = entry_points(make_trainer(report_to="omega"))
    result["none"] = entry_points(make_trainer(report_to="none"))
    result["None"] = entry_points(make_trainer(report_to=None))
    result["unknown"] = attempt(lambda: make_trainer(report_to=["alpha", "nosuchplugin"]))
    result["close"] = attempt(lambda: make_trainer(report_to="alpah"))
    return result


installed = list(discovery.installed_plugins())
trainer = make_trainer(callbacks=[User()], disable_tqdm=False)
callbacks = [label(obj) for obj in trainer.callbacks]
output = trainer.train()
begin = [line.split()[0] for line in trace() if line.endswith(" on_train_begin")]
second = make_trainer()
emit(
    installed=installed,
    entry_points=entry_points(trainer),
    callbacks=callbacks,
    begin=begin,
    steps=output.global_step,
    alpha_per_trainer=plugin(trainer, "alpha") is not plugin(second, "alpha"),
    alpha_class=type(plugin(trainer, "alpha")).__name__,
    beta_module=label(plugin(trainer, "beta")),
    omega_same_instance=plugin(trainer, "omega") is plugin(second, "omega"),
    omega_is_the_instance=plugin(trainer, "omega") is __import__("aaa_omega").PLUGIN,
    selection=selection(),
)
"""


@pytest.fixture(scope="module")
def order_run(clean_venv, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("order")
    return clean_venv.result(ORDER_SCRIPT, cwd=tmp_path, SAMPLE_TRACE=str(tmp_path / "trace"))


def test_all_enables_every_installed_plugin_sorted_by_name(order_run):
    r = order_run
    assert set(SAMPLES) <= set(r["installed"])
    # sorted by entry-point name: omega's distribution (aaa-omega) sorts first, its name last
    assert r["entry_points"] == sorted(r["installed"])
    samples_in_order = [n for n in r["entry_points"] if n in SAMPLES]
    assert samples_in_order == ["alpha", "beta", "omega"]
    assert r["steps"] == 8


def test_entry_point_plugins_sit_after_user_callbacks_and_before_progress(order_run):
    r = order_run
    callbacks = r["callbacks"]
    assert callbacks[0] == "DefaultFlowCallback"
    assert callbacks[1] == "User"
    assert callbacks[-1] == "ProgressCallback"
    samples = [c for c in callbacks if c in ("AlphaPlugin", "hooktrain_beta", "Omega")]
    assert samples == ["AlphaPlugin", "hooktrain_beta", "Omega"]
    assert callbacks.index("AlphaPlugin") > callbacks.index("User")
    # and the calls really happen in that order
    assert r["begin"] == ["user", "alpha", "beta", "omega"]


def test_entry_point_objects_class_module_instance(order_run):
    """DESIGN §5.1: a class is instantiated once per Trainer; a module or instance as it is."""
    r = order_run
    assert r["alpha_class"] == "AlphaPlugin"
    assert r["alpha_per_trainer"] is True
    assert r["beta_module"] == "hooktrain_beta"
    assert r["omega_same_instance"] is True
    assert r["omega_is_the_instance"] is True


# ---- report_to as a list, a name, "none"; unknown names ------------------------------------


def test_report_to_selects_named_plugins_in_the_given_order(order_run):
    r = order_run["selection"]
    assert r["list"] == ["beta", "alpha"]
    assert r["begin"] == ["beta", "alpha"]
    assert r["single"] == ["omega"]
    assert r["none"] == []
    assert r["None"] == []
    unknown = r["unknown"]
    assert unknown is not None and "PluginError" in unknown["types"]
    assert "'nosuchplugin'" in unknown["message"]
    for name in SAMPLES:  # lists the installed ones
        assert name in unknown["message"]
    assert r["close"] is not None and "PluginError" in r["close"]["types"]
    assert "alpah" in r["close"]["message"]


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


# ---- broken imports and misspelled hooks -----------------------------------------------------

BROKEN_SCRIPT = """
from sample_driver import *
from hooktrain.plugins import discovery

result = {"installed": list(discovery.installed_plugins())}
reset_log()
trainer = make_trainer(disable_plugins=["typo"])
result["all_entry_points"] = entry_points(trainer)
result["all_warnings"] = messages()
reset_log()
result["all_steps"] = trainer.train().global_step
result["end_warnings"] = messages()
result["named"] = attempt(lambda: make_trainer(report_to=["alpha", "broken"]))
result["typo_all"] = attempt(lambda: make_trainer(disable_plugins=["broken"]))
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
    assert r["all_steps"] == 8


def test_broken_plugin_is_in_the_end_of_training_summary(broken_run):
    """DESIGN §5.1: broken imports go to the logger and to the end-of-training summary."""
    assert names_with(broken_run["end_warnings"], "broken"), broken_run["end_warnings"]


def test_broken_plugin_named_explicitly_is_an_error(broken_run):
    named = broken_run["named"]
    assert named is not None and "PluginError" in named["types"]
    assert "hooktrain-broken" in named["message"]
    assert "hooktrain_sample_missing_dependency" in named["message"]


@pytest.mark.parametrize("case", ["typo_all", "typo_all_with_broken", "typo_named"])
def test_misspelled_hook_is_an_error_at_construction(broken_run, case):
    error = broken_run[case]
    assert error is not None and "HookNameError" in error["types"], error
    message = error["message"]
    assert "'typo" in message  # the plugin
    assert "'on_stepend'" in message  # the hook
    assert "'on_step_end'" in message  # the closest real hook
    assert "disable_plugins" in message  # how to switch it off


def test_disabled_typo_plugin_is_not_checked(broken_run):
    assert broken_run["typo_disabled"] is None
    assert broken_run["typo_env_disabled"] is None


# ---- duplicate names -------------------------------------------------------------------------


def test_two_distributions_with_one_entry_point_name_is_an_error(dup_venv, tmp_path):
    r = dup_venv.result(
        """
        from sample_driver import *
        from hooktrain.plugins import discovery
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


# ---- plugin settings: [plugins.<name>], plugin_settings, environment -------------------------

SETTINGS_SCRIPT = """
from pathlib import Path
from sample_driver import *
from hooktrain import TrainingArguments


def config(name, table=""):
    Path(name).write_text(
        '[training]\\noutput_dir = "out"\\nreport_to = ["alpha"]\\nsave_strategy = "no"\\n'
        + table)
    return name


def plain(**kwargs):
    return TrainingArguments(output_dir="out", report_to=["alpha"], save_strategy="no", **kwargs)


def settings(args):
    return vars(plugin(make_trainer(args=args), "alpha").config)


python = {"alpha": {"level": 3, "tag": "py"}}
result = {"default": settings(plain())}
os.environ["ALPHA_LEVEL"] = "5"
result["env"] = settings(plain())
result["python"] = settings(plain(plugin_settings=python))
path = config("a.toml", "[plugins.alpha]\\nlevel = 7\\n")
result["toml"] = settings(TrainingArguments.from_toml(path, plugin_settings=python))
result["cli"] = settings(TrainingArguments.from_toml(
    path, ["--plugins.alpha.level", "9", "--plugins.alpha.ratio=0.25"], plugin_settings=python))
result["toml_and_env"] = settings(
    TrainingArguments.from_toml(config("b.toml", '[plugins.alpha]\\ntag = "t"\\n')))
result["cli_only"] = settings(
    TrainingArguments.from_toml(config("c.toml"), ["--plugins.alpha.tag", "x"]))
os.environ["ALPHA_LEVEL"] = "high"
result["bad_env"] = attempt(lambda: make_trainer(args=plain()))
del os.environ["ALPHA_LEVEL"]

unknown = config("d.toml", '[plugins.alpha]\\ncolour = "red"\\n')
result["unknown_toml"] = attempt(lambda: TrainingArguments.from_toml(unknown))
result["unknown_cli"] = attempt(
    lambda: TrainingArguments.from_toml(path, ["--plugins.alpha.colour", "red"]))
result["unknown_python"] = attempt(
    lambda: make_trainer(args=plain(plugin_settings={"alpha": {"colour": "red"}})))
mistyped = config("e.toml", '[plugins.alpha]\\nlevel = "high"\\n')
result["bad_toml"] = attempt(lambda: make_trainer(args=TrainingArguments.from_toml(mistyped)))
result["bad_cli"] = attempt(lambda: make_trainer(
    args=TrainingArguments.from_toml(path, ["--plugins.alpha.ratio", "lots"])))
missing = config("f.toml", "[plugins.nosuch]\\nx = 1\\n")
result["not_installed"] = attempt(lambda: TrainingArguments.from_toml(missing))
result["not_installed_python"] = attempt(
    lambda: make_trainer(args=plain(plugin_settings={"nosuch": {"x": 1}})))
result["module_without_settings"] = attempt(
    lambda: TrainingArguments.from_toml(config("g.toml", "[plugins.beta]\\nx = 1\\n")))
result["instance_without_settings"] = attempt(
    lambda: TrainingArguments.from_toml(config("h.toml", "[plugins.omega]\\nx = 1\\n")))
emit(**result)
"""


@pytest.fixture(scope="module")
def settings_run(clean_venv, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("settings")
    return clean_venv.result(SETTINGS_SCRIPT, cwd=tmp_path)


def test_settings_precedence_cli_toml_python_env_default(settings_run):
    r = settings_run
    assert r["default"] == {"level": 1, "tag": "plain", "ratio": 0.5}
    assert r["env"] == {"level": 5, "tag": "plain", "ratio": 0.5}  # "5" parsed as int
    assert r["python"] == {"level": 3, "tag": "py", "ratio": 0.5}  # Python argument > env
    assert r["toml"] == {"level": 7, "tag": "py", "ratio": 0.5}  # TOML > Python argument
    assert r["cli"] == {"level": 9, "tag": "py", "ratio": 0.25}  # flag > TOML, types coerced
    assert r["toml_and_env"] == {"level": 5, "tag": "t", "ratio": 0.5}
    assert r["cli_only"] == {"level": 5, "tag": "x", "ratio": 0.5}  # ALPHA_LEVEL=5 still set


def test_mistyped_setting_names_the_plugin_and_key(settings_run):
    for case, key in (("bad_toml", "level"), ("bad_cli", "ratio"), ("bad_env", "ALPHA_LEVEL")):
        error = settings_run[case]
        assert error is not None and "ConfigError" in error["types"], (case, error)
        assert "alpha" in error["message"] and key in error["message"], (case, error)


@pytest.mark.parametrize("case", ["unknown_toml", "unknown_cli", "unknown_python"])
def test_unknown_setting_names_plugin_key_and_valid_keys(settings_run, case):
    error = settings_run[case]
    assert error is not None and "ConfigError" in error["types"], error
    message = error["message"]
    assert "'alpha'" in message and "'colour'" in message
    for valid in ("level", "tag", "ratio"):
        assert valid in message


@pytest.mark.parametrize("case", ["not_installed", "not_installed_python"])
def test_settings_for_a_plugin_that_is_not_installed_is_an_error(settings_run, case):
    error = settings_run[case]
    assert error is not None and "ConfigError" in error["types"], error
    assert "'nosuch'" in error["message"]
    for name in SAMPLES:
        assert name in error["message"]


@pytest.mark.parametrize("case, name", [("module_without_settings", "beta"),
                                        ("instance_without_settings", "omega")])
def test_settings_for_a_plugin_without_settings_is_an_error(settings_run, case, name):
    error = settings_run[case]
    assert error is not None and "ConfigError" in error["types"], error
    assert f"'{name}'" in error["message"] and "'x'" in error["message"]
