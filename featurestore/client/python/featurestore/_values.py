"""Conversion between Python values and featurestore.v1.Value."""

from __future__ import annotations

import math
import numbers
from types import MappingProxyType
from typing import Any, Mapping, Optional

from featurestore._proto.featurestore.v1 import featurestore_pb2 as pb
from featurestore._types import ValueType


def to_python(v: pb.Value) -> Any:
    """The Python value of a Value: int, float, str, bytes, bool, or a list; None when no
    kind is set (cells that are not PRESENT)."""
    kind = v.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "float_list_value":
        return list(v.float_list_value.values)
    if kind == "int64_list_value":
        return list(v.int64_list_value.values)
    if kind == "string_list_value":
        return list(v.string_list_value.values)
    return getattr(v, kind)


def to_python_typed(v: pb.Value) -> tuple[Any, ValueType]:
    """``to_python`` and the ValueType of the kind set (UNSPECIFIED when none is)."""
    kind = v.WhichOneof("kind")
    if kind is None:
        return None, ValueType.UNSPECIFIED
    t = _KIND_TYPES[kind]
    if t.is_list:
        return list(getattr(v, kind).values), t
    return getattr(v, kind), t


def kind_type(v: pb.Value) -> ValueType:
    """The ValueType of a Value's kind (UNSPECIFIED when none is set)."""
    kind = v.WhichOneof("kind")
    return _KIND_TYPES.get(kind, ValueType.UNSPECIFIED) if kind else ValueType.UNSPECIFIED


_KIND_TYPES: Mapping[str, ValueType] = MappingProxyType({
    "int64_value": ValueType.INT64, "double_value": ValueType.DOUBLE,
    "string_value": ValueType.STRING, "bytes_value": ValueType.BYTES,
    "bool_value": ValueType.BOOL, "float_list_value": ValueType.FLOAT_LIST,
    "int64_list_value": ValueType.INT64_LIST, "string_list_value": ValueType.STRING_LIST,
})


def infer_type(value: Any) -> ValueType:
    """Guesses a ValueType from a Python value, for features the SDK has no schema for
    (the server then judges the row)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return ValueType.BOOL
    if isinstance(value, numbers.Integral):
        return ValueType.INT64
    if isinstance(value, numbers.Real):
        return ValueType.DOUBLE
    if isinstance(value, str):
        return ValueType.STRING
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ValueType.BYTES
    items = _as_list(value)
    if items is not None:
        if items and all(isinstance(x, str) for x in items):
            return ValueType.STRING_LIST
        if items and all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in items):
            return ValueType.INT64_LIST
        return ValueType.FLOAT_LIST
    raise TypeError(f"cannot write a value of type {type(value).__name__}")


def _as_list(value: Any) -> Optional[list[Any]]:
    tolist = getattr(value, "tolist", None)  # numpy arrays, pandas arrays
    if tolist is not None and getattr(value, "ndim", 1) == 1:
        out = tolist()
        return out if isinstance(out, list) else None
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


def to_proto(value: Any, vtype: Optional[ValueType], where: str) -> pb.Value:
    """Converts value to a Value of vtype (inferred when None). Raises TypeError naming
    ``where`` (e.g. ``rows[3].values["rating"]``) when the value does not fit."""
    if isinstance(value, pb.Value):
        return value
    if vtype is None or vtype == ValueType.UNSPECIFIED:
        vtype = infer_type(value)
    try:
        if vtype == ValueType.INT64:
            return pb.Value(int64_value=_to_int(value))
        if vtype == ValueType.DOUBLE:
            if isinstance(value, (str, bytes, bool)) or not isinstance(value, numbers.Real):
                raise TypeError
            return pb.Value(double_value=float(value))
        if vtype == ValueType.STRING:
            if not isinstance(value, str):
                raise TypeError
            return pb.Value(string_value=value)
        if vtype == ValueType.BYTES:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError
            return pb.Value(bytes_value=bytes(value))
        if vtype == ValueType.BOOL:
            if not (isinstance(value, bool) or type(value).__name__ == "bool_"):
                raise TypeError
            return pb.Value(bool_value=bool(value))
        items = _as_list(value)
        if items is None:
            raise TypeError
        if vtype == ValueType.FLOAT_LIST:
            return pb.Value(float_list_value=pb.FloatList(values=items))
        if vtype == ValueType.INT64_LIST:
            return pb.Value(int64_list_value=pb.Int64List(values=[_to_int(x) for x in items]))
        if vtype == ValueType.STRING_LIST:
            return pb.Value(string_list_value=pb.StringList(values=items))
    except (TypeError, ValueError):
        pass
    raise TypeError(f"{where}: a {type(value).__name__} value does not fit feature type {vtype.name.lower()}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise TypeError
    if isinstance(value, numbers.Integral):
        return int(value)
    # pandas turns int columns with gaps into floats: accept whole numbers.
    if isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value).is_integer():
        return int(value)
    raise TypeError
