package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dsfeatures/featurestore/featurestore"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every error the server returns.
const ErrorDomain = "featurestore.dsfeatures.dev"

// Reasons of errors that arise in this package rather than in the domain.
const (
	reasonUnauthenticated  = "UNAUTHENTICATED"
	reasonPermissionDenied = "PERMISSION_DENIED"
	reasonDeadline         = "DEADLINE_EXCEEDED"
	reasonCanceled         = "CANCELED"
	reasonUnimplemented    = "UNIMPLEMENTED"
	reasonMalformed        = "MALFORMED_REQUEST"
)

// rateLimitRetry is the delay RetryInfo suggests after a rate limit refused a call.
const rateLimitRetry = time.Second

// newStatus builds a status with the message "field: desc" (or desc), a
// google.rpc.ErrorInfo (reason, domain and the field as metadata), a BadRequest field
// violation when field is set on INVALID_ARGUMENT, and a RetryInfo when a retry after
// retryAfter can succeed. Every error the server returns is built here.
func newStatus(code codes.Code, reason, field, desc string, retryAfter time.Duration) error {
	msg := desc
	if field != "" {
		msg = field + ": " + desc
	}
	st := status.New(code, msg)
	info := &errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}
	if field != "" {
		info.Metadata = map[string]string{"field": field}
	}
	details := []protoadapt.MessageV1{info}
	if code == codes.InvalidArgument && field != "" {
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: desc}}})
	}
	if retryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)})
	}
	if d, err := st.WithDetails(details...); err == nil {
		st = d
	}
	return st.Err()
}

// toStatus is the one place where domain errors become gRPC statuses. Messages of known
// kinds are safe to show (they never hold values or subject ids); internal errors are
// logged here and the client is told only that something went wrong.
func toStatus(ctx context.Context, logger *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *featurestore.Error
	if !errors.As(err, &fe) {
		switch {
		case errors.Is(err, context.DeadlineExceeded) && errors.Is(context.Cause(ctx), errServerDeadline):
			return newStatus(codes.Unavailable, featurestore.ReasonStoreUnavailable, "", "the server's deadline passed before the stores answered; retrying is safe", 0)
		case errors.Is(err, context.DeadlineExceeded):
			return newStatus(codes.DeadlineExceeded, reasonDeadline, "", "deadline exceeded", 0)
		case errors.Is(err, context.Canceled):
			return newStatus(codes.Canceled, reasonCanceled, "", "canceled", 0)
		}
		logger.ErrorContext(ctx, "internal error", "method", method, "err", err)
		return newStatus(codes.Internal, featurestore.ReasonInternal, "", "internal error", 0)
	}
	code := codes.Internal
	switch fe.Kind {
	case featurestore.KindInvalid:
		code = codes.InvalidArgument
	case featurestore.KindNotFound:
		code = codes.NotFound
	case featurestore.KindFailedPrecondition:
		code = codes.FailedPrecondition
	case featurestore.KindUnavailable:
		code = codes.Unavailable
		logger.WarnContext(ctx, "dependency unavailable", "method", method, "err", err)
	case featurestore.KindResourceExhausted:
		code = codes.ResourceExhausted
	case featurestore.KindAborted:
		code = codes.Aborted
	default:
		logger.ErrorContext(ctx, "internal error", "method", method, "err", err)
		return newStatus(codes.Internal, featurestore.ReasonInternal, "", "internal error", 0)
	}
	reason := featurestore.ErrorReason(err)
	var retry time.Duration
	if reason == featurestore.ReasonRateLimited {
		retry = rateLimitRetry
	}
	return newStatus(code, reason, fe.Field, fe.Message, retry)
}
