package featurestore

import (
	"errors"
	"fmt"
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

// Error is an error with a Kind. Message is safe to show to clients: it never holds
// feature values or subject ids. Err, if set, is the cause, for logs only.
type Error struct {
	Kind    Kind
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

// Unavailable wraps err, the failure of a dependency, as KindUnavailable.
func Unavailable(message string, err error) error {
	return &Error{Kind: KindUnavailable, Message: message, Err: err}
}

// ErrConflict is returned by a Store when a conditional write found another version.
var ErrConflict = errors.New("version conflict")
