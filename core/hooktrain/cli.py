"""The ``hooktrain`` command: ``demo``, ``train``, ``replay``, ``plugins`` and ``new-plugin``.

``hooktrain plugins`` imports neither torch nor any plugin's tracking library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from hooktrain.errors import HooktrainError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hooktrain", description="hooktrain command line")
    parser.add_argument("--version", action="version", version=f"hooktrain {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train an MLP on scikit-learn's digits")
    demo.add_argument("--output-dir", default="runs/digits")
    demo.add_argument("--epochs", type=int, default=8)
    demo.add_argument("--report-to", default="all", help='"all", "none" or a comma list')

    train = commands.add_parser(
        "train", help="train what a TOML config names",
        epilog="Override config values with --training.FIELD VALUE, --plugins.NAME.KEY VALUE "
               "or --run.KEY VALUE.",
    )
    train.add_argument("config", help="the TOML file ([training], [plugins.*], [run])")
    train.add_argument("--plugin-report", action="store_true",
                       help="print where the time went, per loop phase and per plugin and hook")

    replay = commands.add_parser(
        "replay", help="send a finished run to plugins installed afterwards (docs/replay.md)",
        epilog="Plugin settings: --config FILE ([plugins.NAME] tables) and --plugins.NAME.KEY "
               "VALUE.")
    replay.add_argument("output_dir", help="the run's output_dir")
    replay.add_argument("--report-to", required=True, help='"all" or a comma list of plugins')
    replay.add_argument("--new-run", action="store_true",
                        help="record a second copy where an earlier replay already sent the run")
    replay.add_argument("--config", help="take [plugins.NAME] settings from this TOML file")

    plugins = commands.add_parser("plugins", help="list installed plugins")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.add_argument("--config", help="apply report_to / disable_plugins from this file")

    new = commands.add_parser("new-plugin", help="create a plugin distribution to publish")
    new.add_argument("name", help="entry-point name, e.g. my_logger")
    new.add_argument("--directory", default=".")
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("hooktrain")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    options, extra = parser.parse_known_args(argv)
    if extra and options.command not in ("train", "replay"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if options.command == "demo":
            from hooktrain import demo

            demo.run(options.output_dir, options.epochs, options.report_to)
        elif options.command == "train":
            report = ["--training.plugin_report", "true"] if options.plugin_report else []
            train(options.config, [*extra, *report])
        elif options.command == "replay":
            return replay(options, extra)
        elif options.command == "plugins":
            list_plugins(as_json=options.json, config=options.config)
        elif options.command == "new-plugin":
            from hooktrain.scaffold import create_plugin

            root = create_plugin(options.name, options.directory)
            print(f"Created {root}. Try it: pip install -e '{root}[test]' && pytest {root}")
    except HooktrainError as exc:
        print(f"hooktrain: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if options.command != "train":
            print("hooktrain: interrupted", file=sys.stderr)
            return 130
        print(f"hooktrain: interrupted {_where_training_stopped()}", file=sys.stderr)
        return 130
    return 0


_RUNNING: dict[str, Any] = {}  # the trainer and config of `hooktrain train`, for Ctrl-C


def _where_training_stopped() -> str:
    """One line for Ctrl-C: the step reached, the newest checkpoint, the command to resume."""
    trainer = _RUNNING.get("trainer")
    if trainer is None:
        return "before training started."
    from hooktrain.checkpoint import newest_complete_checkpoint

    newest = newest_complete_checkpoint(trainer.args.output_dir)
    step = f"at step {trainer.state.global_step} of {trainer.state.max_steps}"
    if newest is None:
        return f"{step}; no checkpoint was saved, so a new run starts from scratch."
    command = " ".join(["hooktrain", "train", _RUNNING["config"], *_RUNNING["overrides"],
                        "--run.resume_from_checkpoint", "true"])
    return f"{step}; newest checkpoint {newest}. Resume with: {command}"


def train(config_path: str, overrides: list[str]) -> None:
    from hooktrain.config import build, load_config

    # modules named in [run] are found in the working directory, as with `python -m`
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    from hooktrain.args import TrainingArguments

    config = load_config(config_path, overrides, TrainingArguments)
    model = build(config.run, "model")
    if model is None:
        from hooktrain.errors import ConfigError

        raise ConfigError(f"{config_path}: [run] needs model = 'module:factory'.")
    from hooktrain.trainer import Trainer

    trainer = Trainer(
        model=model, args=config.args,
        train_dataset=build(config.run, "train_dataset"),
        eval_dataset=build(config.run, "eval_dataset"),
        compute_metrics=build(config.run, "compute_metrics"),
        compute_loss_func=build(config.run, "compute_loss_func"),
        data_collator=build(config.run, "data_collator"),
        processing_class=build(config.run, "processing_class"),
    )
    _RUNNING.update(trainer=trainer, config=config_path, overrides=overrides)
    output = trainer.train(resume_from_checkpoint=config.run.get("resume_from_checkpoint"))
    print(json.dumps({"global_step": output.global_step, **output.metrics}))


def replay(options: argparse.Namespace, overrides: list[str]) -> int:
    """``hooktrain replay``: 0 when every plugin took the run, 1 when one failed on the way."""
    from hooktrain.replay import replay, settings_from_command_line

    report_to = [n.strip() for n in options.report_to.split(",") if n.strip()]
    result = replay(options.output_dir, "all" if report_to == ["all"] else report_to,
                    new_run=options.new_run,
                    plugin_settings=settings_from_command_line(options.config, overrides))
    for name, run in result.replayed.items():
        print(f"replayed {result.entries} log entries (steps {result.first_step}-"
              f"{result.last_step}) into {name}{f' ({run})' if run else ''}")
    for failure in result.failed:
        print(f"hooktrain: plugin failed during the replay: {failure}", file=sys.stderr)
    return 1 if result.failed else 0


def list_plugins(as_json: bool = False, config: str | None = None) -> None:
    rows = plugin_rows(config)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("No hooktrain plugins installed (entry-point group hooktrain.plugins).")
        return
    width = max(len(row["name"]) for row in rows)  # columns stay aligned for long names
    source = max(len(f"{row['distribution']} {row['version']}") for row in rows)
    for row in rows:
        reason = f" ({row['reason']})" if row["reason"] else ""
        print(f"{row['name']:<{width}}  {row['distribution'] + ' ' + row['version']:<{source}}  "
              f"{row['status']}{reason}")
        if row["hooks"]:
            print(f"{'':<{width}}  hooks: {', '.join(row['hooks'])}")


def plugin_rows(config: str | None = None) -> list[dict[str, Any]]:
    """One row per installed plugin: status ``enabled`` / ``disabled`` / ``broken``."""
    from hooktrain.plugin_host import discovery

    report_to: Any = "all"
    disabled = {name: discovery.DISABLE_ENV for name in discovery.env_disabled()}
    if config is not None:
        import tomllib

        from hooktrain.args import normalise_report_to
        from hooktrain.errors import ConfigError

        try:
            with open(config, "rb") as handle:
                training = tomllib.load(handle).get("training", {})
        except OSError as exc:
            raise ConfigError(f"Cannot read config file {config}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config} is not valid TOML: {exc}") from exc
        report_to = normalise_report_to(training.get("report_to", "all"))
        blocked = training.get("disable_plugins", [])
        if isinstance(blocked, str):
            blocked = [name.strip() for name in blocked.split(",") if name.strip()]
        for name in blocked:
            disabled.setdefault(name, "disable_plugins")
    rows = []
    for name, plugin in discovery.installed_plugins().items():
        row: dict[str, Any] = {"name": name, "distribution": plugin.distribution,
                               "version": plugin.version, "hooks": [], "status": "enabled",
                               "reason": ""}
        if name in disabled:  # blocked plugins are never imported, not even to list hooks
            row.update(status="disabled", reason=f"blocked by {disabled[name]}")
            rows.append(row)
            continue
        try:
            row["hooks"] = discovery.hook_names(load_bounded(plugin.entry_point))
        except Exception as exc:  # noqa: BLE001 - report, do not crash the listing
            row.update(status="broken", reason=f"{type(exc).__name__}: {exc}")
        else:
            unknown = discovery.unknown_hooks(row["hooks"])
            if unknown:
                row.update(status="broken",
                           reason=f"implements {', '.join(unknown)}, which is no hooktrain hook")
            elif report_to == "none":
                row.update(status="disabled", reason='report_to="none"')
            elif report_to == "all" and discovery.autoload_disabled():
                row.update(status="disabled", reason=f"{discovery.NO_AUTOLOAD_ENV} is set")
            elif report_to != "all" and name not in report_to:
                row.update(status="disabled", reason="not in report_to")
        rows.append(row)
    return rows


IMPORT_TIMEOUT = 10.0  # seconds a plugin's import may take in `hooktrain plugins`


class ImportTimeout(Exception):
    pass


def load_bounded(entry_point: Any, timeout: float | None = None) -> Any:
    """``entry_point.load()`` on a daemon thread, given up after ``timeout`` seconds, so one
    plugin that hangs at import cannot hang the listing."""
    import threading

    timeout = IMPORT_TIMEOUT if timeout is None else timeout
    outcome: dict[str, Any] = {}

    def load() -> None:
        try:
            outcome["value"] = entry_point.load()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=load, name=f"import-{entry_point.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ImportTimeout(f"its import did not finish within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


if __name__ == "__main__":
    sys.exit(main())
