"""The write lanes (on-demand, batch, streaming) and entity deletes against the real server."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Callable

import grpc
import numpy as np
import pandas as pd
import pytest

import featurestore as fs
from conftest import now_minus, unique

SPECS = {"n": fs.ValueType.INT64, "x": fs.ValueType.DOUBLE, "s": fs.ValueType.STRING,
         "ok": fs.ValueType.BOOL, "emb": fs.ValueType.FLOAT_LIST}


def refs(s: fs.FeatureSet, *names: str) -> list[str]:
    return [f"{s.name}:{n}" for n in (names or [f.name for f in s.features])]


def test_write_written_stale_and_idempotent(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("w", SPECS)
    t = now_minus(60)
    row = fs.Row("d1", {"n": 7, "x": 2, "s": "a", "ok": False, "emb": np.array([0.5, 1.5], dtype=np.float32)}, t)
    [r1] = client.write(s.name, [row])
    assert r1.status == fs.WriteStatus.WRITTEN and r1.version > 0 and r1.reason == "" and not r1.outcome_unknown
    [again] = client.write(s.name, [row])  # a retry of an applied row is WRITTEN
    assert again.status == fs.WriteStatus.WRITTEN
    [older] = client.write(s.name, [fs.Row("d1", {"n": 1}, t - dt.timedelta(seconds=5))])
    assert older.status == fs.WriteStatus.STALE and older.reason == "STALE" and not older.outcome_unknown
    [newer] = client.write(s.name, [fs.Row("d1", {"n": 8.0}, t + dt.timedelta(seconds=5))])  # whole float -> int64
    assert newer.status == fs.WriteStatus.WRITTEN and newer.version > r1.version
    got = client.get_features(refs(s), ["d1"])[0]
    assert got.values[:4] == [8, 2.0, "a", False] and got.values[4] == [0.5, 1.5]
    assert got.event_times[0] == t + dt.timedelta(seconds=5) and got.event_times[1] == t


def test_write_mapping_rows_and_default_event_time(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("wm", SPECS)
    before = dt.datetime.now(dt.timezone.utc)
    res = client.write(s.name, [{"entity_id": "m1", "n": 1, "s": None},
                                {"entity_id": "m2", "event_time": before.timestamp() - 30, "x": 1.25}])
    assert [r.status for r in res] == [fs.WriteStatus.WRITTEN] * 2
    rows = client.get_features(refs(s, "n", "s", "x"), ["m1", "m2"])
    m1, m2 = rows
    assert m1.values[0] == 1 and m1.statuses[1] == fs.FeatureStatus.NOT_FOUND  # None writes nothing
    assert m1.event_times[0] is not None and abs((m1.event_times[0] - before).total_seconds()) < 30
    assert m2.values[2] == 1.25 and abs(m2.event_times[2].timestamp() - (before.timestamp() - 30)) < 1e-3


def test_write_invalid_row_writes_nothing(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("wi", SPECS)
    with pytest.raises(fs.InvalidArgumentError) as ei:
        client.write(s.name, [fs.Row("ok1", {"n": 1}, now_minus(1)), fs.Row("bad", {"nope": 3}, now_minus(1))])
    e = ei.value
    assert e.field == 'rows[1].values["nope"]' and e.reason == "UNKNOWN_FEATURE"
    assert e.violations and e.violations[0].field == e.field
    assert client.get_features(refs(s, "n"), ["ok1"])[0].statuses == [fs.FeatureStatus.NOT_FOUND]
    with pytest.raises(fs.InvalidArgumentError) as ei:
        client.write(s.name, [fs.Row("ok2", {"n": 1}, now_minus(1)), fs.Row("", {"n": 1}, now_minus(1))])
    assert ei.value.field.startswith("rows[1]") and ei.value.reason
    assert client.get_features(refs(s, "n"), ["ok2"])[0].statuses == [fs.FeatureStatus.NOT_FOUND]
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    with pytest.raises(fs.InvalidArgumentError) as ei:
        client.write(s.name, [fs.Row("f", {"n": 1}, future)])
    assert ei.value.field == "rows[0].event_time" and ei.value.reason == "EVENT_TIME_IN_FUTURE"


def test_write_unknown_set(client: fs.Client) -> None:
    with pytest.raises(fs.FeatureStoreError) as ei:
        client.write(unique("noset"), [fs.Row("e", {"a": 1}, now_minus(1))])
    assert isinstance(ei.value, fs.NotFoundError) and ei.value.code == grpc.StatusCode.NOT_FOUND
    assert ei.value.reason == "UNKNOWN_FEATURE_SET"


def test_write_value_that_does_not_fit_is_a_type_error(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("wt", SPECS)
    with pytest.raises(TypeError, match=r"rows\[0\]\.values\['s'\]"):
        client.write(s.name, [fs.Row("e", {"s": 5})])
    with pytest.raises(TypeError, match="int64"):
        client.write(s.name, [fs.Row("e", {"n": 1.5})])
    with pytest.raises(TypeError):
        client.write(s.name, [fs.Row("e", {"ok": 1})])
    with pytest.raises(ValueError, match="entity_id"):
        client.write(s.name, [{"n": 1}])


def test_schema_refreshes_after_a_feature_is_added(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("ws", {"a": fs.ValueType.INT64})
    client.write(s.name, [fs.Row("e", {"a": 1}, now_minus(10))])  # caches the schema
    other = fs.Client(client.target.replace("dns:///", ""))  # another process evolves the set
    try:
        other.apply_feature_set(fs.FeatureSet(s.name, s.entity_type, [*s.features, fs.FeatureSpec("emb", "float_list")]))
    finally:
        other.close()
    # [1, 2] would be guessed int64_list; the refreshed schema says float_list
    [r] = client.write(s.name, [fs.Row("e", {"emb": [1, 2]}, now_minus(5))])
    assert r.status == fs.WriteStatus.WRITTEN
    assert client.get_features(refs(s, "emb"), ["e"])[0].values == [[1.0, 2.0]]


def test_batch_write_rows_with_progress(client: fs.Client, make_set: Callable[..., fs.FeatureSet],
                                        capfd: pytest.CaptureFixture[str]) -> None:
    s = make_set("bw", SPECS)
    t = now_minus(100)
    client.write(s.name, [fs.Row("b3", {"n": 100, "x": 50.0, "emb": [1.0]}, t)])
    rows: list[fs.RowLike] = [fs.Row(f"b{i}", {"n": i, "x": i / 2, "emb": [float(i)]}, t - dt.timedelta(seconds=1))
                              for i in range(250)]
    rows[7] = fs.Row("b7", {"n": 7, "nope": 1.0}, t)  # rejected: unknown feature
    summary = client.batch_write(s.name, rows, chunk_size=40, progress=True)
    assert summary.rows == 250
    assert summary.rows_rejected == 1 and summary.rows_stale == 1 and summary.rows_written == 248
    assert summary.rows_retried >= 0
    [err] = summary.errors
    assert err.row == 7 and err.entity_id == "b7" and err.reason == "UNKNOWN_FEATURE" and err.error
    out = capfd.readouterr().err
    assert "250/250 rows" in out, out
    cols = client.get_feature_columns(refs(s, "n", "x"), ["b0", "b3", "b7", "b249"])
    assert cols[refs(s, "n")[0]].to_list() == [0, 100, None, 249]
    assert cols[refs(s, "x")[0]].to_list() == [0.0, 50.0, None, 124.5]


def test_batch_write_generator_without_progress(client: fs.Client, make_set: Callable[..., fs.FeatureSet],
                                                capfd: pytest.CaptureFixture[str]) -> None:
    s = make_set("bg", SPECS)
    gen = ({"entity_id": f"g{i}", "s": f"v{i}", "event_time": now_minus(30)} for i in range(30))
    summary = client.batch_write(s.name, gen, chunk_size=7, progress=False)
    assert (summary.rows_written, summary.rows_stale, summary.rows_rejected) == (30, 0, 0) and summary.errors == []
    assert capfd.readouterr().err == ""
    assert client.get_features(refs(s, "s"), ["g29"])[0].values == ["v29"]


def test_batch_write_dataframe(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("bdf", SPECS)
    t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=5)
    df = pd.DataFrame({
        "entity_id": ["p0", "p1", "p2", "p3"],
        "event_time": [t0, t0 + pd.Timedelta(seconds=1), t0, t0],
        "n": pd.array([1, None, 3, 4], dtype="Int64"),
        "x": [0.5, np.nan, 2.5, 3.5],
        "s": ["a", "b", None, "d"],
        "ok": pd.array([True, False, None, True], dtype="boolean"),
        "emb": [np.array([1, 2], dtype=np.float32), None, [0.25], np.zeros(0)],
    })
    summary = client.batch_write(s.name, df, progress=False)
    assert (summary.rows_written, summary.rows_rejected) == (4, 0), summary.errors
    got = client.get_feature_columns(refs(s), ["p0", "p1", "p2", "p3"])
    frame = got.to_pandas()
    assert frame[f"{s.name}:n"].isna().tolist() == [False, True, False, False]
    assert frame[f"{s.name}:n"].dropna().tolist() == [1, 3, 4]
    assert np.isnan(frame[f"{s.name}:x"].iloc[1]) and frame[f"{s.name}:x"].iloc[2] == 2.5
    assert frame[f"{s.name}:s"].tolist() == ["a", "b", None, "d"]
    assert frame[f"{s.name}:ok"].isna().tolist() == [False, False, True, False]
    emb = got[f"{s.name}:emb"]
    assert emb.status_list()[1] == fs.FeatureStatus.NOT_FOUND and emb.to_list()[0] == [1.0, 2.0]
    assert emb.to_list()[3] == [] and emb.status_list()[3] == fs.FeatureStatus.PRESENT  # an empty list is a value
    times = got[f"{s.name}:s"].event_times.tolist()
    assert times[1] - times[0] == 1_000_000 and times[0] == t0.value // 1000
    # event_time as seconds since the epoch
    df2 = pd.DataFrame({"entity_id": ["p0"], "event_time": [t0.timestamp() + 10], "x": [9.0]})
    assert client.batch_write(s.name, df2, progress=False).rows_written == 1
    assert client.get_features(refs(s, "x"), ["p0"])[0].values == [9.0]


def test_batch_write_bad_input(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("bb", SPECS)
    with pytest.raises(ValueError, match="entity_id"):
        client.batch_write(s.name, pd.DataFrame({"n": [1]}), progress=False)
    with pytest.raises(TypeError, match=r"rows\[2\]"):
        client.batch_write(s.name, ({"entity_id": f"x{i}", "s": "ok" if i != 2 else 3} for i in range(5)),
                           chunk_size=1, progress=False)
    with pytest.raises(ValueError):
        client.batch_write(s.name, [], chunk_size=0)
    summary = client.batch_write(unique("noset"), [fs.Row("e", {"a": 1}, now_minus(1))], progress=False)
    assert summary.rows_rejected == 1 and summary.errors[0].reason == "UNKNOWN_FEATURE_SET"


def test_stream_writer_acks(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("st", SPECS)
    t = now_minus(50)
    acks: list[fs.Ack] = []
    lock = threading.Lock()

    def on_ack(a: fs.Ack) -> None:
        with lock:
            acks.append(a)

    with client.stream_writer(max_unacked=4, on_ack=on_ack) as w:
        seqs = [w.send(s.name, [fs.Row(f"s{i}", {"n": i, "emb": [i, i]}, t)]) for i in range(20)]
        w.send(s.name, [fs.Row("s0", {"n": -1}, t - dt.timedelta(seconds=1)), fs.Row("s1", {"bogus": 1}, t)])
        w.flush(timeout=30)
        assert w.unacked == 0
        assert w.reconnects == 0
    assert seqs == list(range(1, 21))
    assert sorted(a.sequence for a in acks) == list(range(1, 22))
    assert all(a.feature_set == s.name and not a.resent for a in acks)
    last = next(a for a in acks if a.sequence == 21)
    assert [r.status for r in last.results] == [fs.WriteStatus.STALE, fs.WriteStatus.REJECTED]
    assert last.results[1].reason == "UNKNOWN_FEATURE" and not last.results[0].outcome_unknown
    assert w.counts() == {"acked": 21, "written": 20, "stale": 1, "rejected": 1, "outcome_unknown": 0}
    assert client.get_features(refs(s, "n"), ["s19"])[0].values == [19]
    with pytest.raises(RuntimeError):
        w.send(s.name, [fs.Row("late", {"n": 1})])


def test_stream_writer_on_ack_error_stops_it(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("sterr", SPECS)

    def boom(a: fs.Ack) -> None:
        raise KeyError("from on_ack")

    w = client.stream_writer(on_ack=boom)
    w.send(s.name, [fs.Row("e", {"n": 1})])
    with pytest.raises(KeyError, match="from on_ack"):
        w.close(timeout=30)


def test_delete_entities(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    """Needs the DeleteEntities RPC on the server (proto contract)."""
    s = make_set("de", SPECS)
    [w] = client.write(s.name, [fs.Row("k1", {"n": 1}, now_minus(5))])
    res = client.delete_entities(s.name, ["k1", "never"])
    assert [(r.entity_id, r.existed) for r in res] == [("k1", True), ("never", False)]
    assert res[0].version > w.version
    assert client.get_features(refs(s, "n"), ["k1"])[0].statuses == [fs.FeatureStatus.NOT_FOUND]
    [again] = client.write(s.name, [fs.Row("k1", {"n": 2}, now_minus(1))])  # recreates the row
    assert again.status == fs.WriteStatus.WRITTEN and again.version > res[0].version
