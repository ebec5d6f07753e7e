"""Plugin settings: a dataclass a plugin declares, filled from config, arguments and environment.

A plugin declares its settings as a dataclass on its ``settings`` attribute; a field may name the
environment variable it falls back to, and a ``Literal[...]`` annotation lists the values it
accepts (checked wherever the value comes from, case-insensitively for strings)::

    @dataclass
    class WandbSettings:
        project: str = setting("huggingface", env="WANDB_PROJECT")
        log_model: Literal["false", "end", "checkpoint"] = setting("false", env="WANDB_LOG_MODEL")

    class WandbPlugin(TrackerPlugin):  # TrackerPlugin fills self.config and checks it
        settings = WandbSettings

Plugin authors import these helpers from :mod:`hooktrain.plugin`.

Precedence, highest first: command-line flag > TOML table > Python argument > environment >
default (the first three arrive already merged in ``TrainingArguments.plugin_settings``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from typing import Any, TypeVar

from hooktrain.errors import ConfigError

T = TypeVar("T")


#: Keys hooktrain itself reads from every ``[plugins.<name>]`` table.
RESERVED_KEYS = ("nonblocking",)


def setting(default: Any = dataclasses.MISSING, *, env: str | None = None,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A settings field: ``setting(120.0)``, or ``setting(None, env="MLFLOW_TRACKING_URI")`` for
    one that falls back to an environment variable when the config does not set it."""
    metadata = {"env": env} if env else {}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def parse_bool(value: Any, where: str = "value") -> bool:
    """``True``/``False``, or a string ``1/true/yes/on`` / ``0/false/no/off`` (any case)."""
    converted = _convert(value, bool)
    if converted is _FAIL:
        raise ConfigError(f"{where} must be true or false (1/0, yes/no, on/off), got {value!r}.")
    return converted


def validate(plugin_name: str, config: Any) -> Any:
    """Check a settings object built in Python (``MLflowSettings(log_model="End")``) as the
    config would: each ``Literal`` field holds one of its values (normalised to that spelling)."""
    hints = typing.get_type_hints(type(config))
    for spec in dataclasses.fields(config):
        annotation = hints[spec.name]
        value = getattr(config, spec.name)
        literals = [o for o in _options(annotation) if typing.get_origin(o) is typing.Literal]
        if not literals:
            continue
        choices = [c for o in literals for c in typing.get_args(o)]
        if any(value == c and type(value) is type(c) for c in choices):
            continue  # already one of the choices, as __post_init__ may have spelled it
        where = f"[plugins.{plugin_name}] {spec.name}"
        setattr(config, spec.name, coerce(value, annotation, where))
    return config


def settings_class(plugin: Any) -> type | None:
    """The settings dataclass a plugin (class, instance or module) declares, if any."""
    declared = getattr(plugin, "settings", None)
    if isinstance(declared, type) and dataclasses.is_dataclass(declared):
        return declared
    if dataclasses.is_dataclass(declared) and not isinstance(declared, type):
        return type(declared)
    return None


def check_keys(plugin_name: str, cls: type | None, table: dict[str, Any]) -> None:
    """An unknown key is an error naming the plugin, the key and the valid keys."""
    valid = [f.name for f in dataclasses.fields(cls)] if cls is not None else []
    for key in table:
        if key not in valid and key not in RESERVED_KEYS:
            choices = ", ".join(valid) if valid else "none (this plugin has no settings)"
            raise ConfigError(
                f"Unknown setting {key!r} for plugin {plugin_name!r} in [plugins.{plugin_name}]. "
                f"Valid settings: {choices}."
            )


