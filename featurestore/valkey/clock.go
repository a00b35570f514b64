package valkey

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// serverClock bounds the ValKey server's clock, so that Get can tell where a provisional
// entry's horizon (written in the server's clock by the scripts) stands without a script
// of its own. TIME answers with the server's clock at some moment between the local send
// s and receipt r, so at a later local monotonic time m the server's clock reads between
// sample + (m - r) and sample + (m - s): the bounds never need the two clocks to agree,
// only the server's to run steadily (as the leases and the horizon already require). The
// sample is renewed every sampleAge, so that the two clocks' rates cannot drift apart by
// more than the margin.
type serverClock struct {
	sample atomic.Pointer[clockSample]
}

type clockSample struct {
	serverMs       int64     // TIME, in milliseconds (floor)
	sent, received time.Time // local, monotonic
}

const (
	sampleAge   = 5 * time.Second
	clockMargin = 2 * time.Millisecond
)

// bounds returns the least and the most the server's clock can read now, in
// milliseconds; ok is false when no sample could be taken.
func (c *Cache) bounds(ctx context.Context) (lo, hi int64, ok bool) {
	s := c.clock.sample.Load()
	if s == nil || time.Since(s.sent) > sampleAge {
		var err error
		if s, err = c.sampleClock(ctx); err != nil {
			return 0, 0, false
		}
	}
	lo = s.serverMs + (time.Since(s.received) - clockMargin).Milliseconds()
	hi = s.serverMs + (time.Since(s.sent) + clockMargin).Milliseconds() + 1
	return lo, hi, true
}

func (c *Cache) sampleClock(ctx context.Context) (*clockSample, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	sent := time.Now()
	t, err := c.client.Do(ctx, c.client.B().Time().Build()).AsIntSlice()
	received := time.Now()
	if err != nil {
		return nil, err
	}
	if len(t) != 2 {
		return nil, fmt.Errorf("valkey TIME: %d fields, want 2", len(t))
	}
	s := &clockSample{serverMs: t[0]*1000 + t[1]/1000, sent: sent, received: received}
	c.clock.sample.Store(s)
	return s, nil
}
