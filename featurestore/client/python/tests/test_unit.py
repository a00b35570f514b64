"""Pure logic without a server: targets and TLS decisions, value and time conversion,
backoff, progress output, and that the public API is typed and documented."""

from __future__ import annotations

import datetime as dt
import inspect
import io
import random
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest

import featurestore as fs
from featurestore._proto.featurestore.v1 import featurestore_pb2 as pb
from featurestore._retry import Backoff
from featurestore._target import ROUND_ROBIN_CONFIG, is_loopback, resolve
from featurestore._types import _event_time_micros
from featurestore._values import infer_type, to_proto, to_python


@pytest.mark.parametrize("address,target,host,tls,rr", [
    ("127.0.0.1:50051", "127.0.0.1:50051", "127.0.0.1", False, False),
    ("[::1]:50051", "[::1]:50051", "::1", False, False),
    ("localhost:50051", "dns:///localhost:50051", "localhost", False, True),
    ("10.0.0.7:50051", "10.0.0.7:50051", "10.0.0.7", True, False),
    ("featurestore.prod:443", "dns:///featurestore.prod:443", "featurestore.prod", True, True),
    ("dns:///fs.internal:50051", "dns:///fs.internal:50051", "fs.internal", True, True),
    ("unix:/run/fs.sock", "unix:/run/fs.sock", "localhost", False, False),
])
def test_resolve_defaults(address: str, target: str, host: str, tls: bool, rr: bool) -> None:
    t = resolve(address, None, False)
    assert (t.target, t.host, t.tls) == (target, host, tls)
    assert (t.service_config == ROUND_ROBIN_CONFIG) is rr


def test_resolve_tls_choices() -> None:
    assert resolve("127.0.0.1:1", True, False).tls
    assert not resolve("10.0.0.7:1", None, True).tls
    assert not resolve("fs.prod:1", False, True).tls
    with pytest.raises(ValueError, match="insecure=True"):
        resolve("fs.prod:1", False, False)
    with pytest.raises(ValueError, match="contradict"):
        resolve("fs.prod:1", True, True)
    for bad in ("", "fs.prod", "::1:5", "[::1]", "host:"):
        with pytest.raises(ValueError):
            resolve(bad, None, False)
    assert is_loopback("127.8.0.1") and is_loopback("[::1]") and is_loopback("LOCALHOST")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.com")


def test_client_argument_checks() -> None:
    with pytest.raises(ValueError, match="need TLS"):
        fs.Client("127.0.0.1:1", ca_file="/nonexistent")
    with pytest.raises(ValueError, match="go together"):
        fs.Client("127.0.0.1:1", tls=True, cert_file="/x")
    with pytest.raises(ValueError):
        fs.Client("127.0.0.1:1", retries=-1)
    with pytest.raises(ValueError, match="insecure=True"):
        fs.Client("remote.example:1", tls=False)
    # TLS by default for a remote name (no connection is made until a call)
    with fs.Client("remote.example:443") as c:
        assert c.uses_tls and c.target == "dns:///remote.example:443"


def test_backoff_bounds_and_hint() -> None:
    b = Backoff(retries=5, base=0.1, maximum=1.0, rng=random.Random(7))
    for attempt in range(1, 8):
        nominal = min(0.1 * 2 ** (attempt - 1), 1.0)
        for _ in range(50):
            d = b.delay(attempt)
            assert 0.5 * nominal <= d <= min(1.5 * nominal, 1.0)
    assert b.delay(1, hint=0.7) >= 0.7
    assert b.delay(1, hint=30) == 1.0


@pytest.mark.parametrize("value,vtype,field,want", [
    (7, fs.ValueType.INT64, "int64_value", 7),
    (np.int32(7), fs.ValueType.INT64, "int64_value", 7),
    (3.0, fs.ValueType.INT64, "int64_value", 3),
    (2, fs.ValueType.DOUBLE, "double_value", 2.0),
    (np.float32(0.5), fs.ValueType.DOUBLE, "double_value", 0.5),
    ("é", fs.ValueType.STRING, "string_value", "é"),
    (bytearray(b"ab"), fs.ValueType.BYTES, "bytes_value", b"ab"),
    (np.bool_(True), fs.ValueType.BOOL, "bool_value", True),
    (np.array([1, 2], dtype=np.int64), fs.ValueType.FLOAT_LIST, "float_list_value", [1.0, 2.0]),
    ((1, 2), fs.ValueType.INT64_LIST, "int64_list_value", [1, 2]),
    (["a"], fs.ValueType.STRING_LIST, "string_list_value", ["a"]),
])
def test_to_proto_by_declared_type(value: Any, vtype: fs.ValueType, field: str, want: Any) -> None:
    v = to_proto(value, vtype, "here")
    assert v.WhichOneof("kind") == field
    assert to_python(v) == want


@pytest.mark.parametrize("value,vtype", [
    (True, fs.ValueType.INT64), (1.5, fs.ValueType.INT64), (float("nan"), fs.ValueType.INT64),
    ("1", fs.ValueType.DOUBLE), (1, fs.ValueType.BOOL), (b"x", fs.ValueType.STRING),
    ("x", fs.ValueType.BYTES), (5, fs.ValueType.FLOAT_LIST), (["a"], fs.ValueType.FLOAT_LIST),
    ([1.5], fs.ValueType.INT64_LIST), ([1], fs.ValueType.STRING_LIST),
])
def test_to_proto_rejects_what_does_not_fit(value: Any, vtype: fs.ValueType) -> None:
    with pytest.raises(TypeError, match="^here: "):
        to_proto(value, vtype, "here")


