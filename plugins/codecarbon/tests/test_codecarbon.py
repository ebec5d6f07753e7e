"""The CodeCarbon plugin against real codecarbon (offline tracker), read back from emissions.csv."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import pytest

from hooktrain import TrainerCallback
from hooktrain.testing import FailAtStep, logged_series, run_training

pytestmark = pytest.mark.timeout(120)


# ---- reading back ----------------------------------------------------------------------------


def read_rows(directory: Path) -> list[dict[str, str]]:
    with open(directory / "emissions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def country_emissions(kwh: float, country: str | None) -> float:
    """What codecarbon's own offline model gives for ``kwh`` in ``country``."""
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    return Emissions(DataSource()).get_country_emissions(
        Energy.from_energy(kWh=kwh), GeoMetadata(country_iso_code=country))


# ---- what is tracked -------------------------------------------------------------------------


def test_one_row_per_run_in_the_configured_country(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hooktrain")
    run = run_training(output_dir="out", report_to=["codecarbon"],
                       plugin_settings={"codecarbon": {"country_iso_code": "fra",
                                                       "project_name": "tiny"}})
    plugin = run.plugin("CodeCarbonPlugin")
    (row,) = read_rows(tmp_path / "out" / "codecarbon")

    # a wrong country raises nothing in codecarbon: the columns say which one priced the kWh
    assert (row["country_iso_code"], row["country_name"]) == ("FRA", "France")
    assert row["project_name"] == "tiny"
    assert row["run_id"] == plugin.state_dict()["run_id"]
    energy, emissions = float(row["energy_consumed"]), float(row["emissions"])
    assert energy > 0 and emissions > 0
    assert emissions == pytest.approx(country_emissions(energy, "FRA"), rel=1e-9)
    assert energy == pytest.approx(float(row["cpu_energy"]) + float(row["gpu_energy"])
                                   + float(row["ram_energy"]), rel=1e-9)
    # the tracker ran from train begin to train end, just after the summary's train_runtime
    summary = run.trainer.state.log_history[-1]
    assert 0 < float(row["duration"]) < summary["train_runtime"] + 1.0
    # the row's totals are in train()'s summary log: log_history, every plugin's on_log (the
    # recorder here stands for any logging plugin) and what train() returns
    history = run.trainer.state.log_history
    totals = {"emissions_kg": emissions, "energy_consumed_kwh": energy}
    assert {k: summary[k] for k in totals} == pytest.approx(totals, rel=1e-12)
    assert all(k not in entry for entry in history[:-1] for k in totals)
    last_log = run.recorder.of("on_log")[-1].payload["logs"]
    assert {k: last_log[k] for k in totals} == {k: summary[k] for k in totals}
    assert {k: run.output.metrics[k] for k in totals} == {k: summary[k] for k in totals}
    series = logged_series(history)
    assert series["train/emissions_kg"] == [(8, summary["emissions_kg"])]
    assert series["train/energy_consumed_kwh"] == [(8, summary["energy_consumed_kwh"])]
    assert plugin.emissions == {k: summary[k] for k in totals}
    assert plugin.emissions_data.run_id == row["run_id"]
    assert plugin.tracker is None
    assert run.faults == []
    assert not any("world-average" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain"))
    assert any(r.getMessage().startswith("codecarbon: ") and "kWh" in r.getMessage()
               for r in caplog.records if r.name.startswith("hooktrain"))
    assert not (tmp_path / "emissions.csv").exists(), "nothing in codecarbon's ./ default"


def test_no_country_uses_the_world_average_and_says_so_once(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="hooktrain")
    run = run_training(output_dir="out", report_to=["codecarbon"])
    output = run.trainer.train()  # a second train() on the same Trainer: a second row, no warning
    rows = read_rows(tmp_path / "out" / "codecarbon")
    assert len(rows) == 2
    assert run.output.metrics["emissions_kg"] == float(rows[0]["emissions"])
    assert output.metrics["emissions_kg"] == float(rows[1]["emissions"])
    for row in rows:
        assert row["country_iso_code"] == "" and row["country_name"] == ""
        # codecarbon's world average: 475 g CO2eq per kWh
        assert float(row["emissions"]) == pytest.approx(0.475 * float(row["energy_consumed"]),
                                                        rel=1e-9)
    assert rows[0]["run_id"] == rows[1]["run_id"]
    said = [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain") if "world-average" in r.getMessage()]
    assert len(said) == 1 and "CODECARBON_COUNTRY_ISO_CODE" in said[0]


def test_a_codecarbon_config_file_is_honoured(tmp_path: Path) -> None:
    (tmp_path / ".codecarbon.config").write_text(
        "[codecarbon]\ncountry_iso_code = DEU\noutput_dir = from-config\n")
    run_training(output_dir="out", report_to=["codecarbon"])
    (row,) = read_rows(tmp_path / "from-config")
    assert row["country_iso_code"] == "DEU"
    assert not (tmp_path / "out" / "codecarbon").exists()


def test_an_unknown_country_is_a_clear_error(tmp_path: Path) -> None:
    from hooktrain.plugin import ConfigError

    with pytest.raises(ConfigError, match=r"country_iso_code.*'XYZ'.*3-letter ISO code"):
        run_training(output_dir="out", report_to=["codecarbon"],
                     plugin_settings={"codecarbon": {"country_iso_code": "XYZ"}})
    with pytest.raises(ConfigError, match=r"log_level.*'loud'"):
        run_training(output_dir="out", report_to=["codecarbon"],
                     plugin_settings={"codecarbon": {"log_level": "loud"}})
    assert not (tmp_path / "out" / "codecarbon").exists()


# ---- stopping, resuming ---------------------------------------------------------------------


@pytest.fixture
def stops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hook each tracker's ``stop()`` was called from, in order."""
    import inspect

    from codecarbon import OfflineEmissionsTracker

    calls: list[str] = []
    original = OfflineEmissionsTracker.stop

    def stop(self):
        hooks = [f.function for f in inspect.stack() if f.function.startswith("on_")]
        calls.append(hooks[0] if hooks else "?")
        return original(self)

    monkeypatch.setattr(OfflineEmissionsTracker, "stop", stop)
    return calls


def codecarbon_timers() -> list:
    """codecarbon measures from ``threading.Timer`` threads; the alive ones after a short join."""
    import threading

    timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
    for timer in timers:
        timer.join(timeout=2)
    return [t for t in timers if t.is_alive()]


def test_the_tracker_stops_at_the_summary_log(tmp_path: Path, stops) -> None:
    run_training(output_dir="out", report_to=["codecarbon"])
    assert stops == ["on_pre_log"]
    assert codecarbon_timers() == []


def test_the_tracker_stops_when_training_fails(tmp_path: Path, stops) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir="out", report_to=["codecarbon"], plugins=[FailAtStep(5)],
                     plugin_settings={"codecarbon": {"country_iso_code": "GBR"}})
    assert stops == ["on_exception"]
    (row,) = read_rows(tmp_path / "out" / "codecarbon")
    assert row["country_iso_code"] == "GBR" and float(row["energy_consumed"]) > 0
    # codecarbon's measuring threads are gone (left running they would measure forever)
    assert codecarbon_timers() == []


def test_a_resumed_run_keeps_its_run_id(tmp_path: Path) -> None:
    settings = {"codecarbon": {"country_iso_code": "USA"}}
    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir="out", report_to=["codecarbon"], plugins=[FailAtStep(7)],
                     save_strategy="steps", save_steps=4, plugin_settings=settings)
    (first,) = read_rows(tmp_path / "out" / "codecarbon")
    stored = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    assert stored["stateful_callbacks"]["CodeCarbonPlugin#0"] == {"run_id": first["run_id"]}

    run = run_training(output_dir="out", report_to=["codecarbon"], resume_from_checkpoint=True,
                       save_strategy="steps", save_steps=4, plugin_settings=settings)
    assert run.output.global_step == 8
    rows = read_rows(tmp_path / "out" / "codecarbon")
    assert len(rows) == 2, "one row per train() attempt, appended"
    assert rows[0] == first
    # like train_runtime, the summary's values cover this train() call (the CSV has them all)
    assert run.output.metrics["emissions_kg"] == float(rows[1]["emissions"])
    plugin = run.plugin("CodeCarbonPlugin")
    assert rows[1]["run_id"] == first["run_id"] == plugin.state_dict()["run_id"]
    # a fresh run in another directory is another run
    other = run_training(output_dir="other", report_to=["codecarbon"], plugin_settings=settings)
    assert read_rows(tmp_path / "other" / "codecarbon")[0]["run_id"] != first["run_id"]
    assert other.plugin("CodeCarbonPlugin").state_dict()["run_id"] != first["run_id"]


# ---- settings ---------------------------------------------------------------------------------


def test_settings_win_over_codecarbons_environment(tmp_path: Path, monkeypatch) -> None:
    from hooktrain_codecarbon import CodeCarbonPlugin, CodeCarbonSettings

    monkeypatch.setenv("CODECARBON_COUNTRY_ISO_CODE", "DEU")
    monkeypatch.setenv("CODECARBON_OUTPUT_DIR", str(tmp_path / "env-dir"))
    run_training(output_dir="out", report_to=["codecarbon"])
    (row,) = read_rows(tmp_path / "env-dir")
    assert row["country_iso_code"] == "DEU"

    run = run_training(output_dir="out", report_to=["codecarbon"],
                       plugin_settings={"codecarbon": {"country_iso_code": "CAN",
                                                       "region": "Quebec",
                                                       "output_dir": "mine"}})
    (row,) = read_rows(tmp_path / "mine")
    assert (row["country_iso_code"], row["region"]) == ("CAN", "quebec")
    assert run.plugin(CodeCarbonPlugin).config.country_iso_code == "CAN"
    assert len(read_rows(tmp_path / "env-dir")) == 1

    assert CodeCarbonPlugin().country_iso_code == "DEU", "built by hand, the environment applies"
    assert CodeCarbonPlugin(CodeCarbonSettings(country_iso_code=" ind ")).country_iso_code == "IND"
    monkeypatch.setenv("CODECARBON_LOG_LEVEL", "ERROR")
    assert CodeCarbonPlugin().config.log_level == "error"
    assert logging.getLogger("codecarbon").level == logging.ERROR


def test_installed_entry_point_and_report_to_all(tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    from hooktrain_codecarbon import CodeCarbonPlugin

    (ep,) = [e for e in entry_points(group="hooktrain.plugins") if e.name == "codecarbon"]
    assert ep.load() is CodeCarbonPlugin and ep.dist.name == "hooktrain-codecarbon"
    run = run_training(output_dir="out", report_to="all")
    assert any(isinstance(p, CodeCarbonPlugin) for p in run.trainer.callbacks)
    assert len(read_rows(tmp_path / "out" / "codecarbon")) == 1


# ---- faults -----------------------------------------------------------------------------------


def test_a_failing_backend_mid_run_is_isolated(tmp_path: Path, caplog) -> None:
    class BreakOutput(TrainerCallback):
        """A file where the tracker's directory was: codecarbon cannot write its row at stop."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                directory = tmp_path / "out" / "codecarbon"
                shutil.rmtree(directory)
                directory.write_text("not a directory")

    caplog.set_level(logging.ERROR, logger="hooktrain")
    run = run_training(output_dir="out", report_to=["codecarbon"], plugins=[BreakOutput()],
                       plugin_settings={"codecarbon": {"country_iso_code": "USA"}})
    assert run.output.global_step == 8
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("codecarbon", "on_pre_log")]
    assert "stopped without recording emissions" in faults[0].error
    assert sum("codecarbon" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")) == 1
    assert run.plugin("CodeCarbonPlugin").tracker is None
    assert "emissions_kg" not in run.trainer.state.log_history[-1]
    assert codecarbon_timers() == []


def test_an_unusable_output_directory_switches_the_plugin_off(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    run = run_training(output_dir="out", report_to=["codecarbon"],
                       plugin_settings={"codecarbon": {"output_dir": "taken"}})
    assert run.output.global_step == 8
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("codecarbon", "on_init_end")]
    assert run.plugin("CodeCarbonPlugin").tracker is None
