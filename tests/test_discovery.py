"""Entry-point discovery through real entry points: which plugins load, in what order, with what
settings (issue 5; docs/architecture.md, "Selecting plugins" and "Configuration").

The sample distributions in ``tests/sample_plugins/`` are built into wheels and installed into
fresh virtual environments (see ``wheel_venv.py``); every check runs a script with that venv's
interpreter. No entry point is monkeypatched and nothing is installed into this environment.

Samples: ``alpha`` (class with settings, ``level`` falls back to ``$ALPHA_LEVEL``), ``beta``
(module), ``omega`` (instance, runs on every rank, distribution ``aaa-omega``).

The venv also sees this interpreter's site-packages, so a hooktrain plugin installed here would
show up too: assertions about ``"all"`` compare with what the venv reports as installed.

Blocking plugins by name is in ``test_discovery_disable.py``; broken and misspelled plugins,
duplicate names, isolation and rank gating in ``test_discovery_faults.py``.
"""

from __future__ import annotations

import pytest
from wheel_venv import SAMPLES

# ---- report_to="all": every installed plugin, sorted by entry-point name ----------------------

ORDER_SCRIPT = """
from sample_driver import *
from hooktrain import hookimpl
from hooktrain.plugin_host import discovery


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
    """A class is instantiated once per Trainer; a module or instance is used as it is
    (docs/architecture.md, "Selecting plugins")."""
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
