"""One TOML file for a run: ``[training]``, ``[plugins.<name>]`` and ``[run]``.

```toml
[training]                 # TrainingArguments fields
output_dir = "runs/digits"
num_train_epochs = 3

[plugins.mlflow]           # the settings the plugin declares
experiment_name = "digits"

[run]                      # for `hooktrain train`: what to train, by import path
model = "mypackage.models:make_model"        # called with no arguments
train_dataset = "mypackage.data:train_set"   # a data set, or a factory returning one
```

Command-line flags override the file: ``--training.learning_rate 1e-3``,
``--plugins.mlflow.experiment_name=x``, ``--run.model pkg:other``. Python keyword arguments to
:func:`load_config` sit beneath the file. Every unknown table, key or plugin is an error naming
the valid choices. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hooktrain.errors import ConfigError
from hooktrain.plugin_host import discovery
from hooktrain.plugin_host import settings as plugin_settings

if TYPE_CHECKING:
    from hooktrain.args import TrainingArguments

TABLES = ("training", "plugins", "run")
RUN_KEYS = (
    "model", "train_dataset", "eval_dataset", "compute_metrics", "compute_loss_func",
    "data_collator", "processing_class", "resume_from_checkpoint",
)


@dataclass
class RunConfig:
    """A parsed config: the arguments and the ``[run]`` table (import paths)."""

    args: TrainingArguments
    run: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def load_config(path: str | os.PathLike[str], overrides: list[str],
                arguments_class: type[TrainingArguments], **arguments: Any) -> RunConfig:
    """Read ``path``, apply ``overrides`` on top and ``arguments`` beneath; validate everything.

    ``arguments_class`` is ``TrainingArguments`` or a subclass: the ``[training]`` table is
    checked against its fields and builds it.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text (a binary file?): a config is a TOML file "
                          "with [training], [plugins.NAME] and [run] tables.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    for table, content in data.items():
        if table not in TABLES:
            raise ConfigError(
                f"{path}: unknown table [{table}]. Valid tables: "
                + ", ".join(f"[{t}]" for t in TABLES) + "."
            )
        if not isinstance(content, dict):
            raise ConfigError(f"{path}: {table} = {content!r} must be a table: write [{table}] "
                              "and put its keys below it.")
    for dotted, value in parse_overrides(overrides):
        _set(data, dotted, value)

    training = dict(data.get("training", {}))
    _check_training_keys(path, training, arguments_class)
    hints = typing.get_type_hints(arguments_class)
    for key, value in training.items():
        training[key] = plugin_settings.coerce(value, hints[key], f"{path}: [training] {key}")

    tables = {name: dict(table) for name, table in arguments.pop("plugin_settings", {}).items()}
    for name, table in data.get("plugins", {}).items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [plugins.{name}] must be a table of settings.")
        tables.setdefault(name, {}).update(table)
    disabled = list(training.get("disable_plugins", arguments.get("disable_plugins", [])))
    discovery.check_plugin_tables(tables, disabled)

    run = dict(data.get("run", {}))
    for key in run:
        if key not in RUN_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} in [run]. Valid keys: "
                              f"{', '.join(RUN_KEYS)}.")
        if key != "resume_from_checkpoint" and not isinstance(run[key], str):
            raise ConfigError(f"{path}: [run] {key} = {run[key]!r} must be an import path, "
                              "'module:attribute'.")
    if "resume_from_checkpoint" in run:
        run["resume_from_checkpoint"] = resume_value(run["resume_from_checkpoint"], path)
    args = arguments_class(**{**arguments, **training, "plugin_settings": tables})
    return RunConfig(args, run, path)


