package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dsfeatures/featurestore/featurestore"
)

func TestToStatus(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode codes.Code
		wantMsg  string
	}{
		{"invalid names the field", featurestore.Invalid("rows[2].entity_id", "is required"), codes.InvalidArgument, "rows[2].entity_id: is required"},
		{"wrapped kinds are found", fmt.Errorf("ctx: %w", featurestore.NotFound("name", "feature set %q not found", "x")), codes.NotFound, `name: feature set "x" not found`},
		{"failed precondition", featurestore.FailedPrecondition("feature_set.features", "no"), codes.FailedPrecondition, "feature_set.features: no"},
		{"unavailable hides the cause", featurestore.Unavailable("database unavailable", errors.New("dial tcp 10.0.0.1:443: secret detail")), codes.Unavailable, "database unavailable"},
		{"resource exhausted", featurestore.ResourceExhausted("", "slow down"), codes.ResourceExhausted, "slow down"},
		{"aborted", &featurestore.Error{Kind: featurestore.KindAborted, Message: "retry"}, codes.Aborted, "retry"},
		{"internal hides everything", errors.New("stored row \"s#subject-42\": corrupt"), codes.Internal, "internal error"},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "deadline exceeded"},
		{"status passes through", status.Error(codes.PermissionDenied, "no"), codes.PermissionDenied, "no"},
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := status.Convert(toStatus(context.Background(), logger, "M", tc.err))
			if st.Code() != tc.wantCode || st.Message() != tc.wantMsg {
				t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), tc.wantCode, tc.wantMsg)
			}
		})
	}
	st := status.Convert(toStatus(context.Background(), logger, "M", featurestore.Invalid("features[1]", "bad")))
	if len(st.Details()) != 2 || st.Details()[1].(*errdetails.BadRequest).GetFieldViolations()[0].GetField() != "features[1]" {
		t.Fatalf("InvalidArgument lacks a BadRequest field violation: %v", st.Details())
	}
}

// TestErrorInfo requires a google.rpc.ErrorInfo with a stable reason on every status
// toStatus builds, and a RetryInfo where a retry can succeed.
func TestErrorInfo(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantReason string
		wantField  string
		wantRetry  bool
	}{
		{"invalid", featurestore.Invalid("rows[0].entity_id", "is required"), "INVALID_ARGUMENT", "rows[0].entity_id", false},
		{"explicit reason", featurestore.WithReason(featurestore.ReasonUnknownFeature, featurestore.Invalid("rows[0].values[\"x\"]", "no such feature")), "UNKNOWN_FEATURE", "rows[0].values[\"x\"]", false},
		{"not found", featurestore.NotFound("name", "no"), "NOT_FOUND", "name", false},
		{"unavailable", featurestore.Unavailable("database unavailable", errors.New("x")), "STORE_UNAVAILABLE", "", false},
		{"rate limited", featurestore.WithReason(featurestore.ReasonRateLimited, featurestore.ResourceExhausted("", "slow down")), "RATE_LIMITED", "", true},
		{"internal", errors.New("boom"), "INTERNAL", "", false},
		{"deadline", context.DeadlineExceeded, "DEADLINE_EXCEEDED", "", false},
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := status.Convert(toStatus(context.Background(), logger, "M", tc.err))
			var info *errdetails.ErrorInfo
			var retry *errdetails.RetryInfo
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					info = d
				case *errdetails.RetryInfo:
					retry = d
				}
			}
			if info == nil || info.GetReason() != tc.wantReason || info.GetDomain() != ErrorDomain || info.GetMetadata()["field"] != tc.wantField {
				t.Fatalf("ErrorInfo %v, want reason %s, field %q", info, tc.wantReason, tc.wantField)
			}
			if (retry != nil) != tc.wantRetry {
				t.Fatalf("RetryInfo %v, want present=%v", retry, tc.wantRetry)
			}
		})
	}
}
