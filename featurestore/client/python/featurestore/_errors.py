"""Exceptions: one class per gRPC status code, carrying the code, the stable reason and
the field from the server's google.rpc error details."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import grpc

from featurestore._proto.featurestore.sdk.rpc import status_pb2

if TYPE_CHECKING:
    from featurestore._types import Deletion, RowResult

#: The google.rpc.ErrorInfo domain of errors raised by the feature store server.
ERROR_DOMAIN = "featurestore.dsfeatures.dev"

_DETAILS_KEY = "grpc-status-details-bin"
_TYPE_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_TYPE_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_TYPE_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


@dataclass(frozen=True)
class FieldViolation:
    """One google.rpc.BadRequest field violation: the request field and what is wrong."""

    field: str
    description: str


class FeatureStoreError(Exception):
    """Base of every error the SDK raises for a failed call.

    Attributes:
        code: the gRPC status code (None for errors that are not a call's status).
        message: the status message (for people; never holds feature values).
        reason: the stable, machine-readable reason from google.rpc.ErrorInfo, such as
            ``UNKNOWN_FEATURE_SET`` or ``RATE_LIMITED``; empty when the error did not come
            from the feature store (a connection failure, a client-side deadline).
        field: the request field at fault (ErrorInfo metadata "field"), or empty.
        domain: the ErrorInfo domain (``featurestore.dsfeatures.dev``), or empty.
        metadata: all ErrorInfo metadata.
        violations: google.rpc.BadRequest field violations.
        retry_delay: seconds google.rpc.RetryInfo suggests waiting before a retry, or None.
        attempts: how many times the call was tried.
    """

    def __init__(self, message: str, *, code: Optional[grpc.StatusCode] = None, reason: str = "",
                 field: str = "", domain: str = "", metadata: Optional[dict[str, str]] = None,
                 violations: Sequence[FieldViolation] = (), retry_delay: Optional[float] = None,
                 attempts: int = 1) -> None:
        super().__init__(message)
        self.code: Optional[grpc.StatusCode] = code
        self.message: str = message
        self.reason: str = reason
        self.field: str = field
        self.domain: str = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.violations: list[FieldViolation] = list(violations)
        self.retry_delay: Optional[float] = retry_delay
        self.attempts: int = attempts

    def __str__(self) -> str:
        code = self.code.name if self.code is not None else type(self).__name__
        extra = f" [{self.reason}]" if self.reason else ""
        return f"{code}{extra}: {self.message}"


class CancelledError(FeatureStoreError):
    """CANCELLED: the call was cancelled (usually by the caller)."""


class UnknownError(FeatureStoreError):
    """UNKNOWN: an error the server or transport could not classify."""


class InvalidArgumentError(FeatureStoreError):
    """INVALID_ARGUMENT: the request is invalid; ``field`` and ``violations`` say where.
    Nothing was written."""


class DeadlineExceededError(FeatureStoreError):
    """DEADLINE_EXCEEDED: the call's deadline passed. A write may have been applied."""


class NotFoundError(FeatureStoreError):
    """NOT_FOUND: an unknown feature set, feature or deletion."""


class AlreadyExistsError(FeatureStoreError):
    """ALREADY_EXISTS."""


class PermissionDeniedError(FeatureStoreError):
    """PERMISSION_DENIED: the caller's identity may not do this (access policy)."""


class ResourceExhaustedError(FeatureStoreError):
    """RESOURCE_EXHAUSTED: a rate limit or size limit; ``retry_delay`` says when to retry
    a rate-limited call."""


class FailedPreconditionError(FeatureStoreError):
    """FAILED_PRECONDITION: the call conflicts with the store's state, e.g. changing a
    feature's type or writing another data subject's entity."""


class AbortedError(FeatureStoreError):
    """ABORTED: contention outlasted the server's retries; retrying is safe."""


class OutOfRangeError(FeatureStoreError):
    """OUT_OF_RANGE."""


class UnimplementedError(FeatureStoreError):
    """UNIMPLEMENTED: the server does not offer this call (an older server, or GDPR
    deletion not enabled)."""


class InternalError(FeatureStoreError):
    """INTERNAL: a server bug; the server logged the details."""


class UnavailableError(FeatureStoreError):
    """UNAVAILABLE: the server or one of its stores could not be reached, after the SDK's
    retries. For a write the outcome is unknown: resending the same rows is safe."""


class DataLossError(FeatureStoreError):
    """DATA_LOSS."""


class UnauthenticatedError(FeatureStoreError):
    """UNAUTHENTICATED: no valid credentials (token or client certificate)."""


class OutcomeUnknownError(FeatureStoreError):
    """A write was retried after UNAVAILABLE and some rows then came back STALE: the first
    attempt may have applied them before a newer write overwrote them, so the SDK cannot
    say they were not applied. ``results`` holds every row's result (the ambiguous ones
    have ``outcome_unknown`` set) and ``rows`` their positions; the values stored are at
    least as new as the rows either way. ``code`` is the code that caused the retry.
    """

    def __init__(self, message: str, *, results: Sequence["RowResult"], rows: Sequence[int],
                 code: Optional[grpc.StatusCode] = grpc.StatusCode.UNAVAILABLE, attempts: int = 1) -> None:
        super().__init__(message, code=code, reason="OUTCOME_UNKNOWN", attempts=attempts)
        self.results: list["RowResult"] = list(results)
        self.rows: list[int] = list(rows)


class DeletionFailedError(FeatureStoreError):
    """A GDPR deletion job ended FAILED; ``deletion`` holds it with its
    ``failure_reason``. File the deletion again to retry it."""

    def __init__(self, deletion: "Deletion") -> None:
        super().__init__(f"deletion {deletion.id} failed: {deletion.failure_reason or 'no reason given'}",
                         reason="DELETION_FAILED")
        self.deletion: "Deletion" = deletion


_CODE_CLASSES: Mapping[grpc.StatusCode, type[FeatureStoreError]] = MappingProxyType({
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.UNKNOWN: UnknownError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DATA_LOSS: DataLossError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
})


def error_class(code: grpc.StatusCode) -> type[FeatureStoreError]:
    """The exception class the SDK raises for a status code."""
    return _CODE_CLASSES.get(code, FeatureStoreError)


def from_rpc_error(err: grpc.RpcError, attempts: int = 1) -> FeatureStoreError:
    """Converts a failed call into the exception for its code, decoding ErrorInfo,
    BadRequest and RetryInfo from the grpc-status-details-bin trailer."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = (err.details() if hasattr(err, "details") else None) or str(code)
    trailer: Any = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    return from_status(code, message, _details_bytes(trailer), attempts)


def from_status(code: grpc.StatusCode, message: str, details: Optional[bytes], attempts: int = 1) -> FeatureStoreError:
    """Builds the exception for a status code, message and a serialized google.rpc.Status
    (the grpc-status-details-bin trailer; None or undecodable: no details)."""
    reason = field = domain = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    retry_delay: Optional[float] = None
    if details:
        try:
            st = status_pb2.Status.FromString(details)
        except Exception:  # a foreign or corrupt trailer must not hide the real error
            st = status_pb2.Status()
        for any_msg in st.details:
            try:
                if any_msg.type_url == _TYPE_ERROR_INFO:
                    info = status_pb2.ErrorInfo.FromString(any_msg.value)
                    reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
                    field = metadata.get("field", "")
                elif any_msg.type_url == _TYPE_BAD_REQUEST:
                    br = status_pb2.BadRequest.FromString(any_msg.value)
                    violations.extend(FieldViolation(v.field, v.description) for v in br.field_violations)
                elif any_msg.type_url == _TYPE_RETRY_INFO:
                    ri = status_pb2.RetryInfo.FromString(any_msg.value)
                    retry_delay = ri.retry_delay.seconds + ri.retry_delay.nanos / 1e9
            except Exception:
                continue
    if not field and violations:
        field = violations[0].field
    return error_class(code)(message, code=code, reason=reason, field=field, domain=domain,
                             metadata=metadata, violations=violations, retry_delay=retry_delay,
                             attempts=attempts)


def _details_bytes(trailer: Any) -> Optional[bytes]:
    for key, value in trailer or ():
        if key == _DETAILS_KEY:
            return value if isinstance(value, bytes) else None
    return None
