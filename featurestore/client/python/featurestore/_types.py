"""The SDK's vocabulary: enums and plain data classes mirroring the API's messages."""

from __future__ import annotations

import datetime as _dt
import enum
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Union

from google.protobuf import duration_pb2, timestamp_pb2

from featurestore._proto.featurestore.v1 import featurestore_pb2 as pb

#: What an event time may be given as: an aware or naive (taken as UTC) datetime, or
#: seconds since the Unix epoch.
EventTime = Union[_dt.datetime, int, float]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


class ValueType(enum.IntEnum):
    """The declared type of a feature (featurestore.v1.ValueType)."""

    UNSPECIFIED = 0
    INT64 = 1
    DOUBLE = 2
    STRING = 3
    BYTES = 4
    BOOL = 5
    FLOAT_LIST = 6
    INT64_LIST = 7
    STRING_LIST = 8

    @classmethod
    def _missing_(cls, value: object) -> "ValueType":
        # proto3 enums are open: a newer server may send a type this SDK does not know.
        return cls.UNSPECIFIED

    @classmethod
    def parse(cls, value: Union["ValueType", int, str]) -> "ValueType":
        """Returns the type for a ValueType, its number, or a name such as ``"double"``,
        ``"FLOAT_LIST"`` or ``"VALUE_TYPE_INT64"``; raises ValueError for anything else."""
        if isinstance(value, cls):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value in cls._value2member_map_ and value:
            return cls(value)
        if isinstance(value, str):
            name = value.strip().upper()
            if name.startswith("VALUE_TYPE_"):
                name = name[len("VALUE_TYPE_"):]
            if name in cls.__members__ and name != "UNSPECIFIED":
                return cls[name]
        raise ValueError(f"unknown value type {value!r}: want one of "
                         + ", ".join(m.name.lower() for m in cls if m is not cls.UNSPECIFIED))

    @property
    def is_list(self) -> bool:
        """Whether values of this type are lists."""
        return self in (ValueType.FLOAT_LIST, ValueType.INT64_LIST, ValueType.STRING_LIST)


class FeatureStatus(enum.IntEnum):
    """Whether a value was served (featurestore.v1.FeatureStatus)."""

    UNSPECIFIED = 0
    #: The value is present and younger than the feature set's ttl.
    PRESENT = 1
    #: No value was ever written for this entity and feature (or it was erased).
    NOT_FOUND = 2
    #: A value exists but is older than the feature set's ttl; it is not served.
    EXPIRED = 3

    @classmethod
    def _missing_(cls, value: object) -> "FeatureStatus":
        # proto3 enums are open: a newer server may send a value this SDK does not know.
        return cls.UNSPECIFIED


class WriteStatus(enum.IntEnum):
    """The outcome of one written row (featurestore.v1.WriteStatus)."""

    UNSPECIFIED = 0
    #: At least one value was applied, or the row had already been applied (a retry).
    WRITTEN = 1
    #: Every value was older than the stored one (by event time) and was not applied.
    STALE = 2
    #: The row was refused; ``reason`` says why. Nothing of it was applied.
    REJECTED = 3

    @classmethod
    def _missing_(cls, value: object) -> "WriteStatus":
        # proto3 enums are open: a newer server may send a value this SDK does not know.
        return cls.UNSPECIFIED


class DeletionState(enum.IntEnum):
    """The lifecycle of a GDPR deletion job (featurestore.v1.DeletionState)."""

    UNSPECIFIED = 0
    PENDING = 1
    RUNNING = 2
    DONE = 3
    FAILED = 4

    @classmethod
    def _missing_(cls, value: object) -> "DeletionState":
        # proto3 enums are open: a newer server may send a value this SDK does not know.
        return cls.UNSPECIFIED


#: A feature's type as accepted on input: a ValueType, its number, or a name ("double").
TypeLike = Union[ValueType, int, str]


