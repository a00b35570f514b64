"""Columnar read results (GetFeatureColumns): one typed column per requested feature.

Conversions to numpy and pandas copy each repeated field into an array in one call
(``numpy.fromiter`` over the protobuf container, in C); no Python code runs per value.
List features are one flat array plus offsets: entity i's list is
``flat[offsets[i]:offsets[i + 1]]``.

Cells that are not PRESENT hold a filler in the raw column: 0, 0.0, False, "", b"", or an
empty list. ``statuses`` says which cells are real; ``to_numpy(masked=True)`` and
``to_pandas()`` (by default) turn the others into masked / NA cells.
"""

from __future__ import annotations

import importlib.util
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from featurestore._proto.featurestore.v1 import featurestore_pb2 as pb
from featurestore._types import FeatureStatus, ValueType

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas

    NDArray = npt.NDArray[Any]


def _need_numpy() -> None:
    """numpy is optional (the [numpy] extra): say so instead of a bare ImportError."""
    if importlib.util.find_spec("numpy") is None:  # pragma: no cover - only without numpy
        raise ImportError("this needs numpy: pip install 'featurestore[numpy]'")


_SCALAR_FIELDS: Mapping[ValueType, tuple[str, str]] = MappingProxyType({
    ValueType.INT64: ("int64_values", "int64"),
    ValueType.DOUBLE: ("double_values", "float64"),
    ValueType.BOOL: ("bool_values", "bool"),
    ValueType.STRING: ("string_values", "object"),
    ValueType.BYTES: ("bytes_values", "object"),
})
_LIST_FIELDS: Mapping[ValueType, tuple[str, str]] = MappingProxyType({
    ValueType.FLOAT_LIST: ("float_list_values", "float32"),
    ValueType.INT64_LIST: ("int64_list_values", "int64"),
    ValueType.STRING_LIST: ("string_list_values", "object"),
})


class Column:
    """One feature over every requested entity, in request order.

    ``feature`` is the reference as requested ("set:feature"), ``type`` its declared type.
    """

    __slots__ = ("feature", "type", "_pb", "_n")

    def __init__(self, msg: pb.FeatureColumn, n: int) -> None:
        self.feature: str = msg.feature
        self.type: ValueType = ValueType(msg.type)
        self._pb = msg
        self._n = n
        if len(msg.statuses) != n:
            raise ValueError(f"column {msg.feature}: {len(msg.statuses)} statuses for {n} entities")

    def __len__(self) -> int:
        """The number of entities."""
        return self._n

    @property
    def statuses(self) -> "NDArray":
        """Each cell's FeatureStatus as an int8 array (compare with FeatureStatus.PRESENT)."""
        _need_numpy()
        import numpy as np

        return np.fromiter(self._pb.statuses, dtype=np.int8, count=self._n)

    @property
    def present(self) -> "NDArray":
        """A bool array: True where the cell's status is PRESENT."""
        present: NDArray = self.statuses == int(FeatureStatus.PRESENT)
        return present

    @property
    def event_times(self) -> "NDArray":
        """Event times in microseconds since the Unix epoch (int64): the served value's,
        for EXPIRED the stored value's, 0 for NOT_FOUND."""
        _need_numpy()
        import numpy as np

        return np.fromiter(self._pb.event_times, dtype=np.int64, count=self._n)

    def event_times_datetime64(self) -> "NDArray":
        """Event times as datetime64[us] (UTC); NaT for NOT_FOUND."""
        _need_numpy()
        import numpy as np

        et = self.event_times
        out = et.astype("datetime64[us]")
        out[et == 0] = np.datetime64("NaT")
        return out

    def status_list(self) -> list[FeatureStatus]:
        """Each cell's status as a list, without numpy."""
        return [FeatureStatus(s) for s in self._pb.statuses]

    def offsets(self) -> "NDArray":
        """For list features: n + 1 offsets (int64) into ``flat_values()``."""
        _need_numpy()
        import numpy as np

        if not self.type.is_list:
            raise TypeError(f"{self.feature} is a {self.type.name.lower()} feature, not a list")
        offs = self._pb.list_offsets
        if len(offs) != self._n + 1:
            raise ValueError(f"column {self.feature}: {len(offs)} list offsets for {self._n} entities")
        return np.fromiter(offs, dtype=np.int64, count=self._n + 1)

    def flat_values(self) -> "NDArray":
        """For list features: every entity's list concatenated (float32, int64 or object)."""
        _need_numpy()
        import numpy as np

        if not self.type.is_list:
            raise TypeError(f"{self.feature} is a {self.type.name.lower()} feature, not a list")
        name, dtype = _LIST_FIELDS[self.type]
        values = getattr(self._pb, name)
        return np.fromiter(values, dtype=np.dtype(dtype), count=len(values))

    def to_numpy(self, *, masked: bool = False) -> "NDArray":
        """The column as a numpy array, one entry per entity.

        int64 -> int64, double -> float64, bool -> bool, string and bytes -> object; list
        features -> an object array holding one array per entity (views into
        ``flat_values()``). Cells that are not PRESENT hold the filler (0, 0.0, False, "",
        b"", an empty array); with ``masked=True`` the result is a numpy masked array with
        those cells masked.
        """
        _need_numpy()
        import numpy as np

        n = self._n
        if self.type in _SCALAR_FIELDS:
            name, dtype = _SCALAR_FIELDS[self.type]
            values = getattr(self._pb, name)
            if len(values) != n:
                raise ValueError(f"column {self.feature}: {len(values)} values for {n} entities")
            out = np.fromiter(values, dtype=np.dtype(dtype), count=n)
        elif self.type in _LIST_FIELDS:
            flat, offs = self.flat_values(), self.offsets()
            # One view per entity: a loop over entities, none over the values.
            out = np.fromiter(np.split(flat, offs[1:-1]), dtype=object, count=n) if n else np.empty(0, dtype=object)
        else:
            raise TypeError(f"column {self.feature}: unsupported type {self.type!r}")
        if masked:
            return np.ma.MaskedArray(out, mask=~self.present)  # type: ignore[no-untyped-call]
        return out

    def to_list(self) -> list[Any]:
        """The column as Python values, None where the cell is not PRESENT (no numpy
        needed; a Python loop, for small reads)."""
        statuses = self._pb.statuses
        present = int(FeatureStatus.PRESENT)
        if self.type in _SCALAR_FIELDS:
            values = getattr(self._pb, _SCALAR_FIELDS[self.type][0])
            return [v if s == present else None for v, s in zip(values, statuses)]
        if self.type not in _LIST_FIELDS:
            raise TypeError(f"column {self.feature}: unsupported type {self.type!r}")
        flat = getattr(self._pb, _LIST_FIELDS[self.type][0])
        offs = self._pb.list_offsets
        return [list(flat[offs[i]:offs[i + 1]]) if statuses[i] == present else None for i in range(self._n)]

    def to_pandas_array(self, *, missing: str = "na") -> Any:
        """The column as the array ``FeatureColumns.to_pandas`` puts in a DataFrame:
        with ``missing="na"``, int64 -> pandas ``Int64`` and bool -> ``boolean`` (masked
        where not PRESENT), double -> float64 with NaN, string, bytes and lists -> object
        with None; with ``missing="filler"`` the fillers stay and dtypes are plain."""
        if missing not in ("na", "filler"):
            raise ValueError('missing must be "na" or "filler"')
        values = self.to_numpy()
        if missing == "filler":
            return values
        _need_numpy()
        import numpy as np

        absent = ~self.present
        if self.type == ValueType.INT64:
            import pandas as pd
            return pd.arrays.IntegerArray(values, absent)
        if self.type == ValueType.BOOL:
            import pandas as pd
            return pd.arrays.BooleanArray(values, absent)
        if self.type == ValueType.DOUBLE:
            values[absent] = np.nan
            return values
        values[absent] = None
        return values

    def __repr__(self) -> str:
        return f"Column({self.feature!r}, {self.type.name.lower()}, {self._n} entities)"


