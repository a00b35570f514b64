package valkey

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// serverClock bounds the ValKey server's clock from above, so that Get can tell whether
// a provisional entry's horizon (written in the server's clock by the scripts) is still
// ahead without a script of its own. A sample of TIME taken between a local send at s and
// the reply is at most the server's time at s plus the round trip, so at any later local
// monotonic time m the server's clock reads at most sample + (m - s): the bound never
// needs the two clocks to agree, only the server's to run steadily (as the lease and
// horizon already require). The sample is renewed every sampleAge, so that the rates of
// the two clocks cannot drift apart by more than the margin.
type serverClock struct {
	sample atomic.Pointer[clockSample]
}

type clockSample struct {
	serverMs int64     // TIME, rounded up to the millisecond
	sent     time.Time // local, monotonic: when TIME was sent
}

const (
	sampleAge   = 5 * time.Second
	clockMargin = 2 * time.Millisecond
)

// before reports whether the server's clock is surely still before ms. It fails closed:
// without a fresh sample (and none can be taken), it says no.
func (c *Cache) before(ctx context.Context, ms int64) bool {
	s := c.clock.sample.Load()
	if s == nil || time.Since(s.sent) > sampleAge {
		var err error
		if s, err = c.sampleClock(ctx); err != nil {
			return false
		}
	}
	upper := s.serverMs + (time.Since(s.sent) + clockMargin).Milliseconds() + 1
	return upper < ms
}

func (c *Cache) sampleClock(ctx context.Context) (*clockSample, error) {
	sent := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	t, err := c.client.Do(ctx, c.client.B().Time().Build()).AsIntSlice()
	if err != nil {
		return nil, err
	}
	if len(t) != 2 {
		return nil, fmt.Errorf("valkey TIME: %d fields, want 2", len(t))
	}
	s := &clockSample{serverMs: t[0]*1000 + (t[1]+999)/1000, sent: sent}
	c.clock.sample.Store(s)
	return s, nil
}
