"""Sensors fire on the right conditions: new source data, live IC decay, feature drift, failed runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from orchestration import automation, drift
from orchestration.resources import ModelStoreResource, PostgresResource, SourceResource

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_new_files_launch_their_day_once_and_again_when_changed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RRR_HOME", str(tmp_path / "home"))
    folder = tmp_path / "files"
    (folder / "bars").mkdir(parents=True)
    source = SourceResource(kind="files", directory=str(folder))
    postgres = PostgresResource(url="postgresql://unused")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        skipped = automation.new_market_data(context, source=source, postgres=postgres)
        assert isinstance(skipped, dg.SkipReason)
        (folder / "bars" / "2026-01-06.csv").write_text("symbol,start_ns\n")
        fired = automation.new_market_data(context, source=source, postgres=postgres)
        assert isinstance(fired, dg.SensorResult)
        assert [r.partition_key for r in fired.run_requests] == ["2026-01-06"]
        again = automation.new_market_data(
            dg.build_sensor_context(instance=instance, cursor=fired.cursor), source=source, postgres=postgres
        )
        assert isinstance(again, dg.SkipReason)
        (folder / "bars" / "2026-01-06.csv").write_text("symbol,start_ns\nA,1\n")  # the day changed
        os.utime(folder / "bars" / "2026-01-06.csv", ns=(1, 2))
        changed = automation.new_market_data(
            dg.build_sensor_context(instance=instance, cursor=fired.cursor), source=source, postgres=postgres
        )
        assert [r.partition_key for r in changed.run_requests] == ["2026-01-06"]
        outside = folder / "bars" / "2031-01-01.csv"  # not a partition: ignored
        outside.write_text("x\n")
        assert (
            automation.new_market_data(
                dg.build_sensor_context(instance=instance, cursor=changed.cursor), source=source, postgres=postgres
            ).__class__
            is dg.SkipReason
        )


class _Record:
    def __init__(self, tag: str, ic: float) -> None:
        self.tag, self.metadata = tag, {"metrics": {"ic": ic}}


class _Registry:
    """Stands in for the model store: one production price model with a validation IC."""

    PRIMARY_METRIC: ClassVar[dict[str, tuple[str, bool]]] = {"price": ("ic", True)}

    def __init__(self, ic: float) -> None:
        self.ic = ic

    def list_models(self, name: str, stage: str) -> list[_Record]:
        return [_Record("price:v1", self.ic)] if (name, stage) == ("price", "production") else []


class _Store(ModelStoreResource):
    validation_ic: float = 0.05

    def registry(self) -> Any:
        return _Registry(self.validation_ic)


def _decisions(url: str, forecast_noise: float) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for t in range(150):
        realized = rng.normal(size=10)
        forecast = realized + forecast_noise * rng.normal(size=10)
        for s in range(10):
            ts = 1_767_571_200_000_000_000 + t * 60_000_000_000
            rows.append((f"d{t}-{s}-{forecast_noise}", ts, f"S{s}", float(forecast[s]), float(realized[s])))

    async def write(pool: Any) -> None:
        await pool.execute("SELECT rrr_ensure_daily_partitions('decisions', $1, $2)", rows[0][1], rows[-1][1])
        await pool.execute("DELETE FROM decisions")
        await pool.executemany(
            "INSERT INTO decisions (decision_id, ts_ns, symbol, forecast, realized_return, target_position, action,"
            " reason, model_versions) VALUES ($1, $2, $3, $4, $5, 0, 'hold', 'test', '{\"price\": \"price:v1\"}')",
            rows,
        )

    PostgresResource(url=url).run(write)


def test_live_ic_decay_triggers_retraining_and_good_ic_does_not(
    tmp_path: Path, monkeypatch, fresh_database_url: str
) -> None:
    monkeypatch.setenv("RRR_HOME", str(tmp_path))
    postgres = PostgresResource(url=fresh_database_url)
    _decisions(fresh_database_url, forecast_noise=1.0)  # live IC about 0.7
    good = automation.model_quality(
        dg.build_sensor_context(), postgres=postgres, model_store=_Store(validation_ic=0.05)
    )
    assert good.skip_reason is not None and not good.run_requests
    # What the sensor read is recorded on the engine's assets, upstream of the retraining it launches.
    seen = {e.asset_key.to_user_string(): e for e in good.asset_events}
    assert set(seen) == {"model_service", "engine_decisions", "engine_recordings"}
    assert seen["engine_decisions"].metadata["decisions"].value == 1500
    assert seen["engine_decisions"].metadata["realized"].value == 1500
    _decisions(fresh_database_url, forecast_noise=1e6)  # forecasts unrelated to outcomes: IC about 0
    decayed = automation.model_quality(
        dg.build_sensor_context(), postgres=postgres, model_store=_Store(validation_ic=0.5)
    )
    assert len(decayed.run_requests) == 1
    assert "live IC" in decayed.run_requests[0].tags["rrr/retrain_reason"]


def test_feature_drift_triggers_retraining(tmp_path: Path, monkeypatch, fresh_database_url: str) -> None:
    from feature_store.features import PRICE
    from feature_store.postgres_store import PostgresOfflineStore

    monkeypatch.setenv("RRR_HOME", str(tmp_path))
    rng = np.random.default_rng(3)
    names = list(PRICE.names)
    train = pd.DataFrame(rng.normal(size=(5000, len(names))), columns=names)
    drift.write_reference(
        tmp_path / "lake" / "training" / "price_reference.json", drift.reference_bins(train, names), PRICE.version
    )
    times = 1_767_571_200_000_000_000 + np.arange(500) * 60_000_000_000
    live = pd.DataFrame(rng.normal(size=(500, len(names))), columns=names)
    live.insert(0, "ts_ns", times)
    live.insert(0, "symbol", "S0")

    def store(frame: pd.DataFrame) -> None:
        PostgresResource(url=fresh_database_url).run(
            lambda pool: PostgresOfflineStore(pool).write_features(PRICE, frame, replace=True)
        )

    postgres = PostgresResource(url=fresh_database_url)
    store(live)
    calm = automation.model_quality(dg.build_sensor_context(), postgres=postgres, model_store=_Store())
    assert calm.skip_reason is not None and not calm.run_requests
    shifted = live.copy()
    shifted["rvol_60"] += 3.0  # one feature's population moved
    store(shifted)
    fired = automation.model_quality(dg.build_sensor_context(), postgres=postgres, model_store=_Store())
    assert len(fired.run_requests) == 1
    assert "PSI of rvol_60" in fired.run_requests[0].tags["rrr/retrain_reason"]


def test_psi_is_zero_for_the_same_population_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref = drift.reference_bins(pd.DataFrame({"x": rng.normal(size=20_000)}), ["x"])["x"]
    assert drift.psi(ref, rng.normal(size=20_000)) < 0.01
    assert drift.psi(ref, rng.normal(1.0, 1.0, size=20_000)) > 0.25
    assert np.isnan(drift.psi(ref, np.array([np.nan])))


@dg.op
def _explode() -> None:
    raise RuntimeError("the source went away")


@dg.job
def _failing_job() -> None:
    _explode()


def test_a_failed_run_records_an_alert(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RRR_HOME", str(tmp_path))
    with dg.instance_for_test() as instance:
        result = _failing_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert", dagster_instance=instance, dagster_run=run, dagster_event=failure
        ).for_run_failure()
        automation.run_failure_alert(context)
    (alert,) = [json.loads(line) for line in (tmp_path / "alerts" / "alerts.jsonl").read_text().splitlines()]
    assert alert["run_id"] == result.run_id and alert["job"] == "_failing_job"
    assert "_explode" in alert["message"] or "failed" in alert["message"]


def test_the_engine_half_of_the_loop_is_in_the_lineage_and_recorded(fresh_database_url: str) -> None:
    from orchestration.assets.engine_data import engine_assets
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()

    def parents(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}

    # data -> models -> service -> engine -> data
    assert "engine_recordings" in parents("raw_trades") and "engine_recordings" in parents("raw_bars")
    assert parents("model_service") == {"price_model_production"}
    assert parents("engine_decisions") == {"model_service"}
    # A selection through them runs: they are assets Dagster can run, not declarations.
    below = dg.AssetSelection.assets("price_model_candidate").downstream().resolve(graph)
    assert {dg.AssetKey("model_service"), dg.AssetKey("engine_decisions")} <= below
    assert defs.resolve_job_def("observe_engine") is not None
    _decisions(fresh_database_url, forecast_noise=1.0)
    with dg.instance_for_test() as instance:  # its temporary folder goes with it
        result = dg.materialize(
            engine_assets, resources={"postgres": PostgresResource(url=fresh_database_url)}, instance=instance
        )
        assert result.success
        seen = {
            e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()
        }
    assert set(seen) == {"model_service", "engine_decisions", "engine_recordings"}
    assert seen["engine_decisions"]["decisions"].value == 1500 and seen["engine_decisions"]["realized"].value == 1500
    assert "state" in seen["model_service"]  # ready, or why not: never a failed run for a stopped service
