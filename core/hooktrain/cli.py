"""The ``hooktrain`` command: ``demo``, ``plugins`` and ``train``.

``hooktrain plugins`` imports neither torch nor any plugin's tracking library.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hooktrain", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train an MLP on scikit-learn's digits")
    demo.add_argument("--output-dir", default="runs/digits")
    demo.add_argument("--epochs", type=int, default=8)
    demo.add_argument("--report-to", default="all", help='"all", "none" or a comma list')

    plugins = commands.add_parser("plugins", help="list installed plugins")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")

    options = parser.parse_args(argv)
    if options.command == "demo":
        from hooktrain import demo as demo_module

        demo_module.run(options.output_dir, options.epochs, options.report_to)
        return 0
    if options.command == "plugins":
        return list_plugins(as_json=options.json)
    return 2  # pragma: no cover - argparse rejects unknown commands


def list_plugins(as_json: bool = False) -> int:
    from hooktrain.plugins import discovery

    rows = plugin_rows(discovery)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No hooktrain plugins installed (entry-point group hooktrain.plugins).")
        return 0
    for row in rows:
        print(f"{row['name']:<14} {row['distribution']} {row['version']}  [{row['status']}]"
              + (f" {row['reason']}" if row["reason"] else ""))
        if row["hooks"]:
            print(f"{'':<14} hooks: {', '.join(row['hooks'])}")
    return 0


def plugin_rows(discovery: Any) -> list[dict[str, Any]]:
    """One row per installed plugin: status ``enabled`` / ``disabled`` / ``broken``."""
    disabled = {name: discovery.DISABLE_ENV for name in discovery.env_disabled()}
    rows = []
    for name, plugin in discovery.installed_plugins().items():
        row: dict[str, Any] = {"name": name, "distribution": plugin.distribution,
                               "version": plugin.version, "hooks": [], "status": "enabled",
                               "reason": ""}
        if name in disabled:
            row.update(status="disabled", reason=f"blocked by {disabled[name]}")
        elif discovery.autoload_disabled():
            row.update(status="disabled", reason=f"{discovery.NO_AUTOLOAD_ENV} is set")
        else:
            try:
                row["hooks"] = discovery.hook_names(plugin.entry_point.load())
            except Exception as exc:  # noqa: BLE001 - report, do not crash the listing
                row.update(status="broken", reason=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    return rows


if __name__ == "__main__":
    sys.exit(main())
