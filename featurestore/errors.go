package featurestore

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// Kind classifies an error so that the server can map it to a status code in one place.
type Kind int

const (
	// KindInternal is a bug or an unexpected failure; details are not shown to clients.
	KindInternal Kind = iota
	// KindInvalid is a malformed request; Field names the offending field.
	KindInvalid
	// KindNotFound is a reference to something that does not exist.
	KindNotFound
	// KindFailedPrecondition is a request that conflicts with the current state,
	// such as changing a feature's type.
	KindFailedPrecondition
	// KindUnavailable is a dependency that could not be reached. For writes the outcome is
	// unknown: the row may be durable. Retrying is safe because merge is idempotent.
	KindUnavailable
	// KindResourceExhausted is a request over a limit.
	KindResourceExhausted
	// KindAborted is contention that outlasted the bounded retries; retrying is safe.
	KindAborted
)

func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindNotFound:
		return "not found"
	case KindFailedPrecondition:
		return "failed precondition"
	case KindUnavailable:
		return "unavailable"
	case KindResourceExhausted:
		return "resource exhausted"
	case KindAborted:
		return "aborted"
	default:
		return "internal"
	}
}

// Reasons are stable, machine-readable causes of errors and rejected rows. They reach
// clients as google.rpc.ErrorInfo.reason and RowResult.reason; never change one.
const (
	ReasonInvalidArgument          = "INVALID_ARGUMENT"
	ReasonLimitExceeded            = "LIMIT_EXCEEDED"
	ReasonUnknownFeatureSet        = "UNKNOWN_FEATURE_SET"
	ReasonUnknownFeature           = "UNKNOWN_FEATURE"
	ReasonInvalidValue             = "INVALID_VALUE"
	ReasonEventTimeInFuture        = "EVENT_TIME_IN_FUTURE"
	ReasonItemTooLarge             = "ITEM_TOO_LARGE"
	ReasonDatabaseRefused          = "DATABASE_REFUSED"
	ReasonSubjectErased            = "SUBJECT_ERASED"
	ReasonSubjectErasureInProgress = "SUBJECT_ERASURE_IN_PROGRESS"
	ReasonSubjectMismatch          = "SUBJECT_MISMATCH"
	ReasonFeatureSetRetired        = "FEATURE_SET_RETIRED"
	ReasonIncompatibleChange       = "INCOMPATIBLE_CHANGE"
	ReasonStale                    = "STALE"
	ReasonNotFound                 = "NOT_FOUND"
	ReasonResponseTooLarge         = "RESPONSE_TOO_LARGE"
	ReasonRateLimited              = "RATE_LIMITED"
	ReasonStoreUnavailable         = "STORE_UNAVAILABLE"
	ReasonOutcomeUnknown           = "OUTCOME_UNKNOWN"
	ReasonContention               = "CONTENTION"
	ReasonInternal                 = "INTERNAL"
)

// Error is an error with a Kind. Message is safe to show to clients: it never holds
// feature values or subject ids. Err, if set, is the cause, for logs only.
type Error struct {
	Kind Kind
	// Reason is one of the Reason constants; empty means the Kind's default (see
	// ErrorReason).
	Reason  string
	Field   string
	Message string
	Err     error
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorKind returns the Kind of the first *Error in err's chain, or KindInternal.
func ErrorKind(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// MaxEcho is the most bytes of a caller's input an error quotes back.
const MaxEcho = 100

// Truncate cuts s to about MaxEcho bytes (at a UTF-8 boundary) for quoting in an error, so
// that an error never costs more than its request's names are worth: an 8 MB feature name
// must not come back as a 16 MB trailer.
func Truncate(s string) string {
	if len(s) <= MaxEcho {
		return s
	}
	n := MaxEcho
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// ErrorReason returns the stable reason of err: the first *Error's Reason, or its Kind's
// default, or ReasonInternal.
func ErrorReason(err error) string {
	var e *Error
	if !errors.As(err, &e) {
		return ReasonInternal
	}
	if e.Reason != "" {
		return e.Reason
	}
	switch e.Kind {
	case KindInvalid:
		return ReasonInvalidArgument
	case KindNotFound:
		return ReasonNotFound
	case KindFailedPrecondition:
		return ReasonIncompatibleChange
	case KindUnavailable:
		return ReasonStoreUnavailable
	case KindResourceExhausted:
		return ReasonLimitExceeded
	case KindAborted:
		return ReasonContention
	}
	return ReasonInternal
}

// WithReason sets the reason of err's first *Error and returns err.
func WithReason(reason string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		e.Reason = reason
	}
	return err
}

// Invalid returns a KindInvalid error naming field.
func Invalid(field, format string, args ...any) error {
	return &Error{Kind: KindInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// NotFound returns a KindNotFound error naming field.
func NotFound(field, format string, args ...any) error {
	return &Error{Kind: KindNotFound, Field: field, Message: fmt.Sprintf(format, args...)}
}

// FailedPrecondition returns a KindFailedPrecondition error naming field.
func FailedPrecondition(field, format string, args ...any) error {
	return &Error{Kind: KindFailedPrecondition, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ResourceExhausted returns a KindResourceExhausted error naming field.
func ResourceExhausted(field, format string, args ...any) error {
	return &Error{Kind: KindResourceExhausted, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Unavailable wraps err, the failure of a dependency, as KindUnavailable; unless the
// database refused the request for good (its size limits or validation), which is
// KindInvalid instead, so that clients do not retry what cannot succeed.
func Unavailable(message string, err error) error {
	if r := refusal(err); r != nil {
		return r
	}
	return &Error{Kind: KindUnavailable, Message: message, Err: err}
}

// refusal is the domain error for a database's refusal that no retry can change, or nil.
// The database's own message is not shown: it may quote the request.
func refusal(err error) error {
	switch {
	case errors.Is(err, writethrough.ErrItemTooLarge):
		return &Error{Kind: KindInvalid, Reason: ReasonItemTooLarge, Message: "the database refused the request: an item or transaction over its size limits; retrying cannot help", Err: err}
	case errors.Is(err, writethrough.ErrRefused):
		return &Error{Kind: KindInvalid, Reason: ReasonDatabaseRefused, Message: "the database refused the request as invalid; retrying cannot help", Err: err}
	}
	return nil
}

// ErrConflict is returned by a Store when a conditional write found another version.
var ErrConflict = errors.New("version conflict")
