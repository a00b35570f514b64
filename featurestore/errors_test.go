package featurestore

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// TestRefusalsAreNotOutages: what the database refuses for good must reach clients as
// INVALID_ARGUMENT, never as UNAVAILABLE, which they would retry forever.
func TestRefusalsAreNotOutages(t *testing.T) {
	outage := errors.New("connection refused")
	tests := []struct {
		name   string
		err    error
		kind   Kind
		reason string
	}{
		{"unavailable: an outage", Unavailable("database unavailable", outage), KindUnavailable, ReasonStoreUnavailable},
		{"unavailable: a refused key", Unavailable("database unavailable", fmt.Errorf("get: %w", writethrough.ErrRefused)), KindInvalid, ReasonDatabaseRefused},
		{"unavailable: an item too large", Unavailable("database unavailable", fmt.Errorf("put: %w", writethrough.ErrItemTooLarge)), KindInvalid, ReasonItemTooLarge},
		{"store: not written for a refusal", storeError(fmt.Errorf("%w: %w", writethrough.ErrNotWritten, writethrough.ErrRefused)), KindInvalid, ReasonDatabaseRefused},
		{"store: not written for size", storeError(fmt.Errorf("%w: %w", writethrough.ErrNotWritten, writethrough.ErrItemTooLarge)), KindInvalid, ReasonItemTooLarge},
		{"store: not written for an outage", storeError(fmt.Errorf("%w: %w", writethrough.ErrNotWritten, outage)), KindUnavailable, ReasonStoreUnavailable},
		{"store: read refused", storeError(fmt.Errorf("%w: %w", writethrough.ErrUnavailable, writethrough.ErrRefused)), KindInvalid, ReasonDatabaseRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var fe *Error
			if !errors.As(tc.err, &fe) {
				t.Fatalf("%v is not a domain error", tc.err)
			}
			if fe.Kind != tc.kind || ErrorReason(tc.err) != tc.reason {
				t.Fatalf("%v: kind %v reason %s, want %v %s", tc.err, fe.Kind, ErrorReason(tc.err), tc.kind, tc.reason)
			}
		})
	}
}
