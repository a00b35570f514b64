"""The Client: one channel to a feature store, with retries, TLS and bearer tokens."""

from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, TypeVar, Union

import grpc

from featurestore._columns import FeatureColumns
from featurestore._errors import (
    DeletionFailedError,
    FeatureStoreError,
    NotFoundError,
    OutcomeUnknownError,
    from_rpc_error,
)
from featurestore._proto.featurestore.v1 import featurestore_pb2 as pb
from featurestore._proto.featurestore.v1 import featurestore_pb2_grpc as pb_grpc
from featurestore._retry import Backoff
from featurestore._rows import FeatureValues
from featurestore._target import resolve
from featurestore._types import (
    BatchSummary,
    Deletion,
    DeletionState,
    EntityDeletion,
    FeatureSet,
    FeatureSetPage,
    Row,
    RowResult,
    ValueType,
    _event_time_micros,
)
from featurestore._values import to_proto

if TYPE_CHECKING:
    import pandas

    from featurestore._stream import StreamWriter
    from featurestore._types import Ack

#: A row for the write lanes: a Row, a flat mapping (``entity_id``, optional
#: ``subject_id`` and ``event_time``, every other key a feature), or a FeatureRow message.
RowLike = Union[Row, Mapping[str, Any], pb.FeatureRow]

_T = TypeVar("_T")

_RESERVED = ("entity_id", "subject_id", "event_time")


