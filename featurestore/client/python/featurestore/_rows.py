"""Row-wise read results (GetFeatures): one EntityFeatures per requested entity."""

from __future__ import annotations

import datetime as _dt
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterator, Mapping, NamedTuple, Optional, Sequence, overload

from featurestore._proto.featurestore.v1 import featurestore_pb2 as pb
from featurestore._types import FeatureStatus, ValueType, _timestamp_to_datetime
from featurestore._values import to_python_typed

if TYPE_CHECKING:
    import pandas


_STATUSES = tuple(FeatureStatus)


def _status(s: int) -> FeatureStatus:
    return _STATUSES[s] if 0 <= s < len(_STATUSES) else FeatureStatus(s)


class Cell(NamedTuple):
    """One feature of one entity: the value (None unless PRESENT), its status, and its
    event time (the served value's; for EXPIRED the stored value's; None for NOT_FOUND)."""

    value: Any
    status: FeatureStatus
    event_time: Optional[_dt.datetime]


class EntityFeatures:
    """One entity's features, in the order of the request's features.

    ``values[i]``, ``statuses[i]`` and ``event_times[i]`` belong to ``features[i]``.
    A value is None unless its status is PRESENT.
    """

    __slots__ = ("entity_id", "features", "values", "statuses", "event_times", "_types")

    def __init__(self, features: Sequence[str], msg: pb.EntityResult,
                 times: Optional[dict[tuple[int, int], Optional[_dt.datetime]]] = None) -> None:
        self.entity_id: str = msg.entity_id
        self.features: Sequence[str] = features
        decoded = [to_python_typed(v) for v in msg.values]
        self.values: list[Any] = [v for v, _ in decoded]
        self._types: list[ValueType] = [t for _, t in decoded]
        self.statuses: list[FeatureStatus] = [_status(s) for s in msg.statuses]
        # Cells written together share an event time: one datetime per distinct time.
        cache = times if times is not None else {}
        event_times: list[Optional[_dt.datetime]] = []
        for ts in msg.event_times:
            key = (ts.seconds, ts.nanos)
            if key not in cache:
                cache[key] = _timestamp_to_datetime(ts)
            event_times.append(cache[key])
        self.event_times: list[Optional[_dt.datetime]] = event_times

    def __getitem__(self, feature: str) -> Cell:
        """The cell of a feature reference ("set:feature")."""
        i = list(self.features).index(feature)
        return Cell(self.values[i], self.statuses[i], self.event_times[i])

    def cells(self) -> Iterator[tuple[str, Cell]]:
        """Yields (feature reference, cell) in request order."""
        for i, f in enumerate(self.features):
            yield f, Cell(self.values[i], self.statuses[i], self.event_times[i])

    def __repr__(self) -> str:
        return f"EntityFeatures({self.entity_id!r}, {dict((f, c.value) for f, c in self.cells())!r})"


class FeatureValues(Sequence[EntityFeatures]):
    """The result of ``Client.get_features``: one EntityFeatures per requested entity, in
    request order. Index it by position, or use ``get(entity_id)``."""

    def __init__(self, resp: pb.GetFeaturesResponse) -> None:
        self.features: list[str] = list(resp.features)
        times: dict[tuple[int, int], Optional[_dt.datetime]] = {}
        self._rows: list[EntityFeatures] = [EntityFeatures(self.features, r, times) for r in resp.results]
        self.entity_ids: list[str] = [r.entity_id for r in self._rows]

    @overload
    def __getitem__(self, i: int) -> EntityFeatures: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[EntityFeatures]: ...

    def __getitem__(self, i: Any) -> Any:
        """The i-th entity's features."""
        return self._rows[i]

    def __len__(self) -> int:
        """The number of entities."""
        return len(self._rows)

    def get(self, entity_id: str) -> EntityFeatures:
        """The features of the first entity with this id; KeyError if it was not requested."""
        for r in self._rows:
            if r.entity_id == entity_id:
                return r
        raise KeyError(entity_id)

    def to_pandas(self, *, missing: str = "na") -> "pandas.DataFrame":
        """A DataFrame indexed by entity_id (request order) with one column per feature
        reference, built value by value from the row-wise response.

        The row-wise response carries no declared types, so column types follow the
        present values: int64 -> ``Int64``, double -> ``float64``, bool -> ``boolean``,
        everything else ``object``. With ``missing="na"`` cells that are not PRESENT are
        NA (NaN, pandas.NA or None); with ``missing="filler"`` they hold the columnar
        filler (0, False, "", b"", an empty list), like ``FeatureColumns.to_pandas``.
        ``get_feature_columns`` is the faster way to a DataFrame.
        """
        import numpy as np
        import pandas as pd

        if missing not in ("na", "filler"):
            raise ValueError('missing must be "na" or "filler"')
        data: dict[str, Any] = {}
        for f, ref in enumerate(self.features):
            vtype = next((r._types[f] for r in self._rows if r._types[f] != ValueType.UNSPECIFIED),
                         ValueType.UNSPECIFIED)
            vals = [r.values[f] for r in self._rows]
            present = [r.statuses[f] == FeatureStatus.PRESENT for r in self._rows]
            if missing == "filler":
                filler = _FILLERS.get(vtype)
                vals = [v if ok else (filler() if callable(filler) else filler) for v, ok in zip(vals, present)]
            if vtype == ValueType.INT64:
                data[ref] = pd.array(vals, dtype="Int64") if missing == "na" else np.array(vals, dtype=np.int64)
            elif vtype == ValueType.DOUBLE:
                data[ref] = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
            elif vtype == ValueType.BOOL:
                data[ref] = pd.array(vals, dtype="boolean") if missing == "na" else np.array(vals, dtype=np.bool_)
            elif vtype.is_list:
                dt = {ValueType.FLOAT_LIST: np.float32, ValueType.INT64_LIST: np.int64}.get(vtype, object)
                col = np.empty(len(vals), dtype=object)
                for i, v in enumerate(vals):
                    col[i] = None if v is None else np.array(v, dtype=dt)
                data[ref] = col
            else:
                col = np.empty(len(vals), dtype=object)
                col[:] = vals
                data[ref] = col
        return pd.DataFrame(data, index=pd.Index(self.entity_ids, name="entity_id"), columns=self.features)


_FILLERS: Mapping[ValueType, Any] = MappingProxyType({
    ValueType.INT64: 0, ValueType.DOUBLE: 0.0, ValueType.STRING: "", ValueType.BYTES: b"",
    ValueType.BOOL: False, ValueType.FLOAT_LIST: list, ValueType.INT64_LIST: list,
    ValueType.STRING_LIST: list,
})
