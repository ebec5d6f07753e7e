"""When the Kubeflow plugin posts: switched on by ``report_to`` only, off without a URL or with
DISABLE_KUBEFLOW_INTEGRATION, the installed entry point; its settings against the environment."""

from __future__ import annotations

import logging
import time

import pytest
from kubeflowtraining import INTERVAL, configure, train

from hooktrain.plugin import ConfigError

pytestmark = pytest.mark.timeout(120)


# ---- switched on by report_to only ----------------------------------------------------------


def test_report_to_none_posts_nothing_even_with_the_variables_set(
        monkeypatch, pki, token_file, status_server) -> None:
    server = status_server()
    configure(monkeypatch, server, pki, token_file)
    run = train(report_to="none")
    time.sleep(3 * INTERVAL)
    assert server.received == []
    assert "kubeflow" not in run.trainer.args.report_to
    from hooktrain_kubeflow import KubeflowPlugin

    assert not any(isinstance(p, KubeflowPlugin) for p in run.trainer.callbacks)


def test_no_url_switches_the_plugin_off_with_one_warning(caplog, token_file, monkeypatch):
    monkeypatch.setenv("KUBEFLOW_TRAINER_SERVER_TOKEN", str(token_file))
    caplog.set_level(logging.INFO, logger="hooktrain")
    run = train()
    run.trainer.train()  # a second train(), and a second Trainer: no second warning
    train(output_dir="out2")
    warnings = [r.getMessage() for r in caplog.records
                if r.name.startswith("hooktrain") if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "KUBEFLOW_TRAINER_SERVER_URL" in warnings[0], warnings
    assert run.faults == []
    assert run.plugin("KubeflowPlugin").wait(0)


def test_hfs_disable_variable_is_honoured(monkeypatch, pki, token_file, status_server, caplog):
    server = status_server()
    configure(monkeypatch, server, pki, token_file)
    monkeypatch.setenv("DISABLE_KUBEFLOW_INTEGRATION", "TRUE")
    caplog.set_level(logging.INFO, logger="hooktrain")
    run = train()
    time.sleep(3 * INTERVAL)
    assert server.received == [] and run.plugin("KubeflowPlugin").config.disabled is True
    assert not [r for r in caplog.records
                if r.name.startswith("hooktrain") if r.levelno >= logging.WARNING]


def test_installed_entry_point_and_report_to_all(caplog) -> None:
    from importlib.metadata import entry_points

    from hooktrain_kubeflow import KubeflowPlugin

    (ep,) = [e for e in entry_points(group="hooktrain.plugins") if e.name == "kubeflow"]
    assert ep.load() is KubeflowPlugin and ep.dist.name == "hooktrain-kubeflow"
    run = train(report_to="all", plugin_settings={})
    assert run.plugin(KubeflowPlugin).config.url is None  # outside a TrainJob: switched off
    assert run.output.global_step == 8


# ---- settings ----------------------------------------------------------------------------------


def test_settings_win_over_the_environment(monkeypatch, pki, token_file, status_server) -> None:
    from hooktrain_kubeflow import KubeflowPlugin, KubeflowSettings

    server = status_server()
    configure(monkeypatch, None, pki, token_file, url="https://unused.invalid/status")
    run = train(plugin_settings={"kubeflow": {"url": server.url, "interval": 0.5,
                                              "timeout": 2}})
    plugin = run.plugin(KubeflowPlugin)
    assert plugin.wait(10)
    assert (plugin.config.url, plugin.config.interval, plugin.config.timeout) == (
        server.url, 0.5, 2.0)
    assert plugin.config.token_file == str(token_file)  # from the environment
    assert plugin.config.ca_cert == str(pki.ca_cert)
    assert server.received[-1].status["progressPercentage"] == 100

    built = KubeflowPlugin()  # built by hand: the environment still applies
    assert built.config.url == "https://unused.invalid/status"
    assert KubeflowPlugin(KubeflowSettings(url="http://x/status")).config.token_file is None
    with pytest.raises(ConfigError, match="https:// or http:// URL"):
        KubeflowSettings(url="ftp://x")
    with pytest.raises(ConfigError, match="interval >= 0 and timeout > 0"):
        KubeflowSettings(url="http://x", timeout=0)
    with pytest.raises(ConfigError, match="Valid settings: url, token_file, ca_cert"):
        train(plugin_settings={"kubeflow": {"server": "x"}})
