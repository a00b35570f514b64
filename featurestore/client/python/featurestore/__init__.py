"""Python SDK of the feature store: serving reads and the three write lanes over gRPC.

Quick start::

    import featurestore as fs

    with fs.Client("featurestore:50051", token="...") as client:
        df = client.get_feature_columns(["driver_stats:rating"], ["d42", "d43"]).to_pandas()
        client.write("driver_stats", [fs.Row("d42", {"rating": 4.9})])

``Client`` is the entry point; errors are subclasses of ``FeatureStoreError`` carrying the
gRPC code, the stable ``reason`` and the ``field`` at fault.
"""

from featurestore._batch import Progress
from featurestore._client import Client, RowLike
from featurestore._columns import Column, FeatureColumns
from featurestore._errors import (
    ERROR_DOMAIN,
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    DataLossError,
    DeadlineExceededError,
    DeletionFailedError,
    FailedPreconditionError,
    FeatureStoreError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OutcomeUnknownError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
    error_class,
)
from featurestore._rows import Cell, EntityFeatures, FeatureValues
from featurestore._stream import StreamWriter
from featurestore._types import (
    Ack,
    BatchError,
    BatchSummary,
    Deletion,
    DeletionState,
    EntityDeletion,
    EventTime,
    FeatureSet,
    FeatureSetPage,
    FeatureSpec,
    FeatureStatus,
    Row,
    RowResult,
    ValueType,
    WriteStatus,
)

#: The SDK's version.
__version__ = "0.1.0"

__all__ = [
    "ERROR_DOMAIN",
    "AbortedError",
    "Ack",
    "AlreadyExistsError",
    "BatchError",
    "BatchSummary",
    "CancelledError",
    "Cell",
    "Client",
    "Column",
    "DataLossError",
    "DeadlineExceededError",
    "Deletion",
    "DeletionFailedError",
    "DeletionState",
    "EntityDeletion",
    "EntityFeatures",
    "EventTime",
    "FailedPreconditionError",
    "FeatureColumns",
    "FeatureSet",
    "FeatureSetPage",
    "FeatureSpec",
    "FeatureStatus",
    "FeatureStoreError",
    "FeatureValues",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "OutOfRangeError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "Progress",
    "ResourceExhaustedError",
    "Row",
    "RowLike",
    "RowResult",
    "StreamWriter",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "ValueType",
    "WriteStatus",
    "error_class",
]
