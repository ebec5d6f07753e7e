"""What the Kubeflow plugin posts to a Kubeflow Trainer status server of the test's own.

Read back: the bodies the server received, checked against the TrainJob status schema and
against ``state.log_history``; the bearer token; HTTPS with the configured CA; the throttle; the
progress and ETA of a run that finished, failed or was resumed.
"""

from __future__ import annotations

import itertools
import time

import pytest
from kubeflowtraining import INTERVAL, Pace, configure, latest_values, logged_metrics, train
from status_server import STATUS_PATH, TOKEN, Received, StatusServer, check_body

from hooktrain.testing import FailAtStep

pytestmark = pytest.mark.timeout(120)


def wait_for(server: StatusServer, step: int) -> Received:
    """The status for ``step`` once it arrived (a failed run's last one: no Trainer to wait on)."""
    deadline = time.monotonic() + 10
    while not server.received or server.received[-1].metrics.get("current_step") != str(step):
        assert time.monotonic() < deadline, [r.status for r in server.received]
        time.sleep(0.02)
    return server.received[-1]


# ---- what is posted --------------------------------------------------------------------------


def test_progress_eta_and_metrics_over_https(monkeypatch, pki, token_file, status_server) -> None:
    server = status_server()
    configure(monkeypatch, server, pki, token_file)
    run = train(plugins=[Pace(0.06)], logging_steps=1, eval_strategy="steps", eval_steps=4)
    assert run.plugin("KubeflowPlugin").wait(10)
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
    assert run.plugin("KubeflowPlugin").wait(10)
    assert run.plugin("KubeflowPlugin").config.interval == 5.0
    # the start (or, should the sender thread be slow to run, a later step's status), the end
    progress = [r.status["progressPercentage"] for r in server.received]
    assert len(progress) <= 2 and progress[-1] == 100 and progress[0] < 100, progress
    assert logged_metrics(server.received[-1]) == latest_values(run.trainer.state.log_history)


def test_evaluate_after_train_posts_nothing_more(monkeypatch, pki, token_file, status_server):
    server = status_server()
    configure(monkeypatch, server, pki, token_file)
    run = train()
    plugin = run.plugin("KubeflowPlugin")
    assert plugin.wait(10)
    count = len(server.received)
    run.trainer.evaluate()
    assert plugin.wait(10) and len(server.received) == count


def test_a_failed_run_posts_where_it_stopped(monkeypatch, pki, token_file, status_server):
    server = status_server()
    configure(monkeypatch, server, pki, token_file)
    with pytest.raises(RuntimeError, match="boom"):
        train(plugins=[FailAtStep(5)])
    last = wait_for(server, 5)
    assert last.status["progressPercentage"] == 62  # 5 of 8 steps, not 100
    assert "estimatedRemainingSeconds" not in last.status
    assert float(last.metrics["loss"]) > 0  # the step-4 log


def test_a_resumed_run_continues_the_progress(monkeypatch, pki, token_file, status_server):
    server = status_server()
    configure(monkeypatch, server, pki, token_file)
    with pytest.raises(RuntimeError, match="boom"):
        train(plugins=[FailAtStep(7)], save_strategy="steps", save_steps=4)
    wait_for(server, 7)  # the failed run's last status
    server.received.clear()
    run = train(plugins=[Pace(0.02)], resume_from_checkpoint=True, save_strategy="steps",
                save_steps=4)
    assert run.plugin("KubeflowPlugin").wait(10)
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
