package valkey

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	vk "github.com/valkey-io/valkey-go"
)

// serverClocks bound the clock of the ValKey node that holds each slot, so that Get can
// tell where a provisional entry's horizon (written in that node's clock by the scripts)
// stands without a script of its own. TIME, asked of the key's own node (in a read-only
// script on the key, so it is routed as the key is), answers with that node's clock at
// some moment between the local send s and receipt r, so at a later local monotonic time
// m the node's clock reads between sample + (m - r) and sample + (m - s): the bounds never
// need the two clocks to agree, only the node's to run steadily (as the leases and the
// horizon already require). Samples are kept per slot (a failover moves slots, and nodes'
// clocks differ), and renewed every sampleAge so that the two clocks' rates cannot drift
// apart by more than the margin.
type serverClocks struct {
	slots [16384]atomic.Pointer[clockSample]

	// sampling holds the slots being sampled: after a cache loss, hundreds of readers
	// GET provisional entries in the same new slots at once, and one sample per slot
	// serves them all.
	mu       sync.Mutex
	sampling map[uint16]chan struct{}
}

func newServerClocks() *serverClocks {
	return &serverClocks{sampling: map[uint16]chan struct{}{}}
}

type clockSample struct {
	serverMs       int64     // TIME, in milliseconds (floor)
	sent, received time.Time // local, monotonic
}

const (
	sampleAge   = 5 * time.Second
	clockMargin = 2 * time.Millisecond
)

// timeLua returns the clock of the node that holds KEYS[1].
const timeLua = `return redis.call('TIME')`

// sampleClocks takes a fresh sample for the slot of every key that lacks one, in one
// pipelined round trip, or waits for the sample another call is taking. Failures leave
// the slots without one (Get then serves nothing provisional there).
func (c *Cache) sampleClocks(ctx context.Context, keys []string) {
	var cmds vk.Commands
	var slots []uint16
	var waits []chan struct{}
	seen := map[uint16]bool{}
	c.clocks.mu.Lock()
	for _, k := range keys {
		s := Slot(k)
		if seen[s] {
			continue
		}
		seen[s] = true
		if p := c.clocks.slots[s].Load(); p != nil && time.Since(p.sent) <= sampleAge {
			continue
		}
		if ch, ok := c.clocks.sampling[s]; ok {
			waits = append(waits, ch)
			continue
		}
		c.clocks.sampling[s] = make(chan struct{})
		slots = append(slots, s)
		cmds = append(cmds, c.client.B().EvalRo().Script(timeLua).Numkeys(1).Key(k).Build())
	}
	c.clocks.mu.Unlock()
	if len(cmds) > 0 {
		// Others wait for this sample: it must not end with this caller's context.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.Timeout)
		c.takeSamples(sctx, slots, cmds)
		cancel()
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	for _, ch := range waits {
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// takeSamples sends cmds (TIME on slots) and stores what they answer, then lets the
// callers waiting for those slots go.
func (c *Cache) takeSamples(ctx context.Context, slots []uint16, cmds vk.Commands) {
	defer func() {
		c.clocks.mu.Lock()
		for _, s := range slots {
			close(c.clocks.sampling[s])
			delete(c.clocks.sampling, s)
		}
		c.clocks.mu.Unlock()
	}()
	sent := time.Now()
	res := c.client.DoMulti(ctx, cmds...)
	received := time.Now()
	for i, r := range res {
		t, err := r.AsIntSlice()
		if err != nil || len(t) != 2 {
			continue
		}
		c.clocks.slots[slots[i]].Store(&clockSample{serverMs: t[0]*1000 + t[1]/1000, sent: sent, received: received})
	}
}

// maxOfferedWidth bounds the call a reading offered as a sample may come from. The
// bounds of a sample are as wide as its call (a long pipeline, a WAIT, retries after a
// failover), and a loose one would be kept for sampleAge: Get would end provisional
// entries early and ask for their renewal late. Readings from wider calls are dropped,
// and a GET that needs the slot's clock takes a TIME sample of its own.
const maxOfferedWidth = 20 * time.Millisecond

// offer keeps a reading serverMs of slot's node clock, taken between local times sent
// and received, as the slot's sample, unless the call was wider than maxOfferedWidth or
// the slot has a fresh sample at least as narrow.
func (c *serverClocks) offer(slot uint16, serverMs int64, sent, received time.Time) {
	width := received.Sub(sent)
	if width > maxOfferedWidth {
		return
	}
	if p := c.slots[slot].Load(); p != nil && time.Since(p.sent) <= sampleAge && p.received.Sub(p.sent) <= width {
		return
	}
	c.slots[slot].Store(&clockSample{serverMs: serverMs, sent: sent, received: received})
}

// bounds returns the least and the most the clock of key's node can read now, in
// milliseconds; ok is false when there is no fresh sample for its slot.
func (c *Cache) bounds(key string) (lo, hi int64, ok bool) {
	s := c.clocks.slots[Slot(key)].Load()
	if s == nil || time.Since(s.sent) > sampleAge {
		return 0, 0, false
	}
	lo = s.serverMs + (time.Since(s.received) - clockMargin).Milliseconds()
	hi = s.serverMs + (time.Since(s.sent) + clockMargin).Milliseconds() + 1
	return lo, hi, true
}
