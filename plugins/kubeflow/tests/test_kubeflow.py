"""The Kubeflow plugin against a Kubeflow Trainer status server of the test's own.

Read back: the bodies the server received, checked against the TrainJob status schema and
against ``state.log_history``; the bearer token; TLS against the configured CA; the throttle;
and that a server that is down, slow or refusing never slows or stops training.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import socket
import time
from pathlib import Path

import pytest
from hooktrain import TrainerCallback
from hooktrain.errors import ConfigError
from hooktrain.testing import run_training
from status_server import STATUS_PATH, TOKEN, Received, StatusServer, check_body

pytestmark = pytest.mark.timeout(120)

INTERVAL = 0.2  # the tests' throttle; the default is 5 s


class Pace(TrainerCallback):
    """Makes each step take ``seconds``, so a run spans several throttle intervals.

    Sleeping in ``on_step_begin`` also gives the sender thread time to take the train-begin
    status before the first step's status supersedes it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_begin(self, args, state, control, **kwargs):
        time.sleep(self.seconds)


class Boom(TrainerCallback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise RuntimeError("boom")


def configure(monkeypatch, server: StatusServer | None, pki=None, token: Path | None = None,
              url: str | None = None) -> None:
    """The variables a TrainJob's controller injects."""
    monkeypatch.setenv("KUBEFLOW_TRAINER_SERVER_URL", url or server.url)
    if token is not None:
        monkeypatch.setenv("KUBEFLOW_TRAINER_SERVER_TOKEN", str(token))
    if pki is not None:
        monkeypatch.setenv("KUBEFLOW_TRAINER_SERVER_CA_CERT", str(pki.ca_cert))


def train(**kwargs):
    kwargs.setdefault("output_dir", "out")
    kwargs.setdefault("report_to", ["kubeflow"])
    kwargs.setdefault("plugin_settings", {"kubeflow": {"interval": INTERVAL}})
    return run_training(**kwargs)


def plugin_of(trainer):
    from hooktrain_kubeflow import KubeflowPlugin

    (plugin,) = [p for p in trainer.callbacks if isinstance(p, KubeflowPlugin)]
    return plugin


def latest_values(log_history: list[dict], up_to: float = math.inf) -> dict[str, float]:
    """The last value of every numeric key logged at a step <= up_to."""
    latest: dict[str, float] = {}
    for entry in log_history:
        if entry["step"] <= up_to:
            latest.update({k: v for k, v in entry.items() if k != "step"
                           and isinstance(v, (int, float)) and not isinstance(v, bool)})
    return latest


def logged_metrics(received: Received) -> dict[str, float]:
    return {k: float(v) for k, v in received.metrics.items()
            if k not in ("current_step", "total_steps", "current_epoch")}


# ---- what is posted --------------------------------------------------------------------------


def test_progress_eta_and_metrics_over_https(monkeypatch, pki, token_file, status_server) -> None:
    server = status_server()
    configure(monkeypatch, server, pki, token_file)
    run = train(plugins=[Pace(0.06)], logging_steps=1, eval_strategy="steps", eval_steps=4)
    assert plugin_of(run.trainer).wait(10)
    history = run.trainer.state.log_history
    got = server.received

    assert len(got) >= 4, [r.status for r in got]  # begin, a few throttled updates, the end
    for r in got:
        check_body(r.body)
        assert r.path == STATUS_PATH
        assert r.headers["Authorization"] == f"Bearer {TOKEN}"
        assert r.headers["Content-Type"] == "application/json"
    assert server.handshake_errors == []

    # train begin: 0 %, no ETA yet, the run's size
    assert got[0].status["progressPercentage"] == 0
    assert "estimatedRemainingSeconds" not in got[0].status
    assert got[0].metrics == {"current_step": "0", "total_steps": "8", "current_epoch": "0"}

    # during the run: progress is the step's share, capped at 99, never going back
    *during, final = got
    steps = [int(r.metrics["current_step"]) for r in during]
    assert steps == sorted(steps) and steps[-1] >= 4
    for r, step in zip(during, steps):
        assert r.status["progressPercentage"] == min(99, step * 100 // 8)
        assert r.metrics["total_steps"] == "8"
        if step:
            assert r.status["estimatedRemainingSeconds"] >= 0
            # each metric at its latest value: logged at this step (on_log) or before (step end)
            values, now, before = logged_metrics(r), latest_values(history, step), \
                latest_values(history, step - 1)
            assert set(before) <= set(values) <= set(now)
            assert all(values[k] in (now[k], before.get(k)) for k in values), (step, values)
    assert all(r.status["progressPercentage"] < 100 for r in during)

    # train end: 100 %, ETA 0, every metric ever logged at its latest value, exactly
    assert final.status["progressPercentage"] == 100
    assert final.status["estimatedRemainingSeconds"] == 0
    assert logged_metrics(final) == latest_values(history)
    assert {"loss", "eval_loss", "train_runtime", "train_loss", "total_flos"} <= set(final.metrics)
    assert final.metrics["current_step"] == "8" and final.metrics["current_epoch"] == "2.0"
    assert final.metrics["total_flos"] == str(history[-1]["total_flos"])  # ints stay ints

    # at most one POST per interval (the final one is sent at once)
    gaps = [b.at - a.at for a, b in itertools.pairwise(during)]
    assert min(gaps) >= INTERVAL * 0.95, gaps


def test_superseded_progress_is_dropped_and_nothing_else(
        monkeypatch, pki, token_file, status_server) -> None:
    """Default 5 s interval, a run shorter than that: the start, then the end, with every value."""
    server = status_server()
    configure(monkeypatch, server, pki, token_file)
    run = train(plugin_settings={}, eval_strategy="steps", eval_steps=2)
    assert plugin_of(run.trainer).wait(10)
    assert plugin_of(run.trainer).config.interval == 5.0
    # the start (or, should the sender thread be slow to run, a later step's status), the end
    progress = [r.status["progressPercentage"] for r in server.received]
    assert len(progress) <= 2 and progress[-1] == 100 and progress[0] < 100, progress
    assert logged_metrics(server.received[-1]) == latest_values(run.trainer.state.log_history)


def test_evaluate_after_train_posts_nothing_more(monkeypatch, pki, token_file, status_server):
    server = status_server()
    configure(monkeypatch, server, pki, token_file)
    run = train()
    plugin = plugin_of(run.trainer)
    assert plugin.wait(10)
    count = len(server.received)
    run.trainer.evaluate()
    assert plugin.wait(10) and len(server.received) == count


def test_a_failed_run_posts_where_it_stopped(monkeypatch, pki, token_file, status_server):
    server = status_server()
    configure(monkeypatch, server, pki, token_file)
    with pytest.raises(RuntimeError, match="boom"):
        train(plugins=[Boom(at=5)])
    last = wait_for(server, 5)
    assert last.status["progressPercentage"] == 62  # 5 of 8 steps, not 100
    assert "estimatedRemainingSeconds" not in last.status
    assert float(last.metrics["loss"]) > 0  # the step-4 log


def test_a_resumed_run_continues_the_progress(monkeypatch, pki, token_file, status_server):
    server = status_server()
    configure(monkeypatch, server, pki, token_file)
    with pytest.raises(RuntimeError, match="boom"):
        train(plugins=[Boom(at=7)], save_strategy="steps", save_steps=4)
    wait_for(server, 7)  # the failed run's last status
    server.received.clear()
    run = train(plugins=[Pace(0.02)], resume_from_checkpoint=True, save_strategy="steps",
                save_steps=4)
    assert plugin_of(run.trainer).wait(10)
    history = run.trainer.state.log_history
    first, final = server.received[0], server.received[-1]
    assert first.metrics["current_step"] == "4"  # resumed at the checkpoint's step
    assert first.status["progressPercentage"] == 50  # not 0: the progress continues
    assert logged_metrics(first) == latest_values(history, 4)  # the checkpoint's values
    assert final.status["progressPercentage"] == 100
    assert logged_metrics(final) == latest_values(history)


def test_the_eta_is_this_runs_pace_times_the_steps_left(monkeypatch) -> None:
    from hooktrain import TrainerState
    from hooktrain_kubeflow import KubeflowPlugin, KubeflowSettings

    plugin = KubeflowPlugin(KubeflowSettings(url="http://127.0.0.1:9/status"))
    now = [100.0]
    monkeypatch.setattr("hooktrain_kubeflow.time.monotonic", lambda: now[0])
    plugin._start, plugin._start_step = 100.0, 40  # resumed at step 40 of 100
    status = plugin._status(TrainerState(global_step=40, max_steps=100, epoch=0.4))
    assert status["progressPercentage"] == 40 and "estimatedRemainingSeconds" not in status
    now[0] = 130.0  # 10 steps in 30 s: 3 s a step, 50 steps left
    status = plugin._status(TrainerState(global_step=50, max_steps=100, epoch=0.5))
    assert status == {**status, "progressPercentage": 50, "estimatedRemainingSeconds": 150}
    done = plugin._status(TrainerState(global_step=100, max_steps=100), end="finished")
    assert (done["progressPercentage"], done["estimatedRemainingSeconds"]) == (100, 0)
    failed = plugin._status(TrainerState(global_step=99, max_steps=100), end="failed")
    assert failed["progressPercentage"] == 99 and "estimatedRemainingSeconds" not in failed


# ---- never slower, never stopped --------------------------------------------------------------


def wait_for(server: StatusServer, step: int) -> Received:
    """The status for ``step`` once it arrived (a failed run's last one: no Trainer to wait on)."""
    deadline = time.monotonic() + 10
    while not server.received or server.received[-1].metrics.get("current_step") != str(step):
        assert time.monotonic() < deadline, [r.status for r in server.received]
        time.sleep(0.02)
    return server.received[-1]


def timed_train(**kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    run = train(**kwargs)
    return time.perf_counter() - start, run


def test_a_slow_server_does_not_slow_training(monkeypatch, pki, token_file, status_server):
    baseline, _ = timed_train(report_to="none", logging_steps=1)
    server = status_server(delay=2.0)
    configure(monkeypatch, server, pki, token_file)
    took, run = timed_train(logging_steps=1)
    logs = len(run.trainer.state.log_history)
    assert took < baseline + 1.0, (took, baseline)
    assert took < 2.0 * logs / 4, (took, logs)  # blocking would cost 2 s per log
    assert plugin_of(run.trainer).wait(15)
    # the start went out at once; everything during its 2 s in flight was superseded by the end
    progress = [r.status["progressPercentage"] for r in server.received]
    assert len(progress) <= 2 and progress[-1] == 100 and progress[0] < 100, progress
    assert logged_metrics(server.received[-1]) == latest_values(run.trainer.state.log_history)


def test_a_server_that_is_down_does_not_slow_training(monkeypatch, pki, token_file, caplog):
    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configure(monkeypatch, None, pki, token_file, url=f"https://127.0.0.1:{port}/status")
    baseline, _ = timed_train(report_to="none")
    caplog.set_level(logging.INFO, logger="hooktrain")
    took, run = timed_train(plugins=[Pace(0.05)])
    assert took < baseline + 0.4 + 1.0, (took, baseline)
    assert run.output.global_step == 8
    assert run.trainer.callback_handler.faults == []
    assert plugin_of(run.trainer).wait(10)
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain") if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "could not post the training status" in warnings[0]
    assert "ConnectionRefusedError" in warnings[0]


def test_a_server_slower_than_the_timeout_costs_one_warning(
        monkeypatch, pki, token_file, status_server, caplog):
    server = status_server(delay=1.5)
    configure(monkeypatch, server, pki, token_file)
    caplog.set_level(logging.INFO, logger="hooktrain")
    took, run = timed_train(plugin_settings={"kubeflow": {"interval": INTERVAL, "timeout": 0.3}})
    assert took < 1.5 and run.trainer.callback_handler.faults == []
    start = time.monotonic()
    assert plugin_of(run.trainer).wait(5)
    assert time.monotonic() - start < 2 * 0.3 + 1.0  # in flight, then the final one: both bounded
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("hooktrain") if "kubeflow" in r.getMessage()]
    assert [level for level, _ in messages] == ["WARNING", "INFO"], messages
    assert "TimeoutError" in messages[0][1] and "the final status" in messages[1][1]


def test_a_server_error_is_retried_with_the_latest_status(
        monkeypatch, pki, token_file, status_server, caplog):
    server = status_server()
    server.answer = lambda n: 503 if n == 1 else 200
    configure(monkeypatch, server, pki, token_file)
    caplog.set_level(logging.INFO, logger="hooktrain")
    run = train(plugins=[Pace(0.06)])
    assert plugin_of(run.trainer).wait(10)
    assert run.trainer.callback_handler.faults == []
    assert len(server.received) >= 3 and server.received[-1].status["progressPercentage"] == 100
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain") if "kubeflow" in r.getMessage()]
    assert sum("HTTP 503" in m for m in messages) == 1
    assert any("answers again" in m for m in messages)


# ---- refused for good: isolated, training finishes ---------------------------------------------


def assert_isolated(run, match: str) -> None:
    assert run.output.global_step == 8
    faults = run.trainer.callback_handler.faults
    assert [f.plugin.split()[0] for f in faults] == ["kubeflow"], faults
    assert re.search(match, faults[0].error), faults[0].error


def test_tls_is_verified_against_the_configured_ca(monkeypatch, pki, token_file, status_server):
    server = status_server(tls="rogue")  # a certificate from a CA the plugin does not trust
    configure(monkeypatch, server, pki, token_file)
    run = train(plugins=[Pace(0.05)])
    assert_isolated(run, "CERTIFICATE_VERIFY_FAILED")
    assert server.received == [] and server.handshake_errors

    server = status_server(tls="trusted")  # ... and without the CA, the system store is used
    monkeypatch.delenv("KUBEFLOW_TRAINER_SERVER_CA_CERT")
    configure(monkeypatch, server, token=token_file)
    run = train(plugins=[Pace(0.05)], output_dir="out2")
    assert_isolated(run, "CERTIFICATE_VERIFY_FAILED")
    assert server.received == []


def test_a_wrong_token_is_isolated(monkeypatch, pki, tmp_path, status_server):
    server = status_server()
    server.answer = lambda n: 401
    token = tmp_path / "wrong-token"
    token.write_text("not-the-token")
    configure(monkeypatch, server, pki, token)
    run = train(plugins=[Pace(0.05)])
    assert_isolated(run, r"HTTP 401 .*refused by the test server")
    assert [r.headers["Authorization"] for r in server.received] == ["Bearer not-the-token"]


@pytest.mark.parametrize("missing", ["token", "ca"])
def test_a_missing_file_is_isolated_at_train_begin(missing, monkeypatch, pki, tmp_path, token_file,
                                                   status_server):
    server = status_server()
    configure(monkeypatch, server, pki, token_file)
    variable = {"token": "KUBEFLOW_TRAINER_SERVER_TOKEN", "ca": "KUBEFLOW_TRAINER_SERVER_CA_CERT"}
    monkeypatch.setenv(variable[missing], str(tmp_path / "missing"))
    run = train()
    assert_isolated(run, f"cannot (read|load) the {'token file' if missing == 'token' else 'CA'}"
                         f".*missing.*{variable[missing]}")
    assert run.trainer.callback_handler.faults[0].hook == "on_train_begin"
    assert server.received == []


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
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain") if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "KUBEFLOW_TRAINER_SERVER_URL" in warnings[0], warnings
    assert run.trainer.callback_handler.faults == []
    assert plugin_of(run.trainer).wait(0)


def test_hfs_disable_variable_is_honoured(monkeypatch, pki, token_file, status_server, caplog):
    server = status_server()
    configure(monkeypatch, server, pki, token_file)
    monkeypatch.setenv("DISABLE_KUBEFLOW_INTEGRATION", "TRUE")
    caplog.set_level(logging.INFO, logger="hooktrain")
    run = train()
    time.sleep(3 * INTERVAL)
    assert server.received == [] and plugin_of(run.trainer).config.disabled is True
    assert not [r for r in caplog.records if r.name.startswith("hooktrain") if r.levelno >= logging.WARNING]


def test_installed_entry_point_and_report_to_all(caplog) -> None:
    from importlib.metadata import entry_points

    from hooktrain_kubeflow import KubeflowPlugin

    (ep,) = [e for e in entry_points(group="hooktrain.plugins") if e.name == "kubeflow"]
    assert ep.load() is KubeflowPlugin and ep.dist.name == "hooktrain-kubeflow"
    run = train(report_to="all", plugin_settings={})
    assert plugin_of(run.trainer).config.url is None  # outside a TrainJob: switched off
    assert run.output.global_step == 8


# ---- settings ----------------------------------------------------------------------------------


def test_settings_win_over_the_environment(monkeypatch, pki, token_file, status_server) -> None:
    from hooktrain_kubeflow import KubeflowPlugin, KubeflowSettings

    server = status_server()
    configure(monkeypatch, None, pki, token_file, url="https://unused.invalid/status")
    run = train(plugin_settings={"kubeflow": {"url": server.url, "interval": 0.5,
                                              "timeout": 2}})
    plugin = plugin_of(run.trainer)
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
