"""The SDK's error mapping and retry decisions against an in-process gRPC server that
answers exactly what a test scripts: every status code with its details (the real server
cannot be made to produce ABORTED, INTERNAL, DATA_LOSS and the like on demand), a FAILED
deletion, and retried calls whose outcome is ambiguous. The transport is real gRPC."""

from __future__ import annotations

import time
from concurrent import futures
from typing import Any, Callable, Iterator, Optional

import grpc
import pytest
from google.protobuf import any_pb2

import featurestore as fs
from featurestore._proto.featurestore.sdk.rpc import status_pb2
from featurestore._proto.featurestore.v1 import featurestore_pb2 as pb
from featurestore._proto.featurestore.v1 import featurestore_pb2_grpc as pb_grpc

Handler = Callable[[Any, grpc.ServicerContext], Any]


def details(code: grpc.StatusCode, message: str, *, reason: str = "", field: str = "",
            violations: tuple[tuple[str, str], ...] = (), retry: Optional[float] = None) -> bytes:
    """A serialized google.rpc.Status as the Go server builds it."""
    st = status_pb2.Status(code=code.value[0], message=message)
    if reason:
        info = status_pb2.ErrorInfo(reason=reason, domain=fs.ERROR_DOMAIN, metadata={"field": field} if field else {})
        st.details.append(any_pb2.Any(type_url="type.googleapis.com/google.rpc.ErrorInfo", value=info.SerializeToString()))
    if violations:
        br = status_pb2.BadRequest(field_violations=[status_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations])
        st.details.append(any_pb2.Any(type_url="type.googleapis.com/google.rpc.BadRequest", value=br.SerializeToString()))
    if retry is not None:
        ri = status_pb2.RetryInfo()
        ri.retry_delay.FromNanoseconds(int(retry * 1e9))
        st.details.append(any_pb2.Any(type_url="type.googleapis.com/google.rpc.RetryInfo", value=ri.SerializeToString()))
    # a detail the SDK does not know must be ignored
    st.details.append(any_pb2.Any(type_url="type.googleapis.com/google.rpc.DebugInfo", value=b"\x0a\x01x"))
    return st.SerializeToString()


def fail(ctx: grpc.ServicerContext, code: grpc.StatusCode, message: str, trailer: Optional[bytes]) -> None:
    if trailer is not None:
        ctx.set_trailing_metadata((("grpc-status-details-bin", trailer),))
    ctx.abort(code, message)


class Script(pb_grpc.FeatureStoreServiceServicer, pb_grpc.GdprServiceServicer):
    """Answers each RPC with the next handler queued for it; records the metadata seen."""

    def __init__(self) -> None:
        self.queues: dict[str, list[Handler]] = {}
        self.metadata: list[dict[str, str]] = []

    def on(self, rpc: str, *handlers: Handler) -> None:
        self.queues.setdefault(rpc, []).extend(handlers)

    def _next(self, rpc: str, req: Any, ctx: grpc.ServicerContext) -> Any:
        self.metadata.append(dict(ctx.invocation_metadata()))
        q = self.queues.get(rpc)
        if not q:
            ctx.abort(grpc.StatusCode.UNIMPLEMENTED, f"nothing scripted for {rpc}")
        return q.pop(0)(req, ctx)



def _scripted(rpc: str) -> Callable[[Script, Any, grpc.ServicerContext], Any]:
    def method(self: Script, req: Any, ctx: grpc.ServicerContext) -> Any:
        return self._next(rpc, req, ctx)
    return method


for _rpc in ("ApplyFeatureSet", "GetFeatureSet", "ListFeatureSets", "DeleteFeatureSet", "GetFeatures",
             "GetFeatureColumns", "WriteFeatures", "DeleteEntities", "DeleteSubject", "GetDeletion"):
    setattr(Script, _rpc, _scripted(_rpc))


