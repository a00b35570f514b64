package writethrough

import (
	"context"
	"sync"
	"time"
)

// readBatcher merges the database reads of one replica's concurrent readers. Up to slots
// reads run at once, each as its reader sent it; a reader that finds every slot busy
// joins the one pending read, which starts when a slot frees and carries the keys of
// everyone who joined it. After a cache loss, hundreds of readers of different keys miss
// at once: one batched read of all their keys costs the database a small fraction of
// hundreds of single ones. A pending read starts only after everyone in it arrived, so no
// reader is answered from a read that began before it did.
type readBatcher struct {
	db    Database
	slots int

	mu      sync.Mutex
	busy    int
	pending *sharedRead
}

// sharedRead is a pending read and, once done, its outcome. Its first reader (the leader)
// sends it; the others wait for done.
type sharedRead struct {
	keys        []Key
	deadline    time.Time // the latest of its readers'; zero if one of them has none
	unbounded   bool
	ready, done chan struct{}
	items       map[Key]Item
	err         error
}

// sharedReadTimeout bounds a shared read whose readers set no deadline.
const sharedReadTimeout = 10 * time.Second

// get reads keys consistently, alone or with other readers. The map it returns may be
// shared with them: callers only read it.
func (b *readBatcher) get(ctx context.Context, keys []Key) (map[Key]Item, error) {
	b.mu.Lock()
	if b.pending == nil && b.busy < b.slots {
		b.busy++
		b.mu.Unlock()
		items, err := b.db.GetItems(ctx, keys)
		b.release()
		return items, err
	}
	p, leader := b.pending, false
	if p == nil {
		p = &sharedRead{ready: make(chan struct{}), done: make(chan struct{})}
		b.pending, leader = p, true
	}
	p.keys = append(p.keys, keys...)
	if d, ok := ctx.Deadline(); !ok {
		p.unbounded = true
	} else if d.After(p.deadline) {
		p.deadline = d
	}
	b.mu.Unlock()
	if leader {
		// The wait is bounded by the reads in flight, which their deadlines bound. The
		// leader sends the read even if its own caller has gone: others are in it.
		<-p.ready
		rctx, cancel := p.context(ctx)
		p.items, p.err = b.db.GetItems(rctx, p.keys)
		cancel()
		close(p.done)
		b.release()
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return p.items, p.err
}

// context is the shared read's: it outlives any one reader who gives up, and ends with
// the latest deadline among them.
func (p *sharedRead) context(ctx context.Context) (context.Context, context.CancelFunc) {
	base := context.WithoutCancel(ctx)
	if p.unbounded {
		return context.WithTimeout(base, sharedReadTimeout)
	}
	return context.WithDeadline(base, p.deadline)
}

// release frees a slot, handing it to the pending read if there is one.
func (b *readBatcher) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.pending; p != nil {
		b.pending = nil
		close(p.ready)
		return
	}
	b.busy--
}
