"""Fully sharded data parallel: PyTorch's FSDP2 (``fully_shard``) for HF's ``fsdp`` arguments.

hooktrain shards nothing itself. Under ``torchrun`` with ``fsdp`` set, the Trainer applies
``torch.distributed.fsdp.fully_shard`` to the chosen submodules and then to the root, after the
model is on its device and before the optimizer is built, so parameters, gradients and AdamW
state are DTensors sharded over the ranks. Checkpoints are written with Distributed Checkpoint
(``torch.distributed.checkpoint``): every rank writes its own shard, and a checkpoint loads
resharded on any number of processes (one, without a process group, included).

``fsdp`` (a string of HF's options, or a list): ``full_shard`` (parameters resharded after each
forward) or ``shard_grad_op`` (kept gathered from forward to backward: faster, more memory),
plus ``offload`` (parameters and optimizer state on the CPU, for a GPU run) and ``auto_wrap``
(HF's spelling; the units are the model's ``_no_split_modules`` classes unless ``fsdp_config``
names others). ``fsdp=True`` is ``"full_shard auto_wrap"``, as in transformers 5.
``fsdp_config``: see :data:`CONFIG_KEYS` and docs/distributed.md.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hooktrain.errors import ConfigError

if TYPE_CHECKING:  # checking the arguments imports no torch (hooktrain train --help)
    import torch

logger = logging.getLogger("hooktrain")

#: a checkpoint's sharded model and optimizer: a Distributed Checkpoint directory
SHARDED = "sharded"
SHARDING = ("full_shard", "shard_grad_op")
MODIFIERS = ("offload", "auto_wrap")
REFUSED = {
    "no_shard": "no_shard is data parallel without sharding: leave fsdp unset and torchrun "
                "uses DistributedDataParallel",
    "hybrid_shard": "hybrid sharding (a 2-D mesh over nodes) is not supported; use full_shard",
    "hybrid_shard_zero2": "hybrid sharding (a 2-D mesh over nodes) is not supported; use "
                          "shard_grad_op",
}
#: ``fsdp_config`` keys (HF's, with or without the ``fsdp_`` prefix) and what they do here
CONFIG_KEYS = {
    "transformer_layer_cls_to_wrap": "class names whose modules are sharded as units",
    "min_num_params": "also shard every leaf module with at least this many parameters as a "
                      "unit (0: off)",
    "reshard_after_forward": "free gathered parameters after forward (default: full_shard)",
    "activation_checkpointing": "recompute the wrapped units' activations in backward",
    "offload_params": "keep parameters, gradients and optimizer state on the CPU",
    "cpu_offload": "the same as offload_params",
    "mixed_precision": '{"param_dtype": "bfloat16", "reduce_dtype": "float32"}: compute '
                       "and gradient reduction dtypes (default: bf16/fp16 arguments)",
    "version": "2 (hooktrain uses FSDP2)",
    "state_dict_type": "SHARDED_STATE_DICT (checkpoints are always sharded; FULL_STATE_DICT, "
                       "HF's default, is accepted with a warning)",
}
#: keys transformers adds for TPUs: accepted while false
XLA_KEYS = ("xla", "xla_fsdp_v2", "xla_fsdp_grad_ckpt", "xla_fsdp_settings")
#: FSDP1 tuning keys HF accepts; FSDP2 has no such knob, so they are accepted and ignored
NO_EFFECT = ("backward_prefetch", "forward_prefetch", "limit_all_gathers", "use_orig_params",
             "sync_module_states", "cpu_ram_efficient_loading", "auto_wrap_policy")
#: the dtype names mixed_precision takes, as torch's attribute names
DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
          "float32": "float32", "fp32": "float32"}


@dataclass(frozen=True)
class FsdpPlan:
    """What ``fsdp`` and ``fsdp_config`` ask for, checked."""

    reshard_after_forward: bool
    offload: bool
    layer_classes: tuple[str, ...]
    min_num_params: int
    activation_checkpointing: bool
    param_dtype: str | None  #: torch's name: "bfloat16", "float16", "float32"
    reduce_dtype: str | None


def plan_from(args: Any) -> FsdpPlan | None:
    """The checked plan for ``args.fsdp``/``args.fsdp_config``; None when FSDP is off.

    Raises :class:`ConfigError` naming the bad value and the allowed ones."""
    options = _options(args.fsdp)
    config = _config(args.fsdp_config)
    if not options:
        if config:  # HF warns and trains unsharded: scripts that pass both stay runnable
            logger.warning("fsdp_config is set but fsdp is not, so the model is not sharded: "
                           "set fsdp='full_shard' (or 'shard_grad_op') to shard it.")
        return None
    sharding = [option for option in options if option in SHARDING]
    if len(sharding) > 1:
        raise ConfigError(f"fsdp has both {sharding[0]!r} and {sharding[1]!r}: choose one.")
    reshard = sharding != ["shard_grad_op"]
    reshard = _bool(config, "reshard_after_forward", reshard)
    version = config.get("version", 2)
    try:
        major = float(version)
    except (TypeError, ValueError):
        major = None
    if major != 2:
        raise ConfigError(f"fsdp_config version {version!r} is not supported: hooktrain uses "
                          "FSDP2 (torch.distributed.fsdp.fully_shard); set version 2 or drop "
                          "the key.")
    state_dict_type = str(config.get("state_dict_type", "SHARDED_STATE_DICT")).upper()
    if state_dict_type == "FULL_STATE_DICT":
        logger.warning("fsdp_config state_dict_type FULL_STATE_DICT: hooktrain's checkpoints "
                       "under FSDP are always sharded (each process writes its shard, and they "
                       "resume on any number of processes); trainer.save_model() writes the "
                       "full weights.")
    elif state_dict_type != "SHARDED_STATE_DICT":
        raise ConfigError(f"fsdp_config state_dict_type {state_dict_type!r} is not one of "
                          "SHARDED_STATE_DICT, FULL_STATE_DICT.")
    layers = config.get("transformer_layer_cls_to_wrap") or ()
    if isinstance(layers, str):
        layers = tuple(name.strip() for name in layers.split(",") if name.strip())
    if not isinstance(layers, (list, tuple)) or not all(isinstance(n, str) for n in layers):
        raise ConfigError("fsdp_config transformer_layer_cls_to_wrap must be a class name or a "
                          f"list of class names, got {layers!r}.")
    min_params = config.get("min_num_params", 0)
    if not isinstance(min_params, int) or isinstance(min_params, bool) or min_params < 0:
        raise ConfigError(f"fsdp_config min_num_params must be a whole number >= 0, got "
                          f"{min_params!r}.")
    offload = "offload" in options or _bool(config, "offload_params", False) \
        or _bool(config, "cpu_offload", False)
    param_dtype, reduce_dtype = _precision(config.get("mixed_precision"), args)
    return FsdpPlan(
        reshard_after_forward=reshard, offload=offload,
        layer_classes=tuple(layers), min_num_params=min_params,
        activation_checkpointing=_bool(config, "activation_checkpointing", False),
        param_dtype=param_dtype, reduce_dtype=reduce_dtype,
    )


def _options(value: Any) -> list[str]:
    if value is None or value is False or value == "":
        return []
    if value is True:  # transformers 5's fsdp=True (and a bare --fsdp)
        return ["full_shard", "auto_wrap"]
    if isinstance(value, str):
        items = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple)):
        items = [getattr(item, "value", item) for item in value]  # HF's FSDPOption enum
    else:
        raise ConfigError(f"fsdp must be a string like 'full_shard auto_wrap' or a list of "
                          f"options, got {value!r}.")
    allowed = SHARDING + MODIFIERS
    for item in items:
        if item in REFUSED:
            raise ConfigError(f"fsdp option {item!r}: {REFUSED[item]}.")
        if item not in allowed:
            raise ConfigError(f"Unknown fsdp option {item!r}. Allowed: {', '.join(allowed)} "
                              "(e.g. fsdp='full_shard auto_wrap').")
    return [str(item) for item in items]


def _config(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, (str, Path)):
        path = Path(value)
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"fsdp_config {str(path)!r} cannot be read ({exc}); pass a dict "
                              "or the path of a JSON file.") from exc
        except ValueError as exc:
            raise ConfigError(f"fsdp_config file {path} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"fsdp_config must be a dict or a JSON file's path, got {value!r}.")
    config = {}
    for key, item in value.items():
        name = key[len("fsdp_"):] if key.startswith("fsdp_") else key
        if name in NO_EFFECT:
            logger.info("fsdp_config %r has no effect with FSDP2; ignored.", key)
            continue
        if name in XLA_KEYS:
            if item:
                raise ConfigError(f"fsdp_config {key!r} is for TPUs (torch_xla), which hooktrain "
                                  "does not support; set it to false or drop it.")
            continue
        if name not in CONFIG_KEYS:
            raise ConfigError(f"Unknown fsdp_config key {key!r}. Known keys: "
                              f"{', '.join(CONFIG_KEYS)} (and FSDP1's {', '.join(NO_EFFECT)}, "
                              "which have no effect).")
        config[name] = item
    return config


def _bool(config: dict[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ConfigError(f"fsdp_config {key} must be true or false, got {value!r}.")
    return value


def _precision(value: Any, args: Any) -> tuple[str | None, str | None]:
    if value is None:  # the arguments' precision: compute in it, reduce gradients in fp32
        if getattr(args, "bf16", False):
            return "bfloat16", "float32"
        if getattr(args, "fp16", False):
            return "float16", "float32"
        return None, None
    if not isinstance(value, dict) or set(value) - {"param_dtype", "reduce_dtype"}:
        raise ConfigError('fsdp_config mixed_precision must be {"param_dtype": ..., '
                          f'"reduce_dtype": ...}}, got {value!r}.')
    dtypes = []
    for key in ("param_dtype", "reduce_dtype"):
        name = value.get(key)
        if name is not None and name not in DTYPES:
            raise ConfigError(f"fsdp_config mixed_precision {key} {name!r} is not one of "
                              f"{', '.join(DTYPES)}.")
        dtypes.append(DTYPES[name] if name is not None else None)
    return dtypes[0], dtypes[1]


# ---- sharding the model ---------------------------------------------------------------------


def is_sharded(model: Any) -> bool:
    """True for a model ``fully_shard`` has been applied to."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without FSDP2
        return False
    return isinstance(model, FSDPModule)


