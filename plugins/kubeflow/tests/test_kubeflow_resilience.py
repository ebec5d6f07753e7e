"""A Kubeflow status server that is slow, down, failing or refusing never slows or stops training.

Slow, down or answering with an error: training takes no longer, one warning, the latest status
retried. Refused for good (TLS, token, a missing file): the plugin is isolated, training finishes.
"""

from __future__ import annotations

import logging
import re
import socket
import time

import pytest
from kubeflowtraining import INTERVAL, Pace, configure, latest_values, logged_metrics, train

pytestmark = pytest.mark.timeout(120)


# ---- never slower, never stopped --------------------------------------------------------------


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
    assert run.plugin("KubeflowPlugin").wait(15)
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
    assert run.faults == []
    assert run.plugin("KubeflowPlugin").wait(10)
    warnings = [r.getMessage() for r in caplog.records
                if r.name.startswith("hooktrain") if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "could not post the training status" in warnings[0]
    assert "ConnectionRefusedError" in warnings[0]


def test_a_server_slower_than_the_timeout_costs_one_warning(
        monkeypatch, pki, token_file, status_server, caplog):
    server = status_server(delay=1.5)
    configure(monkeypatch, server, pki, token_file)
    caplog.set_level(logging.INFO, logger="hooktrain")
    took, run = timed_train(plugin_settings={"kubeflow": {"interval": INTERVAL, "timeout": 0.3}})
    assert took < 1.5 and run.faults == []
    start = time.monotonic()
    assert run.plugin("KubeflowPlugin").wait(5)
    assert time.monotonic() - start < 2 * 0.3 + 1.0  # in flight, then the final one: both bounded
    messages = [(r.levelname, r.getMessage()) for r in caplog.records
                if r.name.startswith("hooktrain") if "kubeflow" in r.getMessage()]
    assert [level for level, _ in messages] == ["WARNING", "INFO"], messages
    assert "TimeoutError" in messages[0][1] and "the final status" in messages[1][1]


def test_a_server_error_is_retried_with_the_latest_status(
        monkeypatch, pki, token_file, status_server, caplog):
    server = status_server()
    server.answer = lambda n: 503 if n == 1 else 200
    configure(monkeypatch, server, pki, token_file)
    caplog.set_level(logging.INFO, logger="hooktrain")
    run = train(plugins=[Pace(0.06)])
    assert run.plugin("KubeflowPlugin").wait(10)
    assert run.faults == []
    assert len(server.received) >= 3 and server.received[-1].status["progressPercentage"] == 100
    messages = [r.getMessage() for r in caplog.records
                if r.name.startswith("hooktrain") if "kubeflow" in r.getMessage()]
    assert sum("HTTP 503" in m for m in messages) == 1
    assert any("answers again" in m for m in messages)


# ---- refused for good: isolated, training finishes ---------------------------------------------


def assert_isolated(run, match: str) -> None:
    assert run.output.global_step == 8
    faults = run.faults
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
    assert run.faults[0].hook == "on_train_begin"
    assert server.received == []
