"""The streaming-lane writer: acknowledgements by sequence, and resend after reconnect."""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional

import grpc

from featurestore._errors import FeatureStoreError, UnavailableError, from_rpc_error
from featurestore._proto.featurestore.v1 import featurestore_pb2 as pb
from featurestore._types import Ack, RowResult, WriteStatus

if TYPE_CHECKING:
    from featurestore._client import Client, RowLike


class _Pending:
    """A request awaiting its acknowledgement, and how many times it was handed to gRPC."""

    __slots__ = ("request", "sends")

    def __init__(self, request: pb.StreamWriteFeaturesRequest) -> None:
        self.request = request
        self.sends = 0


class StreamWriter:
    """Writes on the streaming lane (StreamWriteFeatures).

    ``send`` queues a request and returns its sequence number; the server acknowledges
    each request once its rows are durable and published (acks may come out of order).
    The writer keeps every request until it is acknowledged. When the stream breaks with
    UNAVAILABLE it reconnects with jittered backoff and resends the unacknowledged
    requests in sequence order; that is safe because a row that had landed merges as a
    no-op. A resent request's ack has ``resent`` set, and its STALE rows
    ``outcome_unknown`` (the first send may have applied them before a newer write). It
    gives up after ``reconnects`` consecutive failed connections, or at once on any other
    error; ``send``, ``flush`` and ``close`` then raise it.

    ``on_ack`` is called with every Ack from the writer's thread; if it raises, the
    writer stops and the exception is raised from the next call. ``send`` blocks while
    ``max_unacked`` requests await acknowledgement (backpressure). Safe to use from
    several threads; use it as a context manager (leaving the block closes it, or aborts
    it if the block raised).
    """

    def __init__(self, client: "Client", *, max_unacked: int = 64, reconnects: int = 10,
                 on_ack: Optional[Callable[[Ack], None]] = None) -> None:
        if max_unacked < 1:
            raise ValueError("max_unacked must be at least 1")
        self._client = client
        self._max_unacked = max_unacked
        self._max_reconnects = reconnects
        self._on_ack = on_ack
        self._cond = threading.Condition()
        self._unacked: dict[int, _Pending] = {}  # insertion order is sequence order
        self._seq = 0
        self._queue: "queue.Queue[Optional[pb.StreamWriteFeaturesRequest]]" = queue.Queue()
        self._call: Optional[grpc.Call] = None
        self._err: Optional[BaseException] = None
        self._closing = False
        self._stop = threading.Event()
        self._reconnects = 0
        self._counts = {"acked": 0, "written": 0, "stale": 0, "rejected": 0, "outcome_unknown": 0}
        self._thread = threading.Thread(target=self._run, name="featurestore-stream-writer", daemon=True)
        self._thread.start()

    # -- public ------------------------------------------------------------------------

    def send(self, feature_set: str, rows: Iterable["RowLike"]) -> int:
        """Queues rows of a feature set as one request and returns its sequence number.
        Blocks while ``max_unacked`` requests await acknowledgement.

        Raises:
            FeatureStoreError: the writer gave up (the stream's final error).
            RuntimeError: the writer was closed.
            TypeError: a value does not fit its feature's type.
        """
        msgs = self._client._rows_to_proto(feature_set, list(rows))
        with self._cond:
            while len(self._unacked) >= self._max_unacked and self._err is None and not self._closing:
                self._cond.wait()
            if self._err is not None:
                raise self._err
            if self._closing:
                raise RuntimeError("the stream writer is closed")
            self._seq += 1
            req = pb.StreamWriteFeaturesRequest(sequence=self._seq, feature_set=feature_set, rows=msgs)
            self._unacked[self._seq] = _Pending(req)
            self._queue.put(req)
            return self._seq

    def flush(self, timeout: Optional[float] = None) -> None:
        """Waits until every request sent so far is acknowledged.

        Raises:
            TimeoutError: not all acknowledged within ``timeout`` seconds.
            FeatureStoreError: the writer gave up.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._unacked and self._err is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{len(self._unacked)} requests still unacknowledged after {timeout} s")
                self._cond.wait(remaining)
            if self._err is not None:
                raise self._err

    def close(self, timeout: Optional[float] = None) -> None:
        """Waits for every acknowledgement, then ends the stream and the writer's thread.

        Raises:
            TimeoutError: not all acknowledged within ``timeout`` seconds (the writer is
                then aborted).
            FeatureStoreError: the writer gave up; unacknowledged requests may or may not
                have been written (resending them is safe).
        """
        try:
            self.flush(timeout)
        except BaseException:
            self.abort()
            raise
        with self._cond:
            self._closing = True
            self._queue.put(None)  # half-close: the server ends the stream
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.abort()
            raise TimeoutError("the stream did not end in time")
        if self._err is not None:
            raise self._err

    def abort(self) -> None:
        """Cancels the stream at once; unacknowledged requests may or may not have been
        written. Safe to call more than once."""
        with self._cond:
            self._closing = True
            if self._err is None:
                self._err = RuntimeError("the stream writer was aborted")
            self._stop.set()
            call = self._call
            self._queue.put(None)
            self._cond.notify_all()
        if call is not None:
            call.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def unacked(self) -> int:
        """How many requests await acknowledgement."""
        with self._cond:
            return len(self._unacked)

    @property
    def reconnects(self) -> int:
        """How many times the writer reconnected after the stream broke."""
        with self._cond:
            return self._reconnects

    def counts(self) -> dict[str, int]:
        """Totals over acknowledged requests: ``acked`` (requests), ``written``,
        ``stale``, ``rejected`` (rows), and ``outcome_unknown`` (stale rows of resent
        requests, also counted in ``stale``)."""
        with self._cond:
            return dict(self._counts)

    def __enter__(self) -> "StreamWriter":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- the writer's thread -------------------------------------------------------------

    def _requests(self, q: "queue.Queue[Optional[pb.StreamWriteFeaturesRequest]]") -> Iterator[pb.StreamWriteFeaturesRequest]:
        while True:
            req = q.get()
            if req is None:
                return
            with self._cond:
                p = self._unacked.get(req.sequence)
                if p is None:  # acknowledged meanwhile (possible only for a resent copy)
                    continue
                p.sends += 1
            yield req

    def _run(self) -> None:
        failures = 0
        first = True
        while True:
            with self._cond:
                if self._stop.is_set() or (self._closing and not self._unacked and not first):
                    self._cond.notify_all()
                    return
                if not first:
                    q: "queue.Queue[Optional[pb.StreamWriteFeaturesRequest]]" = queue.Queue()
                    for p in self._unacked.values():
                        q.put(p.request)
                    if self._closing:
                        q.put(None)
                    self._queue = q
                q = self._queue
                first = False
                call = self._client._stub.StreamWriteFeatures(self._requests(q), metadata=self._client._metadata)
                self._call = call
            failure: Optional[grpc.RpcError] = None
            try:
                for resp in call:
                    failures = 0
                    self._ack(resp)
            except grpc.RpcError as e:
                failure = e
            except BaseException as e:  # on_ack raised: stop
                with self._cond:
                    self._err = e
                    self._closing = True
                    self._cond.notify_all()
                call.cancel()
                q.put(None)
                return
            q.put(None)  # ends the request iterator of the finished call
            with self._cond:
                if self._stop.is_set():
                    self._cond.notify_all()
                    return
                if failure is None and not self._unacked and self._closing:
                    self._cond.notify_all()
                    return
                code = failure.code() if failure is not None else grpc.StatusCode.UNAVAILABLE
                if code != grpc.StatusCode.UNAVAILABLE:
                    self._err = from_rpc_error(failure) if failure is not None else FeatureStoreError("stream ended")
                    self._closing = True
                    self._cond.notify_all()
                    return
                failures += 1
                if failures > self._max_reconnects:
                    cause = from_rpc_error(failure) if failure is not None else None
                    self._err = UnavailableError(
                        f"stream writer gave up after {failures - 1} failed reconnects; "
                        f"{len(self._unacked)} requests unacknowledged (resending them is safe): {cause}",
                        code=grpc.StatusCode.UNAVAILABLE, reason=cause.reason if cause else "",
                        attempts=failures)
                    self._closing = True
                    self._cond.notify_all()
                    return
            if self._stop.wait(self._client._backoff.delay(failures)):
                with self._cond:
                    self._cond.notify_all()
                return
            with self._cond:
                self._reconnects += 1

    def _ack(self, resp: pb.StreamWriteFeaturesResponse) -> None:
        with self._cond:
            p = self._unacked.pop(resp.sequence, None)
            if p is None:
                return
            resent = p.sends > 1
            results = [RowResult._from_proto(r, resent) for r in resp.results]
            c = self._counts
            c["acked"] += 1
            for r in results:
                if r.status == WriteStatus.WRITTEN:
                    c["written"] += 1
                elif r.status == WriteStatus.STALE:
                    c["stale"] += 1
                    c["outcome_unknown"] += r.outcome_unknown
                elif r.status == WriteStatus.REJECTED:
                    c["rejected"] += 1
            self._cond.notify_all()
        if self._on_ack is not None:
            self._on_ack(Ack(resp.sequence, p.request.feature_set, results, resent))
