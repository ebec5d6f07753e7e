"""The run's parameters: HF's selection and limits, and how they reach MLflow in batches."""

from __future__ import annotations

import logging
from typing import Any

from hooktrain.plugin import run_config

logger = logging.getLogger("hooktrain")


def run_params(args: Any, model: Any, config: Any, plugin_name: str) -> dict[str, str]:
    """The training arguments and the model's config as strings: flattened when
    ``flatten_params``, at most ``max_log_params`` of them, each cut to MLflow's length limit."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    params: dict[str, Any] = run_config(args, model)
    if config.flatten_params:  # from the unstringified values
        model_config = getattr(model, "config", None)
        to_dict = getattr(model_config, "to_dict", None)
        model_config = to_dict() if callable(to_dict) else model_config
        raw = {**args.to_dict(), **{f"model_config/{k}": v for k, v in (
            model_config.items() if isinstance(model_config, dict) else ())}}
        params = flatten({k: raw.get(k, v) for k, v in params.items()})
    items = [(k, str(v)) for k, v in params.items()][:config.max_log_params]
    limit = MAX_PARAM_VAL_LENGTH  # 6000 characters in MLflow 3
    long = [k for k, v in items if len(v) > limit]
    if long:  # HF drops them silently
        logger.warning("%s: parameter values longer than %d characters are truncated: %s.",
                       plugin_name, limit, ", ".join(long))
    return {k: v[:limit] for k, v in items}


def log_params(client: Any, run_id: str, params: dict[str, str], tags: dict[str, str]) -> None:
    """Parameters in batches of MLflow's limit (100), then the tags in one more request."""
    from mlflow.entities import Param, RunTag
    from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH as BATCH

    items = list(params.items())
    for i in range(0, len(items), BATCH):
        client.log_batch(run_id, params=[Param(k, v) for k, v in items[i:i + BATCH]],
                         synchronous=True)
    if tags:
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)


def log_missing_params(client: Any, run: Any, params: dict[str, str], tags: dict[str, str],
                       plugin_name: str) -> None:
    """A reattached run keeps the parameters it has (MLflow parameters cannot change): a
    changed value is one warning, the missing ones are added."""
    logged = run.data.params
    changed = sorted(k for k, v in params.items() if k in logged and logged[k] != v)
    if changed:
        logger.warning("%s: run %s keeps the values it logged first for %s (MLflow parameters "
                       "cannot change).", plugin_name, run.info.run_id, ", ".join(changed))
    log_params(client, run.info.run_id, {k: v for k, v in params.items() if k not in logged},
               tags)


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """HF's ``flatten_dict``: nested dicts become ``outer.inner`` keys."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
