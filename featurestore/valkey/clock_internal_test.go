package valkey

import (
	"testing"
	"time"
)

// TestOfferKeepsTheNarrowestSample: a clock reading from a call is kept as the slot's
// sample only if the call was narrow and the slot has no fresh sample at least as
// narrow, since the bounds Get judges provisional entries by are as wide as the call.
func TestOfferKeepsTheNarrowestSample(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		have     *clockSample // the slot's sample before the offer
		width    time.Duration
		wantKept bool
	}{
		{"no sample: a narrow reading is kept", nil, 3 * time.Millisecond, true},
		{"no sample: a reading from a call wider than the bound is dropped", nil, maxOfferedWidth + time.Millisecond, false},
		{"a narrower reading replaces a fresh sample", &clockSample{serverMs: 1, sent: now.Add(-10 * time.Millisecond), received: now}, 2 * time.Millisecond, true},
		{"a wider reading leaves a fresh sample", &clockSample{serverMs: 1, sent: now.Add(-time.Millisecond), received: now}, 5 * time.Millisecond, false},
		{"any narrow reading replaces a stale sample", &clockSample{serverMs: 1, sent: now.Add(-sampleAge - time.Second), received: now.Add(-sampleAge - time.Second)}, 5 * time.Millisecond, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newServerClocks()
			if tc.have != nil {
				c.slots[7].Store(tc.have)
			}
			c.offer(7, 42, now.Add(-tc.width), now)
			got := c.slots[7].Load()
			if kept := got != nil && got.serverMs == 42; kept != tc.wantKept {
				t.Errorf("kept %v, want %v (sample now %+v)", kept, tc.wantKept, got)
			}
		})
	}
}
