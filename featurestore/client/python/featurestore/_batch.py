"""The batch lane: rows (or a DataFrame) in chunks over BatchWriteFeatures, a progress
line on stderr, and the server's summary."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional, TextIO, Union

import grpc

from featurestore._errors import CancelledError, from_rpc_error
from featurestore._proto.featurestore.v1 import featurestore_pb2 as pb
from featurestore._types import BatchError, BatchSummary, Row, ValueType, _event_time_micros
from featurestore._values import to_proto

if TYPE_CHECKING:
    import pandas

    from featurestore._client import Client, RowLike

_RESERVED = ("entity_id", "subject_id", "event_time")


class Progress:
    """Progress of rows sent, on a text stream: a redrawn bar with rows/s when the stream
    is a terminal, otherwise one line every ``interval`` seconds; always a final line."""

    def __init__(self, total: Optional[int], stream: TextIO, *, label: str = "batch_write",
                 interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.done = 0
        self._stream = stream
        self._label = label
        self._clock = clock
        self._start = clock()
        self._last = self._start
        isatty = getattr(stream, "isatty", None)
        self._tty = bool(isatty and isatty())
        self._interval = 0.1 if self._tty else interval

    def _line(self) -> str:
        elapsed = max(self._clock() - self._start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            pct = min(self.done / self.total, 1.0)
            if self._tty:
                filled = int(pct * 30)
                return f" [{'=' * filled}{' ' * (30 - filled)}] {pct:4.0%} {self.done}/{self.total} rows, {rate:.0f} rows/s"
            return f"{self._label}: {self.done}/{self.total} rows ({pct:.0%}), {rate:.0f} rows/s"
        return f"{self._label}: {self.done} rows, {rate:.0f} rows/s"

    def update(self, n: int) -> None:
        """Counts n more rows sent and redraws when due."""
        self.done += n
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            self._emit(final=False)

    def finish(self) -> None:
        """Writes the final line."""
        self._emit(final=True)

    def _emit(self, final: bool) -> None:
        if self._tty:
            self._stream.write("\r" + self._line() + ("\n" if final else ""))
        else:
            self._stream.write(self._line() + "\n")
        self._stream.flush()


def _is_dataframe(obj: Any) -> bool:
    t = type(obj)
    return t.__name__ == "DataFrame" and t.__module__.startswith("pandas")


class _Converter:
    """Turns rows into FeatureRow messages with the set's declared types, refreshing the
    schema once per unknown feature name."""

    def __init__(self, client: "Client", feature_set: str) -> None:
        self._client = client
        self._set = feature_set
        self._types: dict[str, ValueType] = client._feature_types(feature_set, ())
        self._refreshed: set[str] = set()

    def type_of(self, name: str) -> Optional[ValueType]:
        t = self._types.get(name)
        if t is None and name not in self._refreshed:
            self._refreshed.add(name)
            self._types = self._client._feature_types(self._set, (name,))
            t = self._types.get(name)
        return t

    def row(self, row: "RowLike", index: int) -> pb.FeatureRow:
        from featurestore._client import row_to_proto

        if isinstance(row, Row):
            names: Iterable[str] = row.values.keys()
        elif isinstance(row, Mapping):
            names = (k for k in row.keys() if k not in _RESERVED)
        else:
            names = ()
        types = {n: t for n in names if (t := self.type_of(n)) is not None}
        return row_to_proto(row, types, index)

    def dataframe(self, df: "pandas.DataFrame") -> Iterator[pb.FeatureRow]:
        import numpy as np
        import pandas as pd

        if "entity_id" not in df.columns:
            raise ValueError("the DataFrame needs an entity_id column")
        n = len(df)
        entity_ids = df["entity_id"].tolist()
        subjects = df["subject_id"].tolist() if "subject_id" in df.columns else None
        micros: Optional[list[Optional[int]]] = None
        if "event_time" in df.columns:
            col = df["event_time"]
            if pd.api.types.is_datetime64_any_dtype(col.dtype):
                if getattr(col.dt, "tz", None) is not None:
                    col = col.dt.tz_convert("UTC").dt.tz_localize(None)
                us = col.to_numpy().astype("datetime64[us]").astype(np.int64)
                nat = col.isna().to_numpy()
                micros = [None if m else int(u) for u, m in zip(us.tolist(), nat.tolist())]
            elif pd.api.types.is_numeric_dtype(col.dtype):
                secs = col.to_numpy(dtype=np.float64)
                micros = [None if np.isnan(s) else round(s * 1_000_000) for s in secs.tolist()]
            else:
                micros = [None if v is None or v is pd.NaT else _event_time_micros(v) for v in col.tolist()]
        features = [c for c in df.columns if c not in _RESERVED]
        for c in features:
            if not isinstance(c, str):
                raise ValueError(f"column {c!r}: feature columns must be named by strings")
        cols = [(c, self.type_of(c), df[c].tolist(), df[c].isna().tolist()) for c in features]
        now = _event_time_micros(None)
        for i in range(n):
            msg = pb.FeatureRow(entity_id=str(entity_ids[i]))
            if subjects is not None and isinstance(subjects[i], str):
                msg.subject_id = subjects[i]
            us = micros[i] if micros is not None and micros[i] is not None else now
            msg.event_time.seconds, msg.event_time.nanos = us // 1_000_000, (us % 1_000_000) * 1000
            for name, vtype, values, missing in cols:
                if missing[i]:
                    continue
                msg.values[name].CopyFrom(to_proto(values[i], vtype, f"rows[{i}].values[{name!r}]"))
            yield msg


def run_batch(client: "Client", feature_set: str, rows: Union[Iterable["RowLike"], "pandas.DataFrame"], *,
              chunk_size: int, progress: bool, total: Optional[int], timeout: Optional[float],
              stream: Optional[TextIO] = None) -> BatchSummary:
    """Client.batch_write; see there."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    conv = _Converter(client, feature_set)
    source: Iterator[pb.FeatureRow]
    if _is_dataframe(rows):
        total = len(rows)  # type: ignore[arg-type]
        source = conv.dataframe(rows)
    else:
        if total is None and hasattr(rows, "__len__"):
            total = len(rows)  # type: ignore[arg-type]
        source = (conv.row(r, i) for i, r in enumerate(rows))
    bar = Progress(total, stream or sys.stderr) if progress else None
    failure: list[BaseException] = []
    started = threading.Event()
    holder: list[grpc.Future] = []

    def requests() -> Iterator[pb.BatchWriteFeaturesRequest]:
        chunk: list[pb.FeatureRow] = []
        try:
            for msg in source:
                chunk.append(msg)
                if len(chunk) == chunk_size:
                    yield pb.BatchWriteFeaturesRequest(feature_set=feature_set, rows=chunk)
                    if bar:
                        bar.update(len(chunk))
                    chunk = []
            if chunk:
                yield pb.BatchWriteFeaturesRequest(feature_set=feature_set, rows=chunk)
                if bar:
                    bar.update(len(chunk))
        except Exception as e:  # a row that cannot be converted cancels the batch
            failure.append(e)
            started.wait()
            holder[0].cancel()

    fut = client._stub.BatchWriteFeatures.future(requests(), timeout=timeout, metadata=client._metadata)
    holder.append(fut)
    started.set()
    try:
        resp = fut.result()
    except grpc.FutureCancelledError:
        if failure:
            raise failure[0] from None
        raise CancelledError("the batch was cancelled", code=grpc.StatusCode.CANCELLED) from None
    except grpc.RpcError as e:
        if failure:
            raise failure[0] from None
        raise from_rpc_error(e) from e
    except BaseException:
        fut.cancel()
        raise
    finally:
        if bar:
            bar.finish()
    return BatchSummary(rows_written=resp.rows_written, rows_stale=resp.rows_stale,
                        rows_rejected=resp.rows_rejected, rows_retried=resp.rows_retried,
                        errors=[BatchError(e.row, e.entity_id, e.error, e.reason) for e in resp.errors])