class Client:
    """A client of one feature store address; safe to share between threads.

    Use it as a context manager, or call ``close()``.

    Args:
        address: "host:port", "[v6]:port", or a gRPC target ("dns:///host:port",
            "unix:/path"). DNS names are resolved with gRPC's DNS resolver and calls are
            spread over every address (round_robin).
        tls: None (default) uses plaintext for loopback addresses and TLS for any other;
            True forces TLS. Plaintext to a non-loopback address needs ``insecure=True``.
        insecure: explicitly allow plaintext to a non-loopback address.
        ca_file: PEM file of the CA(s) that sign the server's certificate (default: the
            system roots).
        cert_file, key_file: PEM client certificate and key, for mutual TLS (the
            certificate's common name is the caller's identity).
        server_name: override the name the server's certificate is checked against.
        token: bearer token, sent as ``authorization: Bearer <token>`` on every call.
        retries: how many times a call answered UNAVAILABLE is tried again (default 4: 5
            attempts in all), with jittered exponential backoff from ``backoff`` seconds,
            doubling up to ``max_backoff``.
        timeout: deadline in seconds of each method, across its retries (None: none);
            long calls (batch_write, delete_subject's wait) have their own.
        max_message_bytes: largest message sent or received (default 64 MiB; the server
            accepts 16 MiB unless configured otherwise).
        options: extra gRPC channel options; they win over the SDK's own.
        rng, sleep: randomness and sleeping for the backoff, injectable for tests.
    """

    def __init__(self, address: str, *, tls: Optional[bool] = None, insecure: bool = False,
                 ca_file: Optional[str] = None, cert_file: Optional[str] = None,
                 key_file: Optional[str] = None, server_name: Optional[str] = None,
                 token: Optional[str] = None, retries: int = 4, backoff: float = 0.05,
                 max_backoff: float = 5.0, timeout: Optional[float] = 30.0,
                 max_message_bytes: int = 64 << 20, options: Sequence[tuple[str, Any]] = (),
                 rng: Optional[random.Random] = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if retries < 0:
            raise ValueError("retries must not be negative")
        self._target = resolve(address, tls, insecure)
        if not self._target.tls and (ca_file or cert_file or key_file):
            raise ValueError("ca_file, cert_file and key_file need TLS")
        if bool(cert_file) != bool(key_file):
            raise ValueError("cert_file and key_file go together")
        # The caller's options first: for a key given twice, gRPC uses the first.
        opts: list[tuple[str, Any]] = [*options,
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # Reconnect soon after a broken connection (gRPC's default waits 1 s, then
            # up to 120 s), so the SDK's own retries, which start at 50 ms, find a fresh
            # connection rather than a channel in backoff. Not min_reconnect_backoff_ms:
            # in gRPC core that is the minimum *connect timeout* (20 s), and lowering it
            # fails slow handshakes.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 5000),
        ]
        if self._target.service_config:
            opts.append(("grpc.service_config", self._target.service_config))
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        if self._target.tls:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(ca_file), private_key=_read(key_file),
                certificate_chain=_read(cert_file))
            self._channel = grpc.secure_channel(self._target.target, creds, opts)
        else:
            self._channel = grpc.insecure_channel(self._target.target, opts)
        # A connectivity watcher keeps gRPC's reconnect timers running between calls. Without
        # one, grpcio (1.51) does not reconnect while no call is in flight: after a failed
        # connection every retry failed at once for ~7 s, whatever the reconnect backoff.
        self._channel.subscribe(_ignore_state, try_to_connect=False)
        self._stub = pb_grpc.FeatureStoreServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._gdpr = pb_grpc.GdprServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self._backoff = Backoff(retries=retries, base=backoff, maximum=max_backoff,
                                rng=rng or random.Random(), sleep=sleep)
        self._schemas: dict[str, dict[str, ValueType]] = {}
        self._schema_lock = threading.Lock()

    @property
    def target(self) -> str:
        """The gRPC target the channel dials."""
        return self._target.target

    @property
    def uses_tls(self) -> bool:
        """Whether the channel uses TLS."""
        return self._target.tls

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled. Takes up to 0.2 s: the
        channel's connectivity watcher is stopped first."""
        self._channel.unsubscribe(_ignore_state)
        # grpcio's watcher thread wakes every 0.2 s; closing the channel under it makes it
        # die with "Cannot monitor channel state: Channel closed!" on stderr (grpcio 1.51).
        # Its `polling` flag is private, hence getattr: other versions just do not wait.
        state = getattr(self._channel, "_connectivity_state", None)
        deadline = time.monotonic() + 0.5
        while getattr(state, "polling", False) and time.monotonic() < deadline:
            time.sleep(0.005)
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -------------------------------------------------------------------------

    def _call(self, method: Callable[..., _T], request: Any, *, retry: bool = True,
              timeout: Optional[float] = None) -> tuple[_T, int]:
        """Runs a unary call, retrying UNAVAILABLE; returns the response and the number of
        attempts. Raises the FeatureStoreError for the final status."""
        budget = self._timeout if timeout is None else timeout
        deadline = None if budget is None else time.monotonic() + budget
        attempt = 0
        while True:
            attempt += 1
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                return method(request, timeout=remaining, metadata=self._metadata), attempt
            except grpc.RpcError as e:
                err = from_rpc_error(e, attempt)
                if not retry or err.code != grpc.StatusCode.UNAVAILABLE or attempt > self._backoff.retries:
                    raise err from e
                d = self._backoff.delay(attempt, err.retry_delay)
                if deadline is not None and time.monotonic() + d >= deadline:
                    raise err from e
                self._backoff.sleep(d)

    # -- registry ----------------------------------------------------------------------

    def apply_feature_set(self, feature_set: FeatureSet) -> FeatureSet:
        """Creates a feature set or evolves it (adding features; changing ttl,
        description or owner) and returns it as stored, with its server-assigned version.
        Applying an identical set is a no-op, so retries are safe.

        Raises:
            InvalidArgumentError: the set is malformed (``field`` names the part).
            FailedPreconditionError: a feature's type, entity_type or personal_data
                changed, a feature was removed, or the name belongs to a retired set.
        """
        resp, _ = self._call(self._stub.ApplyFeatureSet, pb.ApplyFeatureSetRequest(feature_set=feature_set._to_proto()))
        fs = FeatureSet._from_proto(resp.feature_set)
        with self._schema_lock:
            self._schemas[fs.name] = fs.feature_types()
        return fs

    def get_feature_set(self, name: str) -> FeatureSet:
        """Returns the newest applied version of a feature set.

        Raises:
            NotFoundError: no such set.
        """
        resp, _ = self._call(self._stub.GetFeatureSet, pb.GetFeatureSetRequest(name=name))
        return FeatureSet._from_proto(resp.feature_set)

    def list_feature_sets(self, *, page_size: int = 0, page_token: str = "") -> FeatureSetPage:
        """Returns one page of the feature sets the caller may read, in a stable order that
        is not sorted (sort on the client).

        ``page_size`` 0 means the server's default (100; at most 1000); pass the page's
        ``next_page_token`` to get the next page (empty on the last one).
        ``iter_feature_sets`` walks every page.
        """
        resp, _ = self._call(self._stub.ListFeatureSets,
                             pb.ListFeatureSetsRequest(page_size=page_size, page_token=page_token))
        return FeatureSetPage([FeatureSet._from_proto(m) for m in resp.feature_sets], resp.next_page_token)

    def iter_feature_sets(self, *, page_size: int = 0) -> Iterator[FeatureSet]:
        """Yields every feature set, fetching pages of ``page_size`` as needed.

        Raises:
            FeatureStoreError: a page failed, or the server handed back a page token it
                had already given (it would loop forever).
        """
        token = ""
        seen: set[str] = set()
        while True:
            page = self.list_feature_sets(page_size=page_size, page_token=token)
            yield from page.feature_sets
            token = page.next_page_token
            if not token:
                return
            if token in seen:
                raise FeatureStoreError(f"ListFeatureSets returned page token {token!r} twice",
                                        code=grpc.StatusCode.INTERNAL, reason="PAGE_TOKEN_REPEATED")
            seen.add(token)

    def delete_feature_set(self, name: str) -> FeatureSet:
        """Retires a feature set and returns it as it was: its rows stop being served and
        cannot be written, and the name cannot be applied again.

        Raises:
            NotFoundError: no such set, or it was already retired.
            OutcomeUnknownError: the call was retried after UNAVAILABLE and then answered
                NOT_FOUND: the first attempt may have retired it.
        """
        try:
            resp, _ = self._call(self._stub.DeleteFeatureSet, pb.DeleteFeatureSetRequest(name=name))
        except NotFoundError as e:
            if e.attempts > 1:
                raise OutcomeUnknownError(
                    f"feature set {name!r}: NOT_FOUND after a retry; an earlier attempt may have retired it",
                    results=(), rows=(), attempts=e.attempts) from e
            raise
        finally:
            with self._schema_lock:
                self._schemas.pop(name, None)
        return FeatureSet._from_proto(resp.feature_set)

    # -- reads ---------------------------------------------------------------------------

    def get_features(self, features: Sequence[str], entity_ids: Sequence[str]) -> FeatureValues:
        """Reads features ("set:feature"; every set of one entity type) for entities,
        row-wise: one EntityFeatures per entity in request order, values in
        ``features`` order, each with its status (PRESENT, NOT_FOUND, EXPIRED) and event
        time. Reads are linearizable per key: never older than an acknowledged write.

        Raises:
            InvalidArgumentError: a malformed reference, mixed entity types, or over the
                limits (1000 entities, 1000 features, 100,000 cells).
            NotFoundError: an unknown feature set or feature.
        """
        req = pb.GetFeaturesRequest(features=_strings("features", features), entity_ids=_strings("entity_ids", entity_ids))
        resp, _ = self._call(self._stub.GetFeatures, req)
        return FeatureValues(resp)

    def get_feature_columns(self, features: Sequence[str], entity_ids: Sequence[str]) -> FeatureColumns:
        """``get_features`` with a columnar response (GetFeatureColumns): one typed column
        per feature over the entities, cheap to turn into numpy arrays
        (``result[ref].to_numpy()``) or a DataFrame (``result.to_pandas()``). Same
        semantics, limits and errors as ``get_features``."""
        ids = _strings("entity_ids", entity_ids)
        req = pb.GetFeatureColumnsRequest(features=_strings("features", features), entity_ids=ids)
        resp, _ = self._call(self._stub.GetFeatureColumns, req)
        return FeatureColumns(resp, ids)

    # -- writes --------------------------------------------------------------------------

    def _feature_types(self, feature_set: str, names: Iterable[str]) -> dict[str, ValueType]:
        """The declared types of a set's features, cached; refreshed when a name is not
        in the cache (the set may have gained features). An unknown set gives {} (the
        server then judges the rows)."""
        wanted = set(names)
        with self._schema_lock:
            cached = self._schemas.get(feature_set)
        if cached is not None and wanted <= cached.keys():
            return cached
        try:
            types = self.get_feature_set(feature_set).feature_types()
        except NotFoundError:
            return {}
        with self._schema_lock:
            self._schemas[feature_set] = types
        return types

    def _rows_to_proto(self, feature_set: str, rows: Sequence[RowLike], offset: int = 0) -> list[pb.FeatureRow]:
        names: set[str] = set()
        for r in rows:
            if isinstance(r, Row):
                names.update(r.values.keys())
            elif isinstance(r, Mapping):
                names.update(k for k in r.keys() if k not in _RESERVED)
        types = self._feature_types(feature_set, names) if names else {}
        return [row_to_proto(r, types, offset + i) for i, r in enumerate(rows)]

    def write(self, feature_set: str, rows: Iterable[RowLike]) -> list[RowResult]:
        """Writes rows on the on-demand lane (at most 1000) and returns one RowResult per
        row: WRITTEN (applied, or already applied) or STALE (every value older than the
        stored one). Values are converted to the set's declared types (fetched once and
        cached). A call answered UNAVAILABLE is retried: a repeated row merges as a no-op.

        Raises:
            InvalidArgumentError: a row is invalid (``field`` names it, e.g.
                ``rows[3].values["rating"]``); nothing was written.
            NotFoundError: unknown feature set.
            FailedPreconditionError: e.g. a row's subject differs from the entity's.
            OutcomeUnknownError: the call was retried and some rows came back STALE; see
                its ``results``.
            UnavailableError: still unavailable after the retries; the outcome is
                unknown and resending the same rows is safe.
            TypeError: a value does not fit its feature's declared type.
        """
        rows = list(rows)
        req = pb.WriteFeaturesRequest(feature_set=feature_set, rows=self._rows_to_proto(feature_set, rows))
        resp, attempts = self._call(self._stub.WriteFeatures, req)
        results = [RowResult._from_proto(r, attempts > 1) for r in resp.results]
        unknown = [i for i, r in enumerate(results) if r.outcome_unknown]
        if unknown:
            raise OutcomeUnknownError(
                f"{len(unknown)} of {len(results)} rows came back STALE after {attempts} attempts: "
                "an earlier attempt may have applied them before newer writes", results=results,
                rows=unknown, attempts=attempts)
        return results

    def stream_writer(self, *, max_unacked: int = 64, reconnects: int = 10,
                      on_ack: Optional[Callable[["Ack"], None]] = None) -> "StreamWriter":
        """Opens a streaming-lane writer (StreamWriteFeatures); see StreamWriter. Use it
        as a context manager: leaving the block waits for every acknowledgement."""
        from featurestore._stream import StreamWriter

        return StreamWriter(self, max_unacked=max_unacked, reconnects=reconnects, on_ack=on_ack)

    def batch_write(self, feature_set: str, rows: Union[Iterable[RowLike], "pandas.DataFrame"], *,
                    chunk_size: int = 500, progress: bool = True, total: Optional[int] = None,
                    timeout: Optional[float] = None) -> BatchSummary:
        """Writes rows on the batch lane (BatchWriteFeatures) in chunks of ``chunk_size``
        and returns the server's summary (rows written, stale, rejected, retried, and the
        first errors with their positions). Rows are read lazily from an iterable, or
        from a DataFrame whose columns are ``entity_id``, optional ``subject_id`` and
        ``event_time`` (datetime64 or seconds), and one column per feature; a missing
        cell (NaN, None, NA) writes nothing for that feature.

        Every row is judged on its own: a bad row is REJECTED in the summary and never
        fails the rows around it. With ``progress`` a progress line goes to stderr
        (a bar on a terminal; otherwise a line every 5 s). The batch is not retried: if
        it fails, rows sent so far may have been written, and resending the whole batch
        is safe. ``timeout`` (default none) bounds the whole batch.

        Raises:
            UnavailableError: the server or its stores failed mid-batch.
            TypeError / ValueError: a row could not be converted; the batch is cancelled.
        """
        from featurestore._batch import run_batch

        return run_batch(self, feature_set, rows, chunk_size=chunk_size, progress=progress,
                         total=total, timeout=timeout)

    def delete_entities(self, feature_set: str, entity_ids: Sequence[str]) -> list[EntityDeletion]:
        """Deletes entities' rows from a feature set through the write-through protocol
        (a read that starts afterwards never sees the old values) and returns one
        EntityDeletion per entity, in request order. A later write recreates the row.
        Retried after UNAVAILABLE: ``existed`` is then None where the server said False.
        """
        req = pb.DeleteEntitiesRequest(feature_set=feature_set, entity_ids=_strings("entity_ids", entity_ids))
        resp, attempts = self._call(self._stub.DeleteEntities, req)
        return [EntityDeletion(r.entity_id, None if attempts > 1 and not r.existed else r.existed, r.version)
                for r in resp.results]

    # -- GDPR ----------------------------------------------------------------------------

    def delete_subject(self, subject_id: str, *, reason: str = "", wait: bool = True,
                       poll_interval: float = 0.5, wait_timeout: Optional[float] = 600.0) -> Deletion:
        """Files a durable GDPR deletion of every value written under a data subject and
        returns the job. Filing again while a job is pending or running returns that job.

        With ``wait`` it polls GetDeletion every ``poll_interval`` seconds until the job
        is DONE (returned) or FAILED (raised). A job takes at least a few seconds by
        design (write timeout + 1 s + the index settle time).

        Raises:
            DeletionFailedError: the job ended FAILED (``deletion.failure_reason``).
            TimeoutError: still not finished after ``wait_timeout`` seconds (the job goes
                on; poll it with ``get_deletion``).
            UnimplementedError: the server has GDPR deletion disabled.
        """
        resp, _ = self._call(self._gdpr.DeleteSubject, pb.DeleteSubjectRequest(subject_id=subject_id, reason=reason))
        d = Deletion._from_proto(resp.deletion)
        if not wait:
            return d
        deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
        while True:
            if d.state == DeletionState.DONE:
                return d
            if d.state == DeletionState.FAILED:
                raise DeletionFailedError(d)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"deletion {d.id} is still {d.state.name} after {wait_timeout} s")
            self._backoff.sleep(poll_interval)
            d = self.get_deletion(d.id)

    def get_deletion(self, deletion_id: str) -> Deletion:
        """Returns a GDPR deletion job's progress.

        Raises:
            NotFoundError: no such job.
        """
        resp, _ = self._call(self._gdpr.GetDeletion, pb.GetDeletionRequest(id=deletion_id))
        return Deletion._from_proto(resp.deletion)