def test_infer_type_and_passthrough() -> None:
    assert [infer_type(v) for v in (True, 1, 1.5, "s", b"b", [1], [1.5], ["s"], np.zeros(2))] == [
        fs.ValueType.BOOL, fs.ValueType.INT64, fs.ValueType.DOUBLE, fs.ValueType.STRING, fs.ValueType.BYTES,
        fs.ValueType.INT64_LIST, fs.ValueType.FLOAT_LIST, fs.ValueType.STRING_LIST, fs.ValueType.FLOAT_LIST]
    with pytest.raises(TypeError):
        infer_type(object())
    raw = pb.Value(int64_value=3)
    assert to_proto(raw, fs.ValueType.STRING, "x") is raw
    assert to_python(pb.Value()) is None


def test_event_times() -> None:
    aware = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)
    us = 1767323045678901
    assert _event_time_micros(aware) == us
    assert _event_time_micros(aware.replace(tzinfo=None)) == us  # naive is UTC
    cet = aware.astimezone(dt.timezone(dt.timedelta(hours=1)))
    assert _event_time_micros(cet) == us
    assert _event_time_micros(1767323045) == 1767323045_000_000
    assert _event_time_micros(1767323045.5) == 1767323045_500_000
    assert _event_time_micros(pd.Timestamp(aware)) == us
    with pytest.raises(TypeError):
        _event_time_micros(True)
    with pytest.raises(TypeError):
        _event_time_micros("yesterday")  # type: ignore[arg-type]


def test_progress_lines() -> None:
    now = [0.0]
    out = io.StringIO()
    p = fs.Progress(1000, out, interval=5, clock=lambda: now[0])
    p.update(100)
    now[0] = 6
    p.update(500)
    now[0] = 7
    p.update(400)
    p.finish()
    lines = out.getvalue().splitlines()
    assert lines == ["batch_write: 600/1000 rows (60%), 100 rows/s", "batch_write: 1000/1000 rows (100%), 143 rows/s"]

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    p = fs.Progress(None, tty, clock=lambda: now[0])
    now[0] = 8
    p.update(10)
    p.finish()
    assert tty.getvalue().startswith("\r") and tty.getvalue().endswith("\n") and "10 rows" in tty.getvalue()


def test_feature_set_and_summary_helpers() -> None:
    s = fs.FeatureSet("a", "e", [("x", "double"), fs.FeatureSpec("n", 1)])
    assert s.feature_types() == {"x": fs.ValueType.DOUBLE, "n": fs.ValueType.INT64}
    assert fs.BatchSummary(3, 2, 1, 0).rows == 6
    assert fs.error_class(grpc.StatusCode.NOT_FOUND) is fs.NotFoundError


def test_public_api_is_typed_and_documented() -> None:
    missing: list[str] = []
    for name in fs.__all__:
        obj = getattr(fs, name)
        if name in ("RowLike", "EventTime", "ERROR_DOMAIN"):
            continue  # type aliases and a constant
        if not (inspect.getdoc(obj) or "").strip():
            missing.append(f"{name}: no docstring")
        members = [obj]
        if inspect.isclass(obj):
            members = [m for n, m in vars(obj).items() if inspect.isfunction(m) and (not n.startswith("_") or n == "__init__")]
            members += [p.fget for n, p in vars(obj).items() if isinstance(p, property) and not n.startswith("_")]
        for m in members:
            if not inspect.isfunction(m):
                continue
            qual = f"{name}.{m.__name__}"
            if m.__name__ != "__init__" and not (inspect.getdoc(m) or "").strip():
                missing.append(f"{qual}: no docstring")
            sig = inspect.signature(m)
            for pname, param in sig.parameters.items():
                if pname != "self" and param.annotation is inspect.Parameter.empty:
                    missing.append(f"{qual}({pname}): no type")
            if sig.return_annotation is inspect.Signature.empty:
                missing.append(f"{qual}: no return type")
    assert not missing, "\n".join(missing)


def test_unknown_enum_values_from_a_newer_server() -> None:
    msg = pb.FeatureSet(name="s", entity_type="e", features=[pb.FeatureSpec(name="f", type=42)])  # type: ignore[arg-type]
    s = fs.FeatureSet._from_proto(msg)
    assert s.features[0].type is fs.ValueType.UNSPECIFIED
    assert fs.FeatureStatus(9) is fs.FeatureStatus.UNSPECIFIED and fs.WriteStatus(9) is fs.WriteStatus.UNSPECIFIED
    assert fs.DeletionState(9) is fs.DeletionState.UNSPECIFIED
    col = pb.FeatureColumn(feature="s:f", type=42, statuses=[7], event_times=[0])  # type: ignore[arg-type]
    cols = fs.FeatureColumns(pb.GetFeatureColumnsResponse(columns=[col]), ["e"])
    assert cols["s:f"].status_list() == [fs.FeatureStatus.UNSPECIFIED]
    with pytest.raises(TypeError, match="unsupported type"):
        cols["s:f"].to_numpy()
    with pytest.raises(TypeError, match="unsupported type"):
        cols["s:f"].to_list()
    with pytest.raises(ValueError):
        fs.FeatureColumns(pb.GetFeatureColumnsResponse(columns=[col]), ["e", "e2"])  # 1 status for 2 entities