class FeatureColumns(Mapping[str, Column]):
    """The result of ``Client.get_feature_columns``: a mapping from feature reference to
    Column, in request order, over ``entity_ids`` (request order)."""

    def __init__(self, resp: pb.GetFeatureColumnsResponse, entity_ids: Sequence[str]) -> None:
        self.entity_ids: list[str] = list(entity_ids)
        n = len(self.entity_ids)
        self._columns: dict[str, Column] = {}
        for c in resp.columns:
            self._columns[c.feature] = Column(c, n)
        self.features: list[str] = [c.feature for c in resp.columns]

    def __getitem__(self, feature: str) -> Column:
        """The column of a feature reference ("set:feature")."""
        return self._columns[feature]

    def __iter__(self) -> Iterator[str]:
        """Feature references in request order."""
        return iter(self.features)

    def __len__(self) -> int:
        """The number of features."""
        return len(self.features)

    def to_numpy(self, *, masked: bool = False) -> dict[str, "NDArray"]:
        """Every column as a numpy array (see ``Column.to_numpy``), by feature reference."""
        return {f: self._columns[f].to_numpy(masked=masked) for f in self.features}

    def to_pandas(self, *, missing: str = "na") -> "pandas.DataFrame":
        """A DataFrame indexed by entity_id (request order), one column per feature
        reference. With ``missing="na"`` (the default) cells that are not PRESENT are NA:
        int64 columns are pandas ``Int64``, bool ``boolean``, double ``float64`` with NaN,
        others ``object`` with None. With ``missing="filler"`` they keep the filler and
        plain numpy dtypes. ``status_frame()`` says why a cell is missing."""
        import pandas as pd

        data = {f: self._columns[f].to_pandas_array(missing=missing) for f in self.features}
        return pd.DataFrame(data, index=pd.Index(self.entity_ids, name="entity_id"), columns=self.features, copy=False)

    def status_frame(self) -> "pandas.DataFrame":
        """A DataFrame like ``to_pandas()`` holding each cell's FeatureStatus (int8)."""
        import pandas as pd

        data = {f: self._columns[f].statuses for f in self.features}
        return pd.DataFrame(data, index=pd.Index(self.entity_ids, name="entity_id"), columns=self.features, copy=False)
