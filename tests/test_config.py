"""``TrainingArguments.from_toml`` and ``hooktrain.config.load_config`` (docs/architecture.md,
"Configuration").

Precedence for ``[training]``: command-line flag > TOML file > Python keyword argument > field
default. Plugin tables (``[plugins.<name>]``) need installed plugins and are tested through real
entry points in ``test_discovery.py``; here only the "not installed" error, which holds in any
environment.
"""

from __future__ import annotations

import pytest

from hooktrain import TrainingArguments
from hooktrain.config import load_config, parse_overrides
from hooktrain.errors import ConfigError

BASE = '''\
[training]
output_dir = "runs/x"
num_train_epochs = 4
learning_rate = 0.02
per_device_train_batch_size = 16
logging_first_step = true
report_to = "none"
'''


@pytest.fixture
def config(tmp_path):
    def write(text: str = BASE, name: str = "run.toml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def test_from_toml_reads_the_training_table(config):
    args = TrainingArguments.from_toml(config())
    assert isinstance(args, TrainingArguments)
    assert args.output_dir == "runs/x"
    assert args.num_train_epochs == 4
    assert args.learning_rate == 0.02
    assert args.per_device_train_batch_size == 16
    assert args.logging_first_step is True
    assert args.report_to == "none"
    assert args.max_steps == -1  # untouched fields keep their defaults
    assert args.plugin_settings == {}


def test_from_toml_accepts_str_and_path(config):
    path = config()
    assert TrainingArguments.from_toml(str(path)).learning_rate == 0.02


def test_plugin_switches_live_in_the_training_table(config):
    args = TrainingArguments.from_toml(config(
        '[training]\nreport_to = ["a", "b"]\ndisable_plugins = ["c"]\nplugin_errors = "raise"\n'
    ))
    assert args.report_to == ["a", "b"]
    assert args.disable_plugins == ["c"]
    assert args.plugin_errors == "raise"


@pytest.mark.parametrize("flags", [
    ["--training.learning_rate", "1e-3"],
    ["--training.learning_rate=1e-3"],
    ["--training.learning_rate", "0.5", "--training.learning_rate", "1e-3"],  # last one wins
])
def test_overrides_win_over_the_file(config, flags):
    args = TrainingArguments.from_toml(config(), flags)
    assert args.learning_rate == pytest.approx(1e-3)
    assert args.num_train_epochs == 4


def test_python_arguments_sit_beneath_the_file(config):
    args = TrainingArguments.from_toml(config(), learning_rate=0.5, seed=7, max_steps=11)
    assert args.learning_rate == 0.02  # the file wins over a Python argument
    assert args.seed == 7  # not in the file: the Python argument wins over the default
    assert args.max_steps == 11


def test_flag_beats_file_beats_python_argument(config):
    args = TrainingArguments.from_toml(
        config(), ["--training.seed", "3", "--training.output_dir=runs/y"],
        seed=1, output_dir="runs/z", max_steps=5,
    )
    assert (args.seed, args.output_dir, args.max_steps) == (3, "runs/y", 5)


def test_unknown_python_argument_is_an_error(config):
    with pytest.raises(ConfigError, match="learning_rat.*learning_rate"):
        TrainingArguments.from_toml(config(), learning_rat=0.1)


@pytest.mark.parametrize("flag, value, field, expected", [
    ("max_steps", "3", "max_steps", 3),
    ("save_total_limit", "2", "save_total_limit", 2),
    ("learning_rate", "1e-3", "learning_rate", 1e-3),
    ("num_train_epochs", "2.5", "num_train_epochs", 2.5),
    ("logging_first_step", "true", "logging_first_step", True),
    ("logging_first_step", "False", "logging_first_step", False),
    ("logging_first_step", "0", "logging_first_step", False),
    ("disable_tqdm", "yes", "disable_tqdm", True),
    ("disable_plugins", "a,b", "disable_plugins", ["a", "b"]),
    ("disable_plugins", '["a", "b"]', "disable_plugins", ["a", "b"]),
    ("report_to", "none", "report_to", "none"),
    ("report_to", "mlflow,wandb", "report_to", ["mlflow", "wandb"]),
    ("max_grad_norm", "none", "max_grad_norm", None),
    ("max_grad_norm", "0.5", "max_grad_norm", 0.5),
    ("lr_scheduler_kwargs", "{ power = 2 }", "lr_scheduler_kwargs", {"power": 2}),
    ("label_names", "y,z", "label_names", ["y", "z"]),
    ("output_dir", "123", "output_dir", "123"),
    ("run_name", "exp-1", "run_name", "exp-1"),
])
def test_flag_values_are_coerced_to_the_field_type(config, flag, value, field, expected):
    args = TrainingArguments.from_toml(config(), [f"--training.{flag}", value])
    got = getattr(args, field)
    assert got == expected
    assert type(got) is type(expected)


def test_string_values_in_the_file_are_coerced_too(config):
    args = TrainingArguments.from_toml(config(
        '[training]\nmax_steps = "7"\nlearning_rate = "1e-4"\ndisable_plugins = "a, b"\n'
    ))
    assert args.max_steps == 7 and type(args.max_steps) is int
    assert args.learning_rate == pytest.approx(1e-4)
    assert args.disable_plugins == ["a", "b"]


@pytest.mark.parametrize("text, key", [
    ('num_train_epochs = "x"', "num_train_epochs"),
    ('max_steps = "ten"', "max_steps"),
    ('logging_first_step = "sometimes"', "logging_first_step"),
    ('learning_rate = "fast"', "learning_rate"),
])
def test_mistyped_value_in_the_file_names_the_key(config, text, key):
    with pytest.raises(ConfigError) as info:
        TrainingArguments.from_toml(config(f"[training]\n{text}\n"))
    assert key in str(info.value)


@pytest.mark.parametrize("text, key", [
    ("num_train_epochs = [3]", "num_train_epochs"),
    ("output_dir = 5", "output_dir"),
    ("max_steps = 2.5", "max_steps"),
    ('disable_plugins = "a"\nseed = true', "seed"),
])
def test_wrongly_typed_toml_value_names_the_key(config, text, key):
    """A TOML value of the wrong type (not a string) is as mistyped as ``"x"``."""
    with pytest.raises(ConfigError) as info:
        TrainingArguments.from_toml(config(f"[training]\n{text}\n"))
    assert key in str(info.value)


@pytest.mark.parametrize("flags, key", [
    (["--training.num_train_epochs", "x"], "num_train_epochs"),
    (["--training.max_steps=3.5"], "max_steps"),
    (["--training.logging_first_step", "maybe"], "logging_first_step"),
])
def test_mistyped_flag_value_names_the_key(config, flags, key):
    with pytest.raises(ConfigError) as info:
        TrainingArguments.from_toml(config(), flags)
    assert key in str(info.value)


def test_invalid_choice_in_the_file_is_a_config_error(config):
    with pytest.raises(ConfigError, match="logging_strategy"):
        TrainingArguments.from_toml(config('[training]\nlogging_strategy = "sometimes"\n'))


def test_invalid_toml_names_the_file(config):
    path = config("[training\nlearning_rate = 1\n", name="broken.toml")
    with pytest.raises(ConfigError) as info:
        TrainingArguments.from_toml(path)
    assert str(path) in str(info.value)


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as info:
        TrainingArguments.from_toml(path)
    assert str(path) in str(info.value)


def test_misspelled_training_key_names_the_nearest_field(config):
    with pytest.raises(ConfigError) as info:
        TrainingArguments.from_toml(config('[training]\nlerning_rate = 0.1\n'))
    message = str(info.value)
    assert "'lerning_rate'" in message and "'learning_rate'" in message


def test_plugin_settings_is_not_a_training_key(config):
    with pytest.raises(ConfigError, match="plugin_settings"):
        TrainingArguments.from_toml(config('[training]\nplugin_settings = { a = { b = 1 } }\n'))


def test_unknown_table_is_an_error_naming_the_valid_ones(config):
    with pytest.raises(ConfigError) as info:
        TrainingArguments.from_toml(config(BASE + '\n[trainer]\nseed = 1\n'))
    message = str(info.value)
    assert "[trainer]" in message
    for table in ("[training]", "[plugins]", "[run]"):
        assert table in message


def test_table_for_a_plugin_that_is_not_installed_is_an_error(config):
    with pytest.raises(ConfigError, match="'surely_not_installed'"):
        TrainingArguments.from_toml(config(BASE + '\n[plugins.surely_not_installed]\nx = 1\n'))
    with pytest.raises(ConfigError, match="'surely_not_installed'"):
        TrainingArguments.from_toml(config(), ["--plugins.surely_not_installed.x", "1"])


@pytest.mark.parametrize("flags, words", [
    (["--training.lerning_rate", "1"], ["'lerning_rate'", "'learning_rate'"]),
    (["--trainer.seed", "1"], ["trainer.seed"]),
    (["--training.seed.x", "1"], ["training.seed.x"]),
    (["--plugins.mlflow", "1"], ["plugins.mlflow"]),
    (["--training.seed"], ["--training.seed"]),
    (["training.seed", "1"], ["training.seed"]),
])
def test_bad_overrides_are_config_errors(config, flags, words):
    with pytest.raises(ConfigError) as info:
        TrainingArguments.from_toml(config(), flags)
    for word in words:
        assert word in str(info.value)


def test_parse_overrides_both_forms():
    assert parse_overrides(["--training.a", "1", "--plugins.p.k=v=w", "--run.model", "m:f"]) == [
        ("training.a", "1"), ("plugins.p.k", "v=w"), ("run.model", "m:f")
    ]


def test_load_config_returns_the_run_table(config):
    path = config(BASE + '\n[run]\nmodel = "pkg:make"\ntrain_dataset = "pkg:data"\n')
    loaded = load_config(path, ["--run.model", "pkg:other"], TrainingArguments)
    assert loaded.run == {"model": "pkg:other", "train_dataset": "pkg:data"}
    assert loaded.args.learning_rate == 0.02
    assert loaded.path == path


def test_load_config_rejects_unknown_run_keys(config):
    with pytest.raises(ConfigError) as info:
        load_config(config(BASE + '\n[run]\nmodle = "pkg:make"\n'), [], TrainingArguments)
    assert "'modle'" in str(info.value) and "model" in str(info.value)


def test_reading_a_config_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    from wheel_venv import clean_env

    path = tmp_path / "run.toml"
    path.write_text(BASE + '\n[run]\nmodel = "pkg:make"\n')
    code = (
        "import sys; from hooktrain import TrainingArguments\n"
        f"TrainingArguments.from_toml({str(path)!r}, ['--training.seed', '3'])\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=clean_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
