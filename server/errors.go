package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dsfeatures/featurestore/featurestore"
)

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
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	}
	var fe *featurestore.Error
	if !errors.As(err, &fe) {
		logger.ErrorContext(ctx, "internal error", "method", method, "err", err)
		return status.Error(codes.Internal, "internal error")
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
		return status.Error(codes.Internal, "internal error")
	}
	msg := fe.Message
	if fe.Field != "" {
		msg = fe.Field + ": " + msg
	}
	st := status.New(code, msg)
	if code == codes.InvalidArgument && fe.Field != "" {
		if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: fe.Field, Description: fe.Message}}}); err == nil {
			st = d
		}
	}
	return st.Err()
}
