"""GDPR deletion (GdprService) against the real server; the test server runs with a 1 s
index settle, so a deletion takes about three seconds."""

from __future__ import annotations

import time
import uuid
from typing import Callable

import pytest

import featurestore as fs
from conftest import now_minus


def test_delete_subject_waits_until_done(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("pd", {"n": fs.ValueType.INT64}, personal_data=True)
    assert s.personal_data
    subject, other = f"user-{uuid.uuid4().hex[:8]}", f"user-{uuid.uuid4().hex[:8]}"
    t = now_minus(30)
    res = client.write(s.name, [fs.Row("a", {"n": 1}, t, subject), fs.Row("b", {"n": 2}, t, subject),
                                fs.Row("c", {"n": 3}, t, other)])
    assert all(r.status == fs.WriteStatus.WRITTEN for r in res)
    started = time.monotonic()
    d = client.delete_subject(subject, reason="test request", poll_interval=0.2, wait_timeout=60)
    assert d.state == fs.DeletionState.DONE and d.items_deleted == 2
    assert d.id and d.failure_reason == ""
    assert d.requested_at is not None and d.completed_at is not None and d.completed_at >= d.requested_at
    assert time.monotonic() - started < 60
    got = client.get_features([f"{s.name}:n"], ["a", "b", "c"])
    assert [e.statuses[0] for e in got] == [fs.FeatureStatus.NOT_FOUND, fs.FeatureStatus.NOT_FOUND, fs.FeatureStatus.PRESENT]
    [late] = client.write(s.name, [fs.Row("a", {"n": 9}, t, subject)])  # older than the deletion
    assert late.status == fs.WriteStatus.REJECTED and late.reason == "SUBJECT_ERASED"
    assert client.get_deletion(d.id) == d


def test_done_deletion_forgets_the_subject(client: fs.Client) -> None:
    """Proto contract: Deletion.subject_id is set only while PENDING or RUNNING; once DONE no
    record of the deletion holds the subject id. Fails while the server returns it."""
    subject = f"user-{uuid.uuid4().hex[:8]}"
    d = client.delete_subject(subject, poll_interval=0.2, wait_timeout=60)
    assert d.state == fs.DeletionState.DONE
    assert client.get_deletion(d.id).subject_id == "", "a DONE deletion still names its subject"


def test_delete_subject_without_waiting(client: fs.Client) -> None:
    subject = f"user-{uuid.uuid4().hex[:8]}"
    d = client.delete_subject(subject, wait=False)
    assert d.state in (fs.DeletionState.PENDING, fs.DeletionState.RUNNING)
    assert d.subject_id == subject
    again = client.delete_subject(subject, wait=False)  # filed again while pending: the same job
    assert again.id == d.id
    end = time.monotonic() + 60
    while (cur := client.get_deletion(d.id)).state not in (fs.DeletionState.DONE, fs.DeletionState.FAILED):
        assert time.monotonic() < end, cur
        time.sleep(0.2)
    assert cur.state == fs.DeletionState.DONE and cur.items_deleted == 0


def test_personal_data_rows_need_a_subject(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    s = make_set("pds", {"n": fs.ValueType.INT64}, personal_data=True)
    with pytest.raises(fs.InvalidArgumentError) as ei:
        client.write(s.name, [fs.Row("a", {"n": 1}, now_minus(1))])
    assert "subject_id" in ei.value.field


def test_get_unknown_deletion(client: fs.Client) -> None:
    with pytest.raises(fs.NotFoundError) as ei:
        client.get_deletion("del-0000000000000000")
    assert ei.value.reason and ei.value.domain == fs.ERROR_DOMAIN