def resolve(plugin_name: str, cls: type, table: dict[str, Any]) -> Any:
    """Build the settings: ``table`` values, else the field's environment variable, else default."""
    check_keys(plugin_name, cls, table)
    table = {k: v for k, v in table.items() if k not in RESERVED_KEYS}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):
        where = f"[plugins.{plugin_name}] {spec.name}"
        if spec.name in table:
            values[spec.name] = coerce(table[spec.name], hints[spec.name], where)
            continue
        env = spec.metadata.get("env")
        if env and os.environ.get(env) not in (None, ""):
            values[spec.name] = coerce(os.environ[env], hints[spec.name], f"{where} (from ${env})")
    return validate(plugin_name, cls(**values))


def from_environment(plugin_name: str, cls: type[T]) -> T:
    """The settings of a plugin built by hand (``MLflowPlugin()``), outside any config file.

    hooktrain resolves a plugin's settings only when it builds the plugin itself; a plugin built
    in Python without settings must still honour its fields' environment variables (HF's
    ``MLFLOW_TRACKING_URI`` and the like) and defaults, as it would from an empty
    ``[plugins.<name>]`` table. A bad value is the same ``ConfigError`` as from the config.
    A dataclass without ``__bool__`` or ``__len__`` is always truthy, so
    ``settings or from_environment(...)`` keeps the settings a caller passed.
    """
    return resolve(plugin_name, cls, {})


def choices_message(annotation: Any) -> str | None:
    """``one of 'a', 'b'`` for a ``Literal`` annotation (or an optional one, or one beside
    ``bool``: ``true, false or one of 'all'``), else ``None``."""
    options = _options(annotation)
    values = [v for o in options if typing.get_origin(o) is typing.Literal
              for v in typing.get_args(o)]
    if not values:
        return None
    message = "one of " + ", ".join(repr(v) for v in values)
    return f"true, false or {message}" if bool in options else message


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against ``annotation``; strings (CLI, environment) are parsed first."""
    options = _options(annotation)
    if value is None and type(None) in options:
        return None
    for option in options:
        converted = _convert(value, option)
        if converted is not _FAIL:
            return converted
    names = choices_message(annotation) or " | ".join(
        getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{where} must be {names}, got {value!r} ({type(value).__name__}).")


_FAIL = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _options(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation)]
    return [annotation]


def _convert(value: Any, option: Any) -> Any:
    origin = typing.get_origin(option) or option
    if option is Any:
        return value
    if origin is typing.Literal:
        return _choice(value, typing.get_args(option))
    if option is type(None):
        return None if isinstance(value, str) and value.lower() in ("none", "null") else _FAIL
    if origin is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        return _FAIL
    if origin is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return _parse(value, int)
    if origin is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return _parse(value, float)
    if origin is str:
        return value if isinstance(value, str) else _FAIL
    if origin in (list, tuple):
        if isinstance(value, str):
            parsed = _toml_value(value)
            value = parsed if isinstance(parsed, list) else [
                item.strip() for item in value.split(",") if item.strip()
            ]
        return list(value) if isinstance(value, (list, tuple)) else _FAIL
    if origin is dict:
        if isinstance(value, str):
            value = _toml_value(value)
        return dict(value) if isinstance(value, dict) else _FAIL
    return value if isinstance(value, origin) else _FAIL


def _choice(value: Any, choices: tuple[Any, ...]) -> Any:
    """The choice ``value`` names: itself, a string in another case, or a boolean spelled as
    ``"true"``/``"false"`` when those are choices (a TOML ``log_model = false``)."""
    if isinstance(value, bool):
        value = str(value).lower()
    for choice in choices:
        if value == choice and type(value) is type(choice):
            return choice
        if isinstance(value, str) and isinstance(choice, str) \
                and value.strip().lower() == choice.lower():
            return choice
    return _FAIL


def _parse(value: Any, kind: type) -> Any:
    if not isinstance(value, str):
        return _FAIL
    try:
        return kind(value)
    except ValueError:
        return _FAIL


def _toml_value(text: str) -> Any:
    """Parse a command-line value as a TOML literal (``[1, 2]``, ``{a = 1}``); else the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
