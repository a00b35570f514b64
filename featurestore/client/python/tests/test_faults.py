"""Retries, outcome-unknown writes and the stream writer's resend, with real connections
broken by a TCP proxy between the SDK and the real server."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from typing import Any, Callable

import grpc
import pytest

import featurestore as fs
from conftest import Env, now_minus
from proxy import Proxy

SPECS = {"n": fs.ValueType.INT64, "x": fs.ValueType.DOUBLE}


def wait_until(cond: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_unavailable_is_retried_until_the_server_is_back(env: Env, proxy: Proxy,
                                                         make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("rt", SPECS)
    delays: list[float] = []

    def sleep(d: float) -> None:
        delays.append(d)
        proxy.refuse(False)  # the server is back before the next attempt
        time.sleep(d)

    proxy.refuse(True)
    with fs.Client(proxy.address, retries=8, backoff=0.05, sleep=sleep, rng=random.Random(1)) as c:
        got = c.get_features([f"{s.name}:n"], ["e"])
    assert got[0].statuses == [fs.FeatureStatus.NOT_FOUND]
    assert proxy.refused >= 1 and proxy.accepted > proxy.refused
    # gRPC reconnects 100 ms after the failure; the third attempt (0.17 s) normally finds
    # the connection up. Without the Client's connectivity watcher it took 7 retries (~7 s).
    assert 1 <= len(delays) <= 4, delays


def test_retries_are_bounded_with_jittered_backoff(env: Env, proxy: Proxy) -> None:
    delays: list[float] = []
    proxy.refuse(True)
    with fs.Client(proxy.address, retries=3, backoff=0.02, sleep=lambda d: (delays.append(d), time.sleep(d))[1]) as c:
        with pytest.raises(fs.UnavailableError) as ei:
            c.get_feature_set("anything")
    assert ei.value.code == grpc.StatusCode.UNAVAILABLE and ei.value.attempts == 4
    assert len(delays) == 3
    for k, d in enumerate(delays):
        base = 0.02 * 2 ** k
        assert 0.5 * base <= d <= 1.5 * base, (k, d)
    with fs.Client(proxy.address, retries=0) as c:
        with pytest.raises(fs.UnavailableError) as ei:
            c.get_feature_set("anything")
    assert ei.value.attempts == 1


def _write_in_thread(c: fs.Client, set_name: str, rows: list[fs.Row]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["results"] = c.write(set_name, rows)
        except BaseException as e:  # handed to the test thread
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_retried_write_that_comes_back_stale_is_outcome_unknown(env: Env, proxy: Proxy, client: fs.Client,
                                                                make_set: Callable[..., fs.FeatureSet]) -> None:
    """The first attempt applies, its response is lost, a newer write lands, and the retry
    is answered STALE: the SDK must not report "not applied"."""
    s = make_set("ou", SPECS)
    t0 = now_minus(60)
    ref = f"{s.name}:n"
    with fs.Client(proxy.address, retries=4, backoff=0.05) as via_proxy:
        via_proxy.get_features([ref], ["warm-up"])  # connection and schema ready
        via_proxy.write(s.name, [fs.Row("warm-up", {"n": 0}, t0)])
        proxy.hold_responses()
        th, out = _write_in_thread(via_proxy, s.name, [fs.Row("k", {"n": 1}, t0), fs.Row("k2", {"n": 2}, t0)])
        wait_until(lambda: client.get_features([ref], ["k", "k2"])[1].values == [2], what="the first attempt to land")
        client.write(s.name, [fs.Row("k", {"n": 99}, t0 + dt.timedelta(seconds=1))])  # newer write
        assert proxy.cut() >= 1
        proxy.release()
        th.join(20)
    assert not th.is_alive()
    err = out.get("error")
    assert isinstance(err, fs.OutcomeUnknownError), out
    assert err.rows == [0] and err.attempts >= 2
    assert err.results[0].status == fs.WriteStatus.STALE and err.results[0].outcome_unknown
    assert err.results[1].status == fs.WriteStatus.WRITTEN and not err.results[1].outcome_unknown
    assert client.get_features([ref], ["k"])[0].values == [99]


def test_retried_write_that_applied_is_written(env: Env, proxy: Proxy, client: fs.Client,
                                               make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("ra", SPECS)
    ref = f"{s.name}:x"
    t0 = now_minus(30)
    with fs.Client(proxy.address) as via_proxy:
        via_proxy.write(s.name, [fs.Row("warm", {"x": 0.0}, t0)])
        proxy.hold_responses()
        th, out = _write_in_thread(via_proxy, s.name, [fs.Row("r", {"x": 1.5}, t0)])
        wait_until(lambda: client.get_features([ref], ["r"])[0].values == [1.5], what="the first attempt to land")
        accepted = proxy.accepted
        proxy.cut()
        proxy.release()
        th.join(20)
    assert "error" not in out, out
    [r] = out["results"]
    assert r.status == fs.WriteStatus.WRITTEN and not r.outcome_unknown
    assert proxy.accepted > accepted, "the write was not retried on a new connection"


def test_stream_writer_resends_after_reconnect(env: Env, proxy: Proxy, client: fs.Client,
                                               make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("rs", SPECS)
    ref = f"{s.name}:n"
    t0 = now_minus(40)
    acks: list[fs.Ack] = []
    with fs.Client(proxy.address, backoff=0.05) as via_proxy:
        w = via_proxy.stream_writer(on_ack=acks.append)
        w.send(s.name, [fs.Row("before", {"n": 0}, t0)])
        w.flush(timeout=20)
        proxy.hold_responses()
        for i in range(5):
            w.send(s.name, [fs.Row(f"r{i}", {"n": i}, t0)])
        ids = [f"r{i}" for i in range(5)]
        wait_until(lambda: client.get_features([ref], ids).to_pandas()[ref].notna().all(), what="the sends to land")
        assert w.unacked == 5
        client.write(s.name, [fs.Row("r0", {"n": 100}, t0 + dt.timedelta(seconds=1))])  # overtakes r0
        proxy.cut()
        proxy.release()
        w.send(s.name, [fs.Row("after", {"n": 7}, t0)])
        w.close(timeout=30)
    assert w.reconnects >= 1 and w.unacked == 0
    by_seq = {a.sequence: a for a in acks}
    assert sorted(by_seq) == list(range(1, 8)) and len(acks) == 7, [a.sequence for a in acks]
    assert not by_seq[1].resent
    for seq in range(2, 7):
        assert by_seq[seq].resent, seq
    r0 = by_seq[2].results[0]
    assert r0.status == fs.WriteStatus.STALE and r0.outcome_unknown
    assert all(a.results[0].status == fs.WriteStatus.WRITTEN for q, a in by_seq.items() if q not in (2,))
    assert w.counts()["outcome_unknown"] == 1 and w.counts()["acked"] == 7
    got = client.get_features([ref], ["r0", "r4", "after"])
    assert [e.values[0] for e in got] == [100, 4, 7]


def test_stream_writer_gives_up_after_reconnects(env: Env, proxy: Proxy, make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("rg", SPECS)
    with fs.Client(proxy.address, backoff=0.01) as via_proxy:
        w = via_proxy.stream_writer(reconnects=2)
        w.send(s.name, [fs.Row("a", {"n": 1})])
        w.flush(timeout=20)
        proxy.hold_responses()
        w.send(s.name, [fs.Row("b", {"n": 2})])
        proxy.refuse(True)
        proxy.cut()
        with pytest.raises(fs.UnavailableError, match="gave up after 2 failed reconnects"):
            w.flush(timeout=20)
        with pytest.raises(fs.UnavailableError):
            w.send(s.name, [fs.Row("c", {"n": 3})])
        w.abort()
    assert w.reconnects == 2


def test_batch_write_is_not_retried(env: Env, proxy: Proxy, make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("bn", SPECS)
    with fs.Client(proxy.address) as via_proxy:
        via_proxy.write(s.name, [fs.Row("warm", {"n": 0})])  # caches the schema
        proxy.refuse(True)
        proxy.cut()
        with pytest.raises(fs.UnavailableError) as ei:
            via_proxy.batch_write(s.name, [fs.Row("a", {"n": 1})], progress=False)
    assert ei.value.attempts == 1