def units(model: torch.nn.Module, plan: FsdpPlan) -> list[torch.nn.Module]:
    """The submodules sharded as units before the root, innermost first."""
    classes = set(plan.layer_classes)
    if not classes:  # HF's default policy: the model's own "do not split" classes
        classes = set(getattr(model, "_no_split_modules", None) or ())
    known = {type(module).__name__ for module in model.modules()}
    missing = sorted(set(plan.layer_classes) - known)
    if missing:
        raise ConfigError(f"fsdp_config transformer_layer_cls_to_wrap names {missing}, which "
                          f"{type(model).__name__} does not contain. Its module classes: "
                          f"{', '.join(sorted(known))}.")

    def is_unit(module: torch.nn.Module) -> bool:
        if type(module).__name__ in classes:
            return True
        # size-based: a leaf module (no children) holding at least min_num_params
        return bool(plan.min_num_params) and not any(True for _ in module.children()) and \
            sum(p.numel() for p in module.parameters()) >= plan.min_num_params

    chosen = [module for module in model.modules() if module is not model and is_unit(module)]
    return list(reversed(chosen))  # children before their parents, as fully_shard expects


def shard(model: torch.nn.Module, plan: FsdpPlan, device: torch.device) -> torch.nn.Module:
    """Apply ``fully_shard`` to the plan's units, then the root; returns the same module."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    from hooktrain import distributed

    if is_sharded(model):  # a second train() of the same Trainer
        return model
    mesh = init_device_mesh(device.type, (distributed.world_size(),))
    options: dict[str, Any] = {"mesh": mesh, "reshard_after_forward": plan.reshard_after_forward}
    if plan.param_dtype is not None or plan.reduce_dtype is not None:
        options["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=plan.param_dtype and getattr(torch, plan.param_dtype),
            reduce_dtype=plan.reduce_dtype and getattr(torch, plan.reduce_dtype))
    if plan.offload and device.type == "cpu":
        logger.warning("fsdp offload keeps parameters and optimizer state on the CPU, which is "
                       "where this run trains already: ignored.")
    elif plan.offload:
        options["offload_policy"] = CPUOffloadPolicy()
    chosen = units(model, plan)
    if not chosen:
        logger.warning(
            "FSDP shards %s as one unit: every forward gathers the whole model on every "
            "process. Name its layer classes in fsdp_config transformer_layer_cls_to_wrap (or "
            "set min_num_params) so it is gathered one unit at a time.", type(model).__name__)
    if plan.activation_checkpointing:
        if not chosen:
            raise ConfigError("fsdp_config activation_checkpointing needs units to recompute: "
                              "set transformer_layer_cls_to_wrap (a transformers model's "
                              "_no_split_modules are the default) or min_num_params.")
        from torch.distributed._composable import checkpoint

        for module in chosen:
            checkpoint(module)  # composable: the parameter names stay as they are
    for module in chosen:
        fully_shard(module, **options)
    fully_shard(model, **options)
    logger.info("FSDP: %d unit(s) and the root sharded over %d processes (%s).", len(chosen),
                distributed.world_size(), ", ".join(sorted({type(m).__name__ for m in chosen}))
                or "root only")
    return model


def check_evaluation_sets(eval_dataset: Any) -> None:
    """Under FSDP each process must run every evaluation forward: a set with fewer samples
    than processes leaves one with nothing to run (the evaluation loop would fail then)."""
    from hooktrain import distributed

    named = eval_dataset.items() if isinstance(eval_dataset, dict) else [("", eval_dataset)]
    for name, dataset in named:
        if hasattr(dataset, "__len__") and len(dataset) < distributed.world_size():
            label = f"eval_dataset[{name!r}]" if name else "eval_dataset"
            raise ConfigError(f"{label} has {len(dataset)} samples for "
                              f"{distributed.world_size()} processes: under FSDP every process "
                              "runs each evaluation forward, so it needs at least one sample "
                              "per process.")


# ---- checkpoints ----------------------------------------------------------------------------


def save_sharded(model: torch.nn.Module, optimizer: Any, directory: Path) -> None:
    """Every rank writes its shard of the model and optimizer into ``directory`` (collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(directory))


def load_sharded(model: torch.nn.Module, optimizer: Any, directory: Path) -> None:
    """Read a sharded checkpoint into ``model`` (and ``optimizer``), resharded for this run's
    processes: sharded or not, any world size."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )

    from hooktrain import distributed

    one_process = distributed.world_size() == 1  # no process group: read every shard here

    def load(state: dict[str, Any]) -> None:
        with warnings.catch_warnings():  # "assuming ... a single process": we are, on purpose
            warnings.filterwarnings("ignore", "torch.distributed is disabled")
            dcp.load(state, checkpoint_id=str(directory), no_dist=one_process)

    if optimizer is None:
        state = {"model": get_model_state_dict(model)}
        load(state)
        set_model_state_dict(model, state["model"])
        return
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    load(state)
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optimizer"])


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on the CPU of rank zero (an empty dict elsewhere). Collective:
    every rank calls it; the parameters are gathered one at a time, never all on one device."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=True))
