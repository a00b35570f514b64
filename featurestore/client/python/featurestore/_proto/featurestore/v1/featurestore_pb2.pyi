from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DELETION_STATE_DONE: DeletionState
DELETION_STATE_FAILED: DeletionState
DELETION_STATE_PENDING: DeletionState
DELETION_STATE_RUNNING: DeletionState
DELETION_STATE_UNSPECIFIED: DeletionState
DESCRIPTOR: _descriptor.FileDescriptor
FEATURE_STATUS_EXPIRED: FeatureStatus
FEATURE_STATUS_NOT_FOUND: FeatureStatus
FEATURE_STATUS_PRESENT: FeatureStatus
FEATURE_STATUS_UNSPECIFIED: FeatureStatus
VALUE_TYPE_BOOL: ValueType
VALUE_TYPE_BYTES: ValueType
VALUE_TYPE_DOUBLE: ValueType
VALUE_TYPE_FLOAT_LIST: ValueType
VALUE_TYPE_INT64: ValueType
VALUE_TYPE_INT64_LIST: ValueType
VALUE_TYPE_STRING: ValueType
VALUE_TYPE_STRING_LIST: ValueType
VALUE_TYPE_UNSPECIFIED: ValueType
WRITE_STATUS_REJECTED: WriteStatus
WRITE_STATUS_STALE: WriteStatus
WRITE_STATUS_UNSPECIFIED: WriteStatus
WRITE_STATUS_WRITTEN: WriteStatus

class ApplyFeatureSetRequest(_message.Message):
    __slots__ = ["feature_set"]
    FEATURE_SET_FIELD_NUMBER: _ClassVar[int]
    feature_set: FeatureSet
    def __init__(self, feature_set: _Optional[_Union[FeatureSet, _Mapping]] = ...) -> None: ...

class ApplyFeatureSetResponse(_message.Message):
    __slots__ = ["feature_set"]
    FEATURE_SET_FIELD_NUMBER: _ClassVar[int]
    feature_set: FeatureSet
    def __init__(self, feature_set: _Optional[_Union[FeatureSet, _Mapping]] = ...) -> None: ...

class BatchError(_message.Message):
    __slots__ = ["entity_id", "error", "reason", "row"]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    error: str
    reason: str
    row: int
    def __init__(self, row: _Optional[int] = ..., entity_id: _Optional[str] = ..., error: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class BatchWriteFeaturesRequest(_message.Message):
    __slots__ = ["feature_set", "rows"]
    FEATURE_SET_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    feature_set: str
    rows: _containers.RepeatedCompositeFieldContainer[FeatureRow]
    def __init__(self, feature_set: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[FeatureRow, _Mapping]]] = ...) -> None: ...

class BatchWriteFeaturesResponse(_message.Message):
    __slots__ = ["errors", "rows_rejected", "rows_retried", "rows_stale", "rows_written"]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ROWS_REJECTED_FIELD_NUMBER: _ClassVar[int]
    ROWS_RETRIED_FIELD_NUMBER: _ClassVar[int]
    ROWS_STALE_FIELD_NUMBER: _ClassVar[int]
    ROWS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    errors: _containers.RepeatedCompositeFieldContainer[BatchError]
    rows_rejected: int
    rows_retried: int
    rows_stale: int
    rows_written: int
    def __init__(self, rows_written: _Optional[int] = ..., rows_stale: _Optional[int] = ..., rows_rejected: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[BatchError, _Mapping]]] = ..., rows_retried: _Optional[int] = ...) -> None: ...