def resume_value(value: Any, path: Path) -> bool | str:
    """``[run] resume_from_checkpoint``: true (the newest checkpoint), false, or a path; from
    the command line the words ``true``/``false`` are the booleans."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "false"):
            return word == "true"
        return value
    raise ConfigError(f"{path}: [run] resume_from_checkpoint = {value!r}: use true (the newest "
                      "checkpoint in output_dir), false, or a checkpoint's path.")


def parse_overrides(argv: list[str]) -> list[tuple[str, str]]:
    """``["--training.x", "1", "--plugins.p.k=v"]`` -> ``[("training.x", "1"), ...]``."""
    pairs = []
    items = list(argv)
    while items:
        flag = items.pop(0)
        if not flag.startswith("--"):
            raise ConfigError(f"Unexpected argument {flag!r}: overrides look like "
                              "--training.learning_rate 1e-3 or --plugins.NAME.KEY=VALUE.")
        key, sep, value = flag[2:].partition("=")
        if not sep:
            if not items:
                raise ConfigError(f"{flag} needs a value.")
            value = items.pop(0)
        pairs.append((key, value))
    return pairs


def _set(data: dict[str, Any], dotted: str, value: str) -> None:
    parts = dotted.split(".")
    table = parts[0]
    expected = 3 if table == "plugins" else 2
    if table not in TABLES or len(parts) != expected:
        raise ConfigError(
            f"Cannot override {dotted!r}: use --training.FIELD, --plugins.NAME.KEY or "
            "--run.KEY."
        )
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _check_training_keys(path: Path, training: dict[str, Any],
                         arguments_class: type[TrainingArguments]) -> None:
    names = arguments_class.field_names()
    for key in training:
        if key not in names or key == "plugin_settings":
            raise ConfigError(f"{path}: [training] " + arguments_class.unknown_field_message(key))


def import_object(spec: str, what: str) -> Any:
    """Resolve ``"module:attribute"`` (the ``[run]`` table's import paths)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"[run] {what} = {spec!r}: use the form 'module:attribute'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"[run] {what}: cannot import module {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"[run] {what}: module {module_name!r} has no attribute {attribute!r}."
            ) from None
    return obj


def build(run: dict[str, Any], key: str) -> Any:
    """The ``[run]`` object for ``key``.

    ``model`` and the data sets may name a factory (a class or function called with no
    arguments) or a ready object; the other keys name the object itself (a class is
    instantiated).
    """
    spec = run.get(key)
    if spec is None or key == "resume_from_checkpoint":
        return spec
    obj = import_object(spec, key)
    is_factory = (isinstance(obj, type)
                  or key == "model" and not hasattr(obj, "parameters")
                  or key in ("train_dataset", "eval_dataset") and not _is_dataset(obj))
    if is_factory:
        obj = _call(obj, key, spec)
    _check_kind(obj, key, spec)
    return obj


def _call(factory: Any, key: str, spec: str) -> Any:
    if not callable(factory):
        raise ConfigError(f"[run] {key} = {spec!r} is a {type(factory).__name__}, "
                          f"{_EXPECTED[key]}.")
    try:
        return factory()
    except TypeError as exc:
        raise ConfigError(f"[run] {key} = {spec!r} cannot be called with no arguments ({exc}); "
                          f"name {_EXPECTED[key]}.") from exc


def _is_dataset(obj: Any) -> bool:
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__") or hasattr(obj, "__iter__")


def _check_kind(obj: Any, key: str, spec: str) -> None:
    ok = {"model": lambda o: hasattr(o, "parameters") and callable(o),
          "train_dataset": _is_dataset, "eval_dataset": _is_dataset}.get(key, callable)
    if key == "processing_class":
        return  # a tokenizer or processor: anything
    if not ok(obj):
        raise ConfigError(f"[run] {key} = {spec!r} gave a {type(obj).__name__}; expected "
                          f"{_EXPECTED[key]}.")


_EXPECTED = {
    "model": "a torch.nn.Module or a function returning one",
    "train_dataset": "a data set (len and indexing, or iterable) or a function returning one",
    "eval_dataset": "a data set (len and indexing, or iterable) or a function returning one",
    "compute_metrics": "a function taking an EvalPrediction",
    "compute_loss_func": "a function (outputs, labels, num_items_in_batch=None)",
    "data_collator": "a function taking a list of samples",
    "processing_class": "a tokenizer or processor",
}
