"""get_features (row-wise) and get_feature_columns (columnar) against the real server."""

from __future__ import annotations

import datetime as dt
import os
import random
from typing import Any, Callable

import grpc
import numpy as np
import pandas as pd
import pytest

import featurestore as fs
from conftest import ALL_TYPES, now_minus, unique

E1 = {"n": 7, "x": 4.5, "s": "hello", "b": b"\x00\xff", "ok": True, "emb": [0.5, -1.25, 3.0],
      "ids": [1, -2, 1 << 40], "tags": ["a", "", "c"]}
FILLERS = {"n": 0, "x": 0.0, "s": "", "b": b"", "ok": False, "emb": [], "ids": [], "tags": []}


@pytest.fixture
def served(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> dict[str, Any]:
    """A set with every type and a 1 h ttl: e1 has every value (fresh), e2 has n and x
    two hours old (EXPIRED), e3 has nothing (NOT_FOUND)."""
    s = make_set("rd", ALL_TYPES, ttl=dt.timedelta(hours=1))
    t1, t2 = now_minus(10), now_minus(7200)
    res = client.write(s.name, [fs.Row("e1", E1, t1), fs.Row("e2", {"n": 3, "x": 1.5}, t2)])
    assert [r.status for r in res] == [fs.WriteStatus.WRITTEN] * 2
    return {"set": s, "refs": [f"{s.name}:{f}" for f in ALL_TYPES], "t1": t1, "t2": t2}


def test_get_features_row_wise(client: fs.Client, served: dict[str, Any]) -> None:
    refs, t1, t2 = served["refs"], served["t1"], served["t2"]
    got = client.get_features(refs, ["e1", "e2", "e3"])
    assert got.features == refs and got.entity_ids == ["e1", "e2", "e3"] and len(got) == 3
    e1, e2, e3 = got
    assert e1.entity_id == "e1" and got.get("e2") is e2 and got[2] is e3
    for i, f in enumerate(ALL_TYPES):
        assert e1.statuses[i] == fs.FeatureStatus.PRESENT
        assert e1.event_times[i] == t1
        want = E1[f]
        assert e1.values[i] == (pytest.approx(want) if f == "emb" else want), f
        assert e1[refs[i]] == fs.Cell(e1.values[i], fs.FeatureStatus.PRESENT, t1)
        assert e3.statuses[i] == fs.FeatureStatus.NOT_FOUND and e3.values[i] is None and e3.event_times[i] is None
    assert e2[refs[0]] == fs.Cell(None, fs.FeatureStatus.EXPIRED, t2)  # withheld, time given
    assert e2[refs[1]].status == fs.FeatureStatus.EXPIRED
    assert e2[refs[2]] == fs.Cell(None, fs.FeatureStatus.NOT_FOUND, None)
    assert [f for f, _ in e1.cells()] == refs
    with pytest.raises(KeyError):
        got.get("nope")


def test_get_feature_columns_every_type(client: fs.Client, served: dict[str, Any]) -> None:
    refs, t1, t2 = served["refs"], served["t1"], served["t2"]
    ids = ["e1", "e2", "e3"]
    cols = client.get_feature_columns(refs, ids)
    assert list(cols) == refs and len(cols) == len(refs) and cols.entity_ids == ids
    us1 = int(t1.timestamp()) * 1_000_000
    us2 = int(t2.timestamp()) * 1_000_000
    for f, ref in zip(ALL_TYPES, refs):
        c = cols[ref]
        assert c.feature == ref and c.type == ALL_TYPES[f] and len(c) == 3
        assert c.statuses.dtype == np.int8
        want_st = [fs.FeatureStatus.PRESENT, fs.FeatureStatus.EXPIRED if f in ("n", "x") else fs.FeatureStatus.NOT_FOUND,
                   fs.FeatureStatus.NOT_FOUND]
        assert c.status_list() == want_st
        assert c.present.tolist() == [True, False, False]
        assert c.event_times.tolist() == [us1, us2 if f in ("n", "x") else 0, 0]
        dt64 = c.event_times_datetime64()
        assert dt64[0] == np.datetime64(us1, "us") and np.isnat(dt64[2])
        arr = c.to_numpy()
        assert len(arr) == 3
        if c.type.is_list:
            assert arr.dtype == object
            np.testing.assert_array_equal(arr[0], np.array(E1[f], dtype=arr[0].dtype))
            assert len(arr[1]) == 0 and len(arr[2]) == 0  # filler: empty lists
            assert c.offsets().tolist() == [0, len(E1[f]), len(E1[f]), len(E1[f])]
            assert len(c.flat_values()) == len(E1[f])
        else:
            assert arr[0] == E1[f]
            assert arr[1] == FILLERS[f] and arr[2] == FILLERS[f]
            with pytest.raises(TypeError):
                c.offsets()
        assert arr.dtype == np.dtype({"n": np.int64, "x": np.float64, "ok": np.bool_}.get(f, object)), (f, arr.dtype)
        m = c.to_numpy(masked=True)
        assert isinstance(m, np.ma.MaskedArray) and m.mask.tolist() == [False, True, True]
        lst = c.to_list()
        assert lst[1:] == [None, None]
        assert (lst[0] == pytest.approx(E1[f])) if f == "emb" else lst[0] == E1[f]
    assert cols[refs[2]].to_numpy().dtype == object  # strings
    as_np = cols.to_numpy()
    assert list(as_np) == refs and as_np[refs[0]].dtype == np.int64


def test_columns_to_pandas(client: fs.Client, served: dict[str, Any]) -> None:
    refs = served["refs"]
    cols = client.get_feature_columns(refs, ["e1", "e2", "e3"])
    df = cols.to_pandas()
    assert list(df.columns) == refs and list(df.index) == ["e1", "e2", "e3"] and df.index.name == "entity_id"
    n, x, s, b, ok, emb, ids, tags = refs
    assert str(df[n].dtype) == "Int64" and df[n].iloc[0] == 7 and df[n].isna().tolist() == [False, True, True]
    assert df[x].dtype == np.float64 and df[x].iloc[0] == 4.5 and np.isnan(df[x].iloc[1])
    assert str(df[ok].dtype) == "boolean" and bool(df[ok].iloc[0]) is True and df[ok].isna().tolist() == [False, True, True]
    assert df[s].tolist() == ["hello", None, None] and df[b].iloc[0] == b"\x00\xff"
    assert df[emb].iloc[0].dtype == np.float32 and df[emb].iloc[1] is None
    assert df[tags].iloc[0].tolist() == ["a", "", "c"]
    filled = cols.to_pandas(missing="filler")
    assert filled[n].dtype == np.int64 and filled[n].tolist() == [7, 0, 0]
    assert filled[ok].dtype == np.bool_ and filled[s].tolist() == ["hello", "", ""]
    st = cols.status_frame()
    assert st.shape == df.shape and st[n].tolist() == [1, 3, 2] and st[s].tolist() == [1, 2, 2]
    with pytest.raises(ValueError):
        cols.to_pandas(missing="zero")


def test_row_wise_to_pandas_matches_columnar(client: fs.Client, served: dict[str, Any]) -> None:
    refs = served["refs"]
    ids = ["e1", "e2", "e3"]
    _assert_frames_agree(client.get_features(refs, ids).to_pandas(), client.get_feature_columns(refs, ids).to_pandas())
    _assert_frames_agree(client.get_features(refs, ids).to_pandas(missing="filler"),
                         client.get_feature_columns(refs, ids).to_pandas(missing="filler"))


def _assert_frames_agree(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and list(a.index) == list(b.index)
    for col in a.columns:
        ca, cb = a[col], b[col]
        assert ca.dtype == cb.dtype, (col, ca.dtype, cb.dtype)
        for va, vb in zip(ca.tolist(), cb.tolist()):
            if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
                np.testing.assert_array_equal(va, vb)
                assert va.dtype == vb.dtype
            elif va is pd.NA or vb is pd.NA:
                assert va is vb, (col, va, vb)
            elif isinstance(va, float) and np.isnan(va):
                assert np.isnan(vb), col
            else:
                assert va == vb, (col, va, vb)


def _random_value(rng: random.Random, t: fs.ValueType) -> Any:
    if t == fs.ValueType.INT64:
        return rng.randint(-(1 << 62), 1 << 62)
    if t == fs.ValueType.DOUBLE:
        return rng.uniform(-1e9, 1e9)
    if t == fs.ValueType.STRING:
        return "".join(rng.choice("abcxyzé✓ ") for _ in range(rng.randint(0, 12)))
    if t == fs.ValueType.BYTES:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 10)))
    if t == fs.ValueType.BOOL:
        return rng.random() < 0.5
    n = rng.randint(0, 6)
    if t == fs.ValueType.FLOAT_LIST:
        return [float(np.float32(rng.uniform(-10, 10))) for _ in range(n)]
    if t == fs.ValueType.INT64_LIST:
        return [rng.randint(-1000, 1000) for _ in range(n)]
    return [rng.choice(["p", "q", "", "rr"]) for _ in range(n)]