@pytest.fixture
def fake() -> Iterator[tuple[Script, str]]:
    script = Script()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_FeatureStoreServiceServicer_to_server(script, server)
    pb_grpc.add_GdprServiceServicer_to_server(script, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield script, f"127.0.0.1:{port}"
    finally:
        server.stop(None)


ALL_CODES = [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK]


@pytest.mark.parametrize("code", ALL_CODES, ids=[c.name for c in ALL_CODES])
def test_every_status_code_maps_to_its_exception(fake: tuple[Script, str], code: grpc.StatusCode) -> None:
    script, addr = fake
    trailer = details(code, "rows[2].values[\"x\"]: nope", reason="SOME_REASON", field='rows[2].values["x"]',
                      violations=(('rows[2].values["x"]', "nope"),), retry=0.25)
    script.on("GetFeatureSet", lambda req, ctx: fail(ctx, code, 'rows[2].values["x"]: nope', trailer))
    with fs.Client(addr, retries=0) as c:
        with pytest.raises(fs.FeatureStoreError) as ei:
            c.get_feature_set("s")
    e = ei.value
    assert type(e) is fs.error_class(code) and type(e) is not fs.FeatureStoreError
    assert e.code == code and e.message == 'rows[2].values["x"]: nope'
    assert e.reason == "SOME_REASON" and e.domain == fs.ERROR_DOMAIN and e.field == 'rows[2].values["x"]'
    assert e.metadata == {"field": 'rows[2].values["x"]'}
    assert e.violations == [fs.FieldViolation('rows[2].values["x"]', "nope")]
    assert e.retry_delay == pytest.approx(0.25) and e.attempts == 1
    assert code.name in str(e) and "SOME_REASON" in str(e)


def test_errors_without_details_or_with_garbage(fake: tuple[Script, str]) -> None:
    script, addr = fake
    script.on("GetFeatureSet", lambda req, ctx: fail(ctx, grpc.StatusCode.ABORTED, "plain", None),
              lambda req, ctx: fail(ctx, grpc.StatusCode.INTERNAL, "garbled", b"\xff\xff\x00garbage"))
    with fs.Client(addr, retries=0) as c:
        with pytest.raises(fs.AbortedError) as ei:
            c.get_feature_set("s")
        assert (ei.value.reason, ei.value.field, ei.value.violations, ei.value.retry_delay) == ("", "", [], None)
        with pytest.raises(fs.InternalError) as ei2:
            c.get_feature_set("s")
        assert ei2.value.message == "garbled" and ei2.value.reason == ""


def test_token_is_sent_as_bearer_metadata(fake: tuple[Script, str]) -> None:
    script, addr = fake
    fset = pb.FeatureSet(name="s", entity_type="e", version=3)
    script.on("GetFeatureSet", lambda req, ctx: pb.GetFeatureSetResponse(feature_set=fset))
    with fs.Client(addr, token="s3cret") as c:
        assert c.get_feature_set("s").version == 3
    assert script.metadata[-1]["authorization"] == "Bearer s3cret"


def unavailable(retry: Optional[float] = None) -> Handler:
    return lambda req, ctx: fail(ctx, grpc.StatusCode.UNAVAILABLE, "store unavailable",
                                 details(grpc.StatusCode.UNAVAILABLE, "x", reason="STORE_UNAVAILABLE", retry=retry))


def test_retry_honours_retry_info_and_stops_on_other_codes(fake: tuple[Script, str]) -> None:
    script, addr = fake
    slept: list[float] = []
    fset = pb.FeatureSet(name="s", entity_type="e")
    script.on("GetFeatureSet", unavailable(retry=0.3), lambda req, ctx: pb.GetFeatureSetResponse(feature_set=fset))
    script.on("ApplyFeatureSet", lambda req, ctx: fail(ctx, grpc.StatusCode.ABORTED, "contention", None))
    with fs.Client(addr, backoff=0.01, sleep=slept.append) as c:
        assert c.get_feature_set("s").name == "s"
        assert slept == [pytest.approx(0.3)]
        with pytest.raises(fs.AbortedError):  # not retried
            c.apply_feature_set(fs.FeatureSet("s", "e"))
    assert len(slept) == 1


def test_retry_respects_the_call_timeout(fake: tuple[Script, str]) -> None:
    script, addr = fake
    script.on("GetFeatureSet", *[unavailable() for _ in range(10)])
    slept: list[float] = []
    with fs.Client(addr, retries=9, backoff=0.2, timeout=0.5, sleep=lambda d: (slept.append(d), time.sleep(d))[1]) as c:
        with pytest.raises(fs.UnavailableError) as ei:
            c.get_feature_set("s")
    assert sum(slept) < 0.5 and ei.value.attempts == len(slept) + 1 < 10


def test_retried_write_answered_stale_raises_outcome_unknown(fake: tuple[Script, str]) -> None:
    script, addr = fake
    fset = pb.FeatureSet(name="s", entity_type="e", features=[pb.FeatureSpec(name="n", type=pb.VALUE_TYPE_INT64)])
    script.on("GetFeatureSet", lambda req, ctx: pb.GetFeatureSetResponse(feature_set=fset))
    stale = pb.RowResult(status=pb.WRITE_STATUS_STALE, version=5, reason="STALE", error="older")
    ok = pb.RowResult(status=pb.WRITE_STATUS_WRITTEN, version=6)
    script.on("WriteFeatures", unavailable(), lambda req, ctx: pb.WriteFeaturesResponse(results=[ok, stale]),
              lambda req, ctx: pb.WriteFeaturesResponse(results=[ok, stale]))
    with fs.Client(addr, backoff=0.001) as c:
        with pytest.raises(fs.OutcomeUnknownError) as ei:
            c.write("s", [fs.Row("a", {"n": 1}), fs.Row("b", {"n": 2})])
        e = ei.value
        assert e.rows == [1] and e.attempts == 2 and e.code == grpc.StatusCode.UNAVAILABLE
        assert [r.outcome_unknown for r in e.results] == [False, True]
        # the same answer without a retry is a plain STALE
        res = c.write("s", [fs.Row("a", {"n": 1}), fs.Row("b", {"n": 2})])
        assert res[1].status == fs.WriteStatus.STALE and not res[1].outcome_unknown


def test_retried_delete_entities_reports_unknown_existence(fake: tuple[Script, str]) -> None:
    script, addr = fake
    resp = pb.DeleteEntitiesResponse(results=[pb.EntityDeletion(entity_id="a", existed=True, version=9),
                                              pb.EntityDeletion(entity_id="b", existed=False, version=3)])
    script.on("DeleteEntities", lambda req, ctx: resp, unavailable(), lambda req, ctx: resp)
    with fs.Client(addr, backoff=0.001) as c:
        assert [d.existed for d in c.delete_entities("s", ["a", "b"])] == [True, False]
        assert [d.existed for d in c.delete_entities("s", ["a", "b"])] == [True, None]


def test_retried_delete_feature_set_answered_not_found(fake: tuple[Script, str]) -> None:
    script, addr = fake
    not_found: Handler = lambda req, ctx: fail(ctx, grpc.StatusCode.NOT_FOUND, "no set",
                                               details(grpc.StatusCode.NOT_FOUND, "x", reason="NOT_FOUND"))
    script.on("DeleteFeatureSet", unavailable(), not_found, not_found)
    with fs.Client(addr, backoff=0.001) as c:
        with pytest.raises(fs.OutcomeUnknownError):
            c.delete_feature_set("s")
        with pytest.raises(fs.NotFoundError):
            c.delete_feature_set("s")


def test_deletion_failed_is_raised(fake: tuple[Script, str]) -> None:
    script, addr = fake
    pending = pb.Deletion(id="del-1", subject_id="u", state=pb.DELETION_STATE_PENDING)
    running = pb.Deletion(id="del-1", subject_id="u", state=pb.DELETION_STATE_RUNNING)
    failed = pb.Deletion(id="del-1", state=pb.DELETION_STATE_FAILED, failure_reason="index unreachable")
    script.on("DeleteSubject", lambda req, ctx: pb.DeleteSubjectResponse(deletion=pending))
    script.on("GetDeletion", lambda req, ctx: pb.GetDeletionResponse(deletion=running),
              lambda req, ctx: pb.GetDeletionResponse(deletion=failed))
    slept: list[float] = []
    with fs.Client(addr, sleep=slept.append) as c:
        with pytest.raises(fs.DeletionFailedError) as ei:
            c.delete_subject("u", poll_interval=0.01)
    assert ei.value.deletion.failure_reason == "index unreachable" and ei.value.reason == "DELETION_FAILED"
    assert "index unreachable" in str(ei.value) and ei.value.code is None
    assert slept == [0.01, 0.01]


def test_deletion_wait_times_out(fake: tuple[Script, str]) -> None:
    script, addr = fake
    running = pb.Deletion(id="del-2", subject_id="u", state=pb.DELETION_STATE_RUNNING)
    script.on("DeleteSubject", lambda req, ctx: pb.DeleteSubjectResponse(deletion=running))
    script.on("GetDeletion", *[lambda req, ctx: pb.GetDeletionResponse(deletion=running)] * 100)
    with fs.Client(addr) as c:
        with pytest.raises(TimeoutError, match="del-2"):
            c.delete_subject("u", poll_interval=0.02, wait_timeout=0.1)


def test_list_guards_against_a_repeating_page_token(fake: tuple[Script, str]) -> None:
    script, addr = fake
    page = pb.ListFeatureSetsResponse(feature_sets=[pb.FeatureSet(name="a", entity_type="e")], next_page_token="t1")
    script.on("ListFeatureSets", *[lambda req, ctx: page] * 3)
    with fs.Client(addr) as c:
        with pytest.raises(fs.FeatureStoreError, match="twice"):
            list(c.iter_feature_sets())


def test_caller_channel_options_win(fake: tuple[Script, str]) -> None:
    script, addr = fake
    big = pb.FeatureSet(name="s", entity_type="e", description="x" * 200)
    script.on("GetFeatureSet", *[lambda req, ctx: pb.GetFeatureSetResponse(feature_set=big)] * 2)
    with fs.Client(addr) as c:
        assert c.get_feature_set("s").description == "x" * 200
    with fs.Client(addr, options=[("grpc.max_receive_message_length", 64)]) as c:
        with pytest.raises(fs.ResourceExhaustedError):
            c.get_feature_set("s")