def row_to_proto(row: RowLike, types: Mapping[str, ValueType], index: int) -> pb.FeatureRow:
    """Converts one row; ``index`` names it in errors (``rows[index]``)."""
    if isinstance(row, pb.FeatureRow):
        return row
    if isinstance(row, Row):
        entity_id, subject_id, event_time, values = row.entity_id, row.subject_id, row.event_time, row.values
    elif isinstance(row, Mapping):
        if "entity_id" not in row:
            raise ValueError(f"rows[{index}]: entity_id is required")
        entity_id = row["entity_id"]
        subject_id = row.get("subject_id") or ""
        event_time = row.get("event_time")
        values = {k: v for k, v in row.items() if k not in _RESERVED}
    else:
        raise TypeError(f"rows[{index}]: want a Row, a mapping or a FeatureRow, not {type(row).__name__}")
    msg = pb.FeatureRow(entity_id=str(entity_id), subject_id=str(subject_id))
    us = _event_time_micros(event_time)
    msg.event_time.seconds, msg.event_time.nanos = us // 1_000_000, (us % 1_000_000) * 1000
    for name, value in values.items():
        if value is None:
            continue
        msg.values[name].CopyFrom(to_proto(value, types.get(name), f"rows[{index}].values[{name!r}]"))
    return msg


def _ignore_state(state: Any) -> None:
    """A no-op connectivity callback (see Client.__init__)."""


def _strings(name: str, values: Sequence[str]) -> list[str]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of strings, not a single string")
    return list(values)


def _read(path: Optional[str]) -> Optional[bytes]:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()