class DeleteEntitiesRequest(_message.Message):
    __slots__ = ["entity_ids", "feature_set"]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SET_FIELD_NUMBER: _ClassVar[int]
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    feature_set: str
    def __init__(self, feature_set: _Optional[str] = ..., entity_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteEntitiesResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[EntityDeletion]
    def __init__(self, results: _Optional[_Iterable[_Union[EntityDeletion, _Mapping]]] = ...) -> None: ...

class DeleteFeatureSetRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteFeatureSetResponse(_message.Message):
    __slots__ = ["feature_set"]
    FEATURE_SET_FIELD_NUMBER: _ClassVar[int]
    feature_set: FeatureSet
    def __init__(self, feature_set: _Optional[_Union[FeatureSet, _Mapping]] = ...) -> None: ...

class DeleteSubjectRequest(_message.Message):
    __slots__ = ["reason", "subject_id"]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    reason: str
    subject_id: str
    def __init__(self, subject_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeleteSubjectResponse(_message.Message):
    __slots__ = ["deletion"]
    DELETION_FIELD_NUMBER: _ClassVar[int]
    deletion: Deletion
    def __init__(self, deletion: _Optional[_Union[Deletion, _Mapping]] = ...) -> None: ...

class Deletion(_message.Message):
    __slots__ = ["completed_at", "failure_reason", "id", "items_deleted", "requested_at", "state", "subject_id"]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_DELETED_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    completed_at: _timestamp_pb2.Timestamp
    failure_reason: str
    id: str
    items_deleted: int
    requested_at: _timestamp_pb2.Timestamp
    state: DeletionState
    subject_id: str
    def __init__(self, id: _Optional[str] = ..., subject_id: _Optional[str] = ..., state: _Optional[_Union[DeletionState, str]] = ..., requested_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., items_deleted: _Optional[int] = ..., failure_reason: _Optional[str] = ...) -> None: ...

class EntityDeletion(_message.Message):
    __slots__ = ["entity_id", "existed", "version"]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    existed: bool
    version: int
    def __init__(self, entity_id: _Optional[str] = ..., existed: bool = ..., version: _Optional[int] = ...) -> None: ...

class EntityResult(_message.Message):
    __slots__ = ["entity_id", "event_times", "statuses", "values"]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIMES_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    event_times: _containers.RepeatedCompositeFieldContainer[_timestamp_pb2.Timestamp]
    statuses: _containers.RepeatedScalarFieldContainer[FeatureStatus]
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, entity_id: _Optional[str] = ..., values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., statuses: _Optional[_Iterable[_Union[FeatureStatus, str]]] = ..., event_times: _Optional[_Iterable[_Union[_timestamp_pb2.Timestamp, _Mapping]]] = ...) -> None: ...

class FeatureColumn(_message.Message):
    __slots__ = ["bool_values", "bytes_values", "double_values", "event_times", "feature", "float_list_values", "int64_list_values", "int64_values", "list_offsets", "statuses", "string_list_values", "string_values", "type"]
    BOOL_VALUES_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUES_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIMES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_LIST_VALUES_FIELD_NUMBER: _ClassVar[int]
    INT64_LIST_VALUES_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    LIST_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    STRING_LIST_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    bool_values: _containers.RepeatedScalarFieldContainer[bool]
    bytes_values: _containers.RepeatedScalarFieldContainer[bytes]
    double_values: _containers.RepeatedScalarFieldContainer[float]
    event_times: _containers.RepeatedScalarFieldContainer[int]
    feature: str
    float_list_values: _containers.RepeatedScalarFieldContainer[float]
    int64_list_values: _containers.RepeatedScalarFieldContainer[int]
    int64_values: _containers.RepeatedScalarFieldContainer[int]
    list_offsets: _containers.RepeatedScalarFieldContainer[int]
    statuses: _containers.RepeatedScalarFieldContainer[FeatureStatus]
    string_list_values: _containers.RepeatedScalarFieldContainer[str]
    string_values: _containers.RepeatedScalarFieldContainer[str]
    type: ValueType
    def __init__(self, feature: _Optional[str] = ..., type: _Optional[_Union[ValueType, str]] = ..., statuses: _Optional[_Iterable[_Union[FeatureStatus, str]]] = ..., event_times: _Optional[_Iterable[int]] = ..., int64_values: _Optional[_Iterable[int]] = ..., double_values: _Optional[_Iterable[float]] = ..., string_values: _Optional[_Iterable[str]] = ..., bytes_values: _Optional[_Iterable[bytes]] = ..., bool_values: _Optional[_Iterable[bool]] = ..., float_list_values: _Optional[_Iterable[float]] = ..., int64_list_values: _Optional[_Iterable[int]] = ..., string_list_values: _Optional[_Iterable[str]] = ..., list_offsets: _Optional[_Iterable[int]] = ...) -> None: ...

class FeatureRow(_message.Message):
    __slots__ = ["entity_id", "event_time", "subject_id", "values"]
    class ValuesEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    event_time: _timestamp_pb2.Timestamp
    subject_id: str
    values: _containers.MessageMap[str, Value]
    def __init__(self, entity_id: _Optional[str] = ..., subject_id: _Optional[str] = ..., event_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., values: _Optional[_Mapping[str, Value]] = ...) -> None: ...

class FeatureSet(_message.Message):
    __slots__ = ["description", "entity_type", "features", "name", "owner", "personal_data", "ttl", "version"]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PERSONAL_DATA_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    description: str
    entity_type: str
    features: _containers.RepeatedCompositeFieldContainer[FeatureSpec]
    name: str
    owner: str
    personal_data: bool
    ttl: _duration_pb2.Duration
    version: int
    def __init__(self, name: _Optional[str] = ..., entity_type: _Optional[str] = ..., features: _Optional[_Iterable[_Union[FeatureSpec, _Mapping]]] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., description: _Optional[str] = ..., owner: _Optional[str] = ..., personal_data: bool = ..., version: _Optional[int] = ...) -> None: ...

class FeatureSpec(_message.Message):
    __slots__ = ["name", "type"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ValueType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ValueType, str]] = ...) -> None: ...

