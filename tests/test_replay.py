"""``hooktrain replay``: hooks in the live run's order with its steps and epochs, skipped
plugins, earlier replays, bad input, and no torch import unless a plugin asks for the weights.

The plugins are real entry points: a ``*.dist-info`` with ``entry_points.txt`` on the import
path, found by ``importlib.metadata`` as an installed distribution would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hooktrain.cli import main
from hooktrain.testing import HookRecorder, build_trainer, run_to_replay

pytestmark = pytest.mark.timeout(120)

PROBE = '''
import json, os
from hooktrain.plugin import hookimpl, save_model

class Quiet:  # logs, never touches the model
    @hookimpl
    def on_log(self, state, logs):
        with open(os.environ["PROBE_OUT"], "a") as out:
            out.write(json.dumps([state.global_step, logs]) + "\\n")

class Uploader:  # writes the final model, as a tracker's log_model does
    @hookimpl
    def on_train_end(self, model):
        save_model(model, os.environ["PROBE_OUT"] + ".model")

class Weights:  # reads the tensors
    @hookimpl
    def on_train_end(self, model):
        open(os.environ["PROBE_OUT"], "w").write(str(sorted(model.state_dict())))

class Measuring:
    hooktrain_not_replayable = "it measures the live machine"

    @hookimpl
    def on_train_begin(self):
        raise AssertionError("a skipped plugin was called")
'''
ENTRY_POINTS = {"quiet": "probe:Quiet", "uploader": "probe:Uploader", "weights": "probe:Weights",
                "measuring": "probe:Measuring", "recorder": "probe_recorder:RECORDER"}
REPLAYED_EVENTS = {"on_init_end", "on_train_begin", "on_log", "on_evaluate", "on_save",
                   "on_train_end"}


@pytest.fixture
def probe_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on the import path holding the probe plugins as an installed distribution."""
    root = tmp_path / "site"
    info = root / "hooktrain_probe-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hooktrain-probe\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[hooktrain.plugins]\n" + "".join(
        f"{name} = {target}\n" for name, target in ENTRY_POINTS.items()))
    (root / "probe.py").write_text(PROBE)
    (root / "probe_recorder.py").write_text(
        "from hooktrain.testing import HookRecorder\nRECORDER = HookRecorder()\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PROBE_OUT", str(tmp_path / "probe.out"))
    monkeypatch.chdir(tmp_path)
    return root


def test_hooks_fire_in_the_live_runs_order_at_its_steps_and_epochs(probe_path: Path) -> None:
    live = HookRecorder()
    trainer = build_trainer("live", model_seed=0, plugins=[live], logging_steps=2,
                            eval_strategy="steps", eval_steps=4, save_strategy="steps",
                            save_steps=4, seed=0)
    trainer.train()
    trainer.save_state()
    assert main(["replay", "live", "--report-to", "recorder"]) == 0
    import probe_recorder

    def trace(recorder: HookRecorder) -> list[tuple]:
        return [(c.event, c.global_step, c.epoch, json.dumps(
                    {k: v for k, v in c.payload.items() if k != "checkpoint_dir"}, default=str, sort_keys=True))
                for c in recorder.calls if c.event in REPLAYED_EVENTS]

    assert trace(probe_recorder.RECORDER) == trace(live)
    saves = probe_recorder.RECORDER.of("on_save")
    assert [Path(c.payload["checkpoint_dir"]).name for c in saves] == [
        "checkpoint-4", "checkpoint-8"]


def test_a_plugin_that_cannot_be_replayed_is_skipped_with_its_reason(probe_path, capsys) -> None:
    run_to_replay("none")
    assert main(["replay", "run", "--report-to", "measuring,quiet"]) == 0
    out = capsys.readouterr().out
    assert "skipped measuring: it cannot be replayed (it measures the live machine)" in out
    assert "replayed 7 log entries (steps 2-8) into quiet" in out
    assert main(["replay", "run", "--report-to", "measuring", "--new-run"]) == 2
    assert "every one selected was skipped" in capsys.readouterr().err


def test_replaying_twice_is_refused_and_new_run_sends_again(probe_path, capsys) -> None:
    run_to_replay("none")
    assert main(["replay", "run", "--report-to", "quiet"]) == 0
    assert main(["replay", "run", "--report-to", "quiet"]) == 2
    error = capsys.readouterr().err
    assert "quiet already holds this run" in error and "--new-run" in error
    assert main(["replay", "run", "--report-to", "quiet", "--new-run"]) == 0
    lines = Path(os.environ["PROBE_OUT"]).read_text().splitlines()
    assert len(lines) == 14  # two copies of 7 entries, none from the refused replay


@pytest.mark.parametrize(("setup", "message"), [
    (lambda d: None, "is not a directory"),
    (lambda d: d.mkdir(), "is not a run directory: no training_args.json"),
    (lambda d: (d.mkdir(), (d / "training_args.json").write_text("{}"),
                (d / "trainer_state.json").write_text('{"log_history": [')),
     "trainer_state.json is not valid JSON"),
])
def test_bad_input_is_one_line(probe_path, capsys, setup, message) -> None:
    setup(Path("bad"))
    assert main(["replay", "bad", "--report-to", "quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error and "Traceback" not in error


def test_corrupt_state_and_unknown_plugin_name_the_file_and_the_choices(probe_path, capsys):
    run_to_replay("none")
    assert main(["replay", "run", "--report-to", "nosuch"]) == 2
    error = capsys.readouterr().err
    assert "Unknown plugin 'nosuch'" in error and "quiet" in error
    Path("run/trainer_state.json").write_text("{not json")
    assert main(["replay", "run", "--report-to", "quiet"]) == 2
    error = capsys.readouterr().err
    assert f"{Path('run/trainer_state.json')} is not valid JSON" in error


def test_torch_is_imported_only_for_a_plugin_that_reads_the_weights(probe_path: Path) -> None:
    run_to_replay("none")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(probe_path), *sys.path])}
    script = textwrap.dedent("""
        import sys
        from hooktrain.cli import main
        code = main(["replay", "run", "--report-to", sys.argv[1], "--new-run"])
        print(code, "torch" in sys.modules)
    """)
    for plugin, imports_torch in [("quiet", False), ("uploader", False), ("weights", True)]:
        done = subprocess.run([sys.executable, "-c", script, plugin], env=env, text=True,
                              capture_output=True, timeout=60)
        assert done.stdout.split()[-2:] == ["0", str(imports_torch)], done.stderr
    copied = Path(os.environ["PROBE_OUT"] + ".model") / "model.safetensors"
    assert copied.read_bytes() == Path("run/checkpoint-8/model.safetensors").read_bytes()
    assert "net.0.weight" in Path(os.environ["PROBE_OUT"]).read_text()