def test_columnar_and_row_wise_agree_randomized(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    seed = int(os.environ.get("FS_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed={seed} (rerun with FS_TEST_SEED={seed})")
    rng = random.Random(seed)
    specs = {f"f{i}": rng.choice(list(ALL_TYPES.values())) for i in range(rng.randint(6, 12))}
    sets = [make_set("rnd", specs, ttl=dt.timedelta(hours=1)) for _ in range(2)]
    entities = [f"ent-{i}" for i in range(80)]
    fresh, old = now_minus(5), now_minus(3 * 3600)
    for s in sets:
        rows = []
        for e in entities:
            if rng.random() < 0.25:
                continue  # NOT_FOUND everywhere
            vals = {f: _random_value(rng, t) for f, t in specs.items() if rng.random() < 0.7}
            rows.append(fs.Row(e, vals, old if rng.random() < 0.2 else fresh))
        # one fresh row with every feature, so every column's type shows in row-wise form
        rows.append(fs.Row(entities[0], {f: _random_value(rng, t) for f, t in specs.items()}, fresh))
        summary = client.batch_write(s.name, rows, progress=False)
        assert summary.rows_rejected == 0, summary.errors
    refs = [f"{rng.choice(sets).name}:{f}" for f in rng.sample(list(specs), k=len(specs))]
    refs = list(dict.fromkeys(refs + [f"{sets[0].name}:{f}" for f in specs]))
    ids = rng.sample(entities, k=60) + ["never-written", entities[0]]
    rows_res = client.get_features(refs, ids)
    cols = client.get_feature_columns(refs, ids)
    assert cols.features == rows_res.features == refs
    present = 0
    for fi, ref in enumerate(refs):
        c = cols[ref]
        vals = c.to_list()
        sts = c.status_list()
        times = c.event_times.tolist()
        for ei, ent in enumerate(rows_res):
            assert ent.entity_id == ids[ei]
            assert sts[ei] == ent.statuses[fi], (ref, ids[ei])
            want_t = ent.event_times[fi]
            assert times[ei] == (0 if want_t is None else int(want_t.timestamp() * 1_000_000)), (ref, ids[ei])
            if c.type == fs.ValueType.FLOAT_LIST and ent.values[fi] is not None:
                np.testing.assert_array_equal(np.array(vals[ei], np.float32), np.array(ent.values[fi], np.float32))
            else:
                assert vals[ei] == ent.values[fi], (ref, ids[ei])
            present += sts[ei] == fs.FeatureStatus.PRESENT
    assert present > len(refs) * 10, "the random data served too few values to mean anything"
    _assert_frames_agree(rows_res.to_pandas(), cols.to_pandas())
    _assert_frames_agree(rows_res.to_pandas(missing="filler"), cols.to_pandas(missing="filler"))


def test_read_errors(client: fs.Client, served: dict[str, Any], make_set: Callable[..., fs.FeatureSet]) -> None:
    name = served["set"].name
    with pytest.raises(fs.NotFoundError) as ei:
        client.get_features([f"{name}:n", f"{name}:nope"], ["e1"])
    assert ei.value.reason == "UNKNOWN_FEATURE" and ei.value.field == "features[1]"
    missing = unique("nosuch")
    with pytest.raises(fs.NotFoundError) as ei:
        client.get_feature_columns([f"{missing}:a"], ["e1"])
    assert ei.value.reason == "UNKNOWN_FEATURE_SET" and ei.value.field == "features[0]"
    with pytest.raises(fs.InvalidArgumentError) as ei2:
        client.get_features(["no-colon"], ["e1"])
    assert ei2.value.field == "features[0]" and ei2.value.reason == "INVALID_ARGUMENT"
    assert ei2.value.violations[0].field == "features[0]"
    with pytest.raises(fs.InvalidArgumentError) as ei2:
        client.get_feature_columns([f"{name}:n"], [f"e{i}" for i in range(1001)])
    assert ei2.value.field == "entity_ids"
    with pytest.raises(fs.InvalidArgumentError) as ei2:
        client.get_features([f"{name}:n"], ["e1", ""])
    assert ei2.value.field == "entity_ids[1]"
    other = make_set("rider", {"a": fs.ValueType.INT64}, entity_type="rider")
    with pytest.raises(fs.InvalidArgumentError):
        client.get_features([f"{name}:n", f"{other.name}:a"], ["e1"])
    with pytest.raises(TypeError):
        client.get_features(f"{name}:n", ["e1"])  # type: ignore[arg-type]


def test_deadline_exceeded(env: Any) -> None:
    with fs.Client(env.address, timeout=1e-6) as c:
        with pytest.raises(fs.DeadlineExceededError) as ei:
            c.get_features(["a:b"], ["e1"])
    assert ei.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