class FloatList(_message.Message):
    __slots__ = ["values"]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class GetDeletionRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetDeletionResponse(_message.Message):
    __slots__ = ["deletion"]
    DELETION_FIELD_NUMBER: _ClassVar[int]
    deletion: Deletion
    def __init__(self, deletion: _Optional[_Union[Deletion, _Mapping]] = ...) -> None: ...

class GetFeatureColumnsRequest(_message.Message):
    __slots__ = ["entity_ids", "features"]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, features: _Optional[_Iterable[str]] = ..., entity_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetFeatureColumnsResponse(_message.Message):
    __slots__ = ["columns"]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[FeatureColumn]
    def __init__(self, columns: _Optional[_Iterable[_Union[FeatureColumn, _Mapping]]] = ...) -> None: ...

class GetFeatureSetRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetFeatureSetResponse(_message.Message):
    __slots__ = ["feature_set"]
    FEATURE_SET_FIELD_NUMBER: _ClassVar[int]
    feature_set: FeatureSet
    def __init__(self, feature_set: _Optional[_Union[FeatureSet, _Mapping]] = ...) -> None: ...

class GetFeaturesRequest(_message.Message):
    __slots__ = ["entity_ids", "features"]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, features: _Optional[_Iterable[str]] = ..., entity_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetFeaturesResponse(_message.Message):
    __slots__ = ["features", "results"]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedScalarFieldContainer[str]
    results: _containers.RepeatedCompositeFieldContainer[EntityResult]
    def __init__(self, features: _Optional[_Iterable[str]] = ..., results: _Optional[_Iterable[_Union[EntityResult, _Mapping]]] = ...) -> None: ...

class Int64List(_message.Message):
    __slots__ = ["values"]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class ListFeatureSetsRequest(_message.Message):
    __slots__ = ["page_size", "page_token"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFeatureSetsResponse(_message.Message):
    __slots__ = ["feature_sets", "next_page_token"]
    FEATURE_SETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    feature_sets: _containers.RepeatedCompositeFieldContainer[FeatureSet]
    next_page_token: str
    def __init__(self, feature_sets: _Optional[_Iterable[_Union[FeatureSet, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RowResult(_message.Message):
    __slots__ = ["error", "reason", "status", "version"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    error: str
    reason: str
    status: WriteStatus
    version: int
    def __init__(self, status: _Optional[_Union[WriteStatus, str]] = ..., version: _Optional[int] = ..., error: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class StreamWriteFeaturesRequest(_message.Message):
    __slots__ = ["feature_set", "rows", "sequence"]
    FEATURE_SET_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    feature_set: str
    rows: _containers.RepeatedCompositeFieldContainer[FeatureRow]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ..., feature_set: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[FeatureRow, _Mapping]]] = ...) -> None: ...

class StreamWriteFeaturesResponse(_message.Message):
    __slots__ = ["results", "sequence"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RowResult]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ..., results: _Optional[_Iterable[_Union[RowResult, _Mapping]]] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ["values"]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ["bool_value", "bytes_value", "double_value", "float_list_value", "int64_list_value", "int64_value", "string_list_value", "string_value"]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT64_LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    bool_value: bool
    bytes_value: bytes
    double_value: float
    float_list_value: FloatList
    int64_list_value: Int64List
    int64_value: int
    string_list_value: StringList
    string_value: str
    def __init__(self, int64_value: _Optional[int] = ..., double_value: _Optional[float] = ..., string_value: _Optional[str] = ..., bytes_value: _Optional[bytes] = ..., bool_value: bool = ..., float_list_value: _Optional[_Union[FloatList, _Mapping]] = ..., int64_list_value: _Optional[_Union[Int64List, _Mapping]] = ..., string_list_value: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...

class WriteFeaturesRequest(_message.Message):
    __slots__ = ["feature_set", "rows"]
    FEATURE_SET_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    feature_set: str
    rows: _containers.RepeatedCompositeFieldContainer[FeatureRow]
    def __init__(self, feature_set: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[FeatureRow, _Mapping]]] = ...) -> None: ...

class WriteFeaturesResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RowResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RowResult, _Mapping]]] = ...) -> None: ...

class ValueType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class FeatureStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class WriteStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class DeletionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