@dataclass(frozen=True, init=False)
class FeatureSpec:
    """One feature of a feature set: its name and declared type (given as a ValueType, its
    number, or a name such as ``"float_list"``)."""

    name: str
    type: ValueType

    def __init__(self, name: str, type: TypeLike) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "type", ValueType.parse(type))


@dataclass(frozen=True, init=False)
class FeatureSet:
    """A group of features of one entity type that are written together.

    ``features`` are FeatureSpecs, or (name, type) pairs for brevity. ``ttl`` is the max
    age of a value at serving time (by event time); None means values never expire.
    ``version`` is assigned by the server and ignored when applying.
    """

    name: str
    entity_type: str
    features: tuple[FeatureSpec, ...]
    ttl: Optional[_dt.timedelta]
    description: str
    owner: str
    personal_data: bool
    version: int

    def __init__(self, name: str, entity_type: str,
                 features: Iterable[Union[FeatureSpec, tuple[str, TypeLike]]] = (),
                 ttl: Optional[_dt.timedelta] = None, description: str = "", owner: str = "",
                 personal_data: bool = False, version: int = 0) -> None:
        specs = tuple(f if isinstance(f, FeatureSpec) else FeatureSpec(*f) for f in features)
        for k, v in (("name", name), ("entity_type", entity_type), ("features", specs), ("ttl", ttl),
                     ("description", description), ("owner", owner), ("personal_data", personal_data),
                     ("version", version)):
            object.__setattr__(self, k, v)

    def feature_types(self) -> dict[str, ValueType]:
        """Returns the declared type of every feature by name."""
        return {f.name: f.type for f in self.features}

    def _to_proto(self) -> pb.FeatureSet:
        msg = pb.FeatureSet(
            name=self.name, entity_type=self.entity_type, description=self.description,
            owner=self.owner, personal_data=self.personal_data, version=self.version,
            features=[pb.FeatureSpec(name=f.name, type=pb.ValueType.Value("VALUE_TYPE_" + f.type.name))
                      for f in self.features])
        if self.ttl is not None:
            msg.ttl.CopyFrom(_duration_to_proto(self.ttl))
        return msg

    @classmethod
    def _from_proto(cls, msg: pb.FeatureSet) -> "FeatureSet":
        ttl = None
        if msg.HasField("ttl") and (msg.ttl.seconds or msg.ttl.nanos):
            ttl = _dt.timedelta(seconds=msg.ttl.seconds, microseconds=msg.ttl.nanos // 1000)
        return cls(name=msg.name, entity_type=msg.entity_type,
                   features=tuple(FeatureSpec(f.name, ValueType(f.type)) for f in msg.features),
                   ttl=ttl, description=msg.description, owner=msg.owner,
                   personal_data=msg.personal_data, version=msg.version)


@dataclass(frozen=True)
class FeatureSetPage:
    """One page of ListFeatureSets; pass ``next_page_token`` for the next (empty: last)."""

    feature_sets: list[FeatureSet]
    next_page_token: str


@dataclass(frozen=True)
class Row:
    """One entity's values at one event time, for the write lanes.

    ``values`` maps feature names to Python values (int, float, str, bytes, bool, or a
    sequence / numpy array for list features); a value of None writes nothing for that
    feature. ``event_time`` defaults to the time the row is sent. ``subject_id`` is the
    data subject, required by personal-data feature sets.
    """

    entity_id: str
    values: Mapping[str, Any]
    event_time: Optional[EventTime] = None
    subject_id: str = ""


@dataclass(frozen=True)
class RowResult:
    """The outcome of one written row.

    ``reason`` is stable and machine-readable for REJECTED and STALE rows (for example
    ``UNKNOWN_FEATURE``, ``SUBJECT_ERASED``, ``STALE``); ``error`` is for people.
    ``outcome_unknown`` is True for a STALE row of a request that was sent more than once
    (a retry after UNAVAILABLE or a resend after a reconnect): the earlier attempt may
    have applied the row and a newer write then overwritten it, so "not applied" is not
    known. Either way the stored values are at least as new as the row's.
    """

    status: WriteStatus
    version: int
    error: str = ""
    reason: str = ""
    outcome_unknown: bool = False

    @classmethod
    def _from_proto(cls, msg: pb.RowResult, resent: bool) -> "RowResult":
        status = WriteStatus(msg.status)
        return cls(status=status, version=msg.version, error=msg.error, reason=msg.reason,
                   outcome_unknown=resent and status == WriteStatus.STALE)


@dataclass(frozen=True)
class BatchError:
    """A rejected row of a batch: its zero-based position in the whole batch, its entity,
    the message and the stable reason."""

    row: int
    entity_id: str
    error: str
    reason: str


@dataclass(frozen=True)
class BatchSummary:
    """The server's summary of a batch write.

    ``rows_retried`` counts rows the server wrote again after a failure with an unknown
    outcome; such a row counted as stale may have applied on the earlier attempt.
    ``errors`` holds the first rejected rows (bounded by the server).
    """

    rows_written: int
    rows_stale: int
    rows_rejected: int
    rows_retried: int
    errors: list[BatchError] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """All rows the server accounted for."""
        return self.rows_written + self.rows_stale + self.rows_rejected


@dataclass(frozen=True)
class EntityDeletion:
    """The outcome of deleting one entity's row.

    ``existed`` says whether the entity held values before the delete; it is None when
    the call was retried and the server answered False, because the earlier attempt may
    have deleted them.
    """

    entity_id: str
    existed: Optional[bool]
    version: int


@dataclass(frozen=True)
class Deletion:
    """A GDPR deletion job. ``subject_id`` is empty once the job is DONE or FAILED."""

    id: str
    subject_id: str
    state: DeletionState
    requested_at: Optional[_dt.datetime]
    completed_at: Optional[_dt.datetime]
    items_deleted: int
    failure_reason: str = ""

    @classmethod
    def _from_proto(cls, msg: pb.Deletion) -> "Deletion":
        return cls(id=msg.id, subject_id=msg.subject_id, state=DeletionState(msg.state),
                   requested_at=_timestamp_to_datetime(msg.requested_at) if msg.HasField("requested_at") else None,
                   completed_at=_timestamp_to_datetime(msg.completed_at) if msg.HasField("completed_at") else None,
                   items_deleted=msg.items_deleted, failure_reason=msg.failure_reason)


@dataclass(frozen=True)
class Ack:
    """A streaming-lane acknowledgement: the request's sequence, its feature set, one
    result per row in request order, and whether the request had to be resent after a
    reconnect (then STALE rows have ``outcome_unknown`` set)."""

    sequence: int
    feature_set: str
    results: list[RowResult]
    resent: bool


def _duration_to_proto(d: _dt.timedelta) -> duration_pb2.Duration:
    msg = duration_pb2.Duration()
    msg.FromTimedelta(d)
    return msg


def _timestamp_to_datetime(ts: timestamp_pb2.Timestamp) -> Optional[_dt.datetime]:
    """An aware UTC datetime, or None for the zero timestamp (NOT_FOUND cells)."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return _EPOCH + _dt.timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def _event_time_micros(t: Optional[EventTime]) -> int:
    """Microseconds since the epoch; None is now. Naive datetimes are taken as UTC."""
    if t is None:
        return time.time_ns() // 1000
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        delta = t - _EPOCH
        return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(t, bool):
        raise TypeError("event_time must be a datetime or seconds since the epoch, not bool")
    if isinstance(t, int):
        return t * 1_000_000
    if isinstance(t, float):
        return round(t * 1_000_000)
    # numpy / pandas scalars
    to_dt = getattr(t, "to_pydatetime", None)
    if to_dt is not None:
        return _event_time_micros(to_dt())
    try:
        return round(float(t) * 1_000_000)
    except (TypeError, ValueError):
        raise TypeError(f"event_time must be a datetime or seconds since the epoch, not {type(t).__name__}") from None


def _micros_to_datetime(us: int) -> Optional[_dt.datetime]:
    if us == 0:
        return None
    return _EPOCH + _dt.timedelta(microseconds=us)
