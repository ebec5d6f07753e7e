"""The parts of ``hooktrain.testing`` that plugin suites lean on to stay offline and tidy."""

from __future__ import annotations

import os
import socket

import pytest

from hooktrain import TrainerCallback
from hooktrain.testing import FailAtStep, HookRecorder, environment, find_plugin, run_training

pytest_plugins = ["pytester"]


def test_environment_sets_unsets_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKTRAIN_KIT_KEPT", "before")
    monkeypatch.setenv("HOOKTRAIN_KIT_REMOVED", "secret")
    monkeypatch.delenv("HOOKTRAIN_KIT_ADDED", raising=False)
    with environment({"HOOKTRAIN_KIT_ADDED": "1", "HOOKTRAIN_KIT_KEPT": "during"},
                     unset=["HOOKTRAIN_KIT_REMOVED", "HOOKTRAIN_KIT_NEVER_SET"]):
        assert os.environ["HOOKTRAIN_KIT_ADDED"] == "1"
        assert os.environ["HOOKTRAIN_KIT_KEPT"] == "during"
        assert "HOOKTRAIN_KIT_REMOVED" not in os.environ
    assert "HOOKTRAIN_KIT_ADDED" not in os.environ
    assert os.environ["HOOKTRAIN_KIT_KEPT"] == "before"
    assert os.environ["HOOKTRAIN_KIT_REMOVED"] == "secret"


def test_environment_restores_after_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKTRAIN_KIT_KEPT", "before")
    with pytest.raises(RuntimeError), environment({"HOOKTRAIN_KIT_KEPT": "during"}):
        raise RuntimeError("a failing session")
    assert os.environ["HOOKTRAIN_KIT_KEPT"] == "before"


def test_no_network_lets_loopback_through(no_network: list[str]) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
    assert no_network == []


def test_no_network_fails_a_test_that_reached_out(pytester: pytest.Pytester) -> None:
    """A library that swallows the refusal still fails the test, with the address named."""
    pytester.makeconftest('pytest_plugins = ["hooktrain.testing"]')
    pytester.makepyfile(
        """
        import socket

        def test_swallowed(no_network):
            with socket.socket() as sock:
                try:
                    sock.connect(("192.0.2.1", 443))
                except OSError:
                    pass  # what tracking libraries do with their own network errors

        def test_lookup(no_network):
            try:
                socket.getaddrinfo("example.com", 443)
            except OSError:
                pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=2)
    output = result.stdout.str()
    assert """the test tried to reach the network: ["connect ('192.0.2.1', 443)"]""" in output
    assert "the test tried to reach the network: ['lookup example.com']" in output


def test_fail_at_step_crashes_the_training_at_that_step(tmp_path) -> None:
    recorder = HookRecorder()
    with pytest.raises(KeyboardInterrupt, match="stop here"):
        run_training(output_dir=tmp_path / "out",
                     plugins=[FailAtStep(3, KeyboardInterrupt, "stop here"), recorder])
    assert [call.global_step for call in recorder.of("on_step_end")] == [1, 2]


class LoneLogger(TrainerCallback):
    pass


class TwinLogger(TrainerCallback):
    pass


class SubTwinLogger(TwinLogger):
    pass


def test_run_plugin_finds_the_one_plugin_by_class_or_by_name(tmp_path) -> None:
    lone, twin = LoneLogger(), TwinLogger()
    run = run_training(output_dir=tmp_path / "out", plugins=[twin, lone])
    assert run.plugin(LoneLogger) is lone
    assert run.plugin("LoneLogger") is lone
    assert run.plugin(TwinLogger) is twin and run.plugin("TwinLogger") is twin
    assert run.plugin(HookRecorder) is run.recorder
    assert find_plugin(run.trainer, LoneLogger) is lone  # the same lookup for a bare Trainer
    run.trainer.add_callback(lone)  # the same object twice is still one plugin
    assert run.plugin(LoneLogger) is lone


def test_run_plugin_names_the_wanted_class_and_those_present_when_none_or_two(tmp_path) -> None:
    run = run_training(output_dir=tmp_path / "out", plugins=[TwinLogger(), SubTwinLogger()])
    with pytest.raises(LookupError) as none:
        run.plugin(LoneLogger)
    message = str(none.value)
    assert message.startswith("expected one LoneLogger plugin, found none among")
    assert "TwinLogger, SubTwinLogger, HookRecorder" in message
    with pytest.raises(LookupError, match="^expected one LoneLogger plugin, found none") as by_name:
        run.plugin("LoneLogger")
    assert "SubTwinLogger" in str(by_name.value)
    two = "^expected one TwinLogger plugin, found 2 among .*: .*TwinLogger, SubTwinLogger"
    with pytest.raises(LookupError, match=two):
        run.plugin(TwinLogger)  # a subclass is an instance too
    assert isinstance(run.plugin("TwinLogger"), TwinLogger)  # a name matches the class itself
    assert type(run.plugin("TwinLogger")) is TwinLogger
    with pytest.raises(TypeError, match="a class or a class name"):
        run.plugin(TwinLogger())
