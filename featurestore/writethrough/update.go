package writethrough

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
)

// Current is a key's stored item as the commit read it.
type Current struct {
	Item Item
	// Exists tells whether the database holds the item (possibly a tombstone without
	// Data); when it does not, Item has only its Key.
	Exists bool
}

// Change is a mutation's decision for one key.
type Change struct {
	// Put stores an item with Data, Subject and ExpiresAt; Update fills in the key and
	// the next version. Without Put the item stays as it is, and its current version is
	// published (so a retried write repairs the cache).
	Put       bool
	Data      []byte
	Subject   string
	ExpiresAt int64
}

// Mutation maps key i's current item to its change and a result for the caller. It must
// be a pure function of its arguments (and of what the update's before function
// captured), and safe to call concurrently for different keys: Update calls it again,
// with a fresh read, whenever a conditional write loses a race. An error fails key i only.
type Mutation[R any] func(i int, cur Current) (Change, R, error)

// Outcome is one key's result of Update.
type Outcome[R any] struct {
	// Result is what the mutation returned on the attempt that counted.
	Result R
	// Item is the key's item after the update, if Exists.
	Item   Item
	Exists bool
	// Written reports that this update stored Item.
	Written bool
	// Err is the key's failure: the mutation's own error, or one wrapping ErrNotWritten,
	// ErrOutcomeUnknown or ErrContention.
	Err error
	// known: Item is the committed state (the commit read or wrote it), so it may be
	// published even if the mutation failed.
	known bool
}

// Update runs MARK, COMMIT and PUBLISH (see the package doc) for keys, which must be
// distinct, applying mutate to each. Each key is written atomically and linearizably;
// keys are not written atomically together, except that a transaction of several keys
// stores all or none.
//
// The error is nil only when every key was committed (or needed no change) and
// published. Otherwise it is the first key's error in key order, or an error wrapping
// ErrUnpublished when only publishing failed. Outcomes are returned whenever MARK
// succeeded, so callers can report per key.
func Update[R any](ctx context.Context, s *Store, keys []Key, mutate Mutation[R], opts ...Option) ([]Outcome[R], error) {
	return UpdateWith(ctx, s, keys, nil, func(_ struct{}, i int, cur Current) (Change, R, error) { return mutate(i, cur) }, opts...)
}

// Option changes how Update commits.
type Option func(*options)

type options struct {
	allOrNothing bool
}

// AllOrNothing makes a mutation's error stop the whole update while nothing has been
// written yet: the keys' mutations all run on the first read, and if any fails no key is
// put, and Update returns that error. It cannot undo what is already committed: once keys
// whose transaction lost a race are retried one by one, a failing key no longer stops the
// others (their outcomes say Written).
func AllOrNothing() Option { return func(o *options) { o.allOrNothing = true } }

// UpdateWith is Update with a prepare step: prepare runs after MARK under the commit's
// deadline, and what it returns is handed to every mutation. Use it for lookups that must
// not be older than the commit, such as erasure tombstones. If prepare fails nothing is
// committed and every key reports its error wrapped in ErrNotWritten. A nil prepare
// hands the mutations P's zero value.
func UpdateWith[P, R any](ctx context.Context, s *Store, keys []Key, prepare func(context.Context) (P, error), mutate func(p P, i int, cur Current) (Change, R, error), opts ...Option) ([]Outcome[R], error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	// The commit's deadline counts from before MARK, so it ends before the lease does.
	cctx, cancel := context.WithTimeoutCause(ctx, s.cfg.WriteTimeout, ErrWriteTimeout)
	defer cancel()
	ckeys := CacheKeys(keys)
	w := &writer{token: s.newToken(), ckeys: ckeys, markedAt: time.Now()}
	if err := s.cache.Mark(ctx, ckeys, w.token, s.cfg.Lease); err != nil {
		return nil, fmt.Errorf("%w: cache: %w", ErrNotWritten, err)
	}
	outs := make([]Outcome[R], len(keys))
	var p P
	if prepare != nil {
		var err error
		if p, err = prepare(cctx); err != nil {
			for i := range outs {
				outs[i].Err = fmt.Errorf("%w: %w", ErrNotWritten, commitCause(cctx, err))
			}
			// The keys keep their token: readers go to the database until the lease ends.
			return outs, outs[0].Err
		}
	}
	m := func(i int, cur Current) (Change, R, error) { return mutate(p, i, cur) }
	var vetoed error
	if len(keys) == 1 {
		commitOne(cctx, s, w, keys, 0, m, outs)
	} else {
		vetoed = commitGroup(cctx, s, w, keys, m, outs, o.allOrNothing)
	}

	pubs := make([]Publication, 0, len(keys))
	for i := range outs {
		// A key whose outcome is unknown keeps its token: only a reader after the lease
		// may decide what the cache holds.
		if outs[i].known && outs[i].Exists {
			pubs = append(pubs, Publication{Key: ckeys[i], Token: w.token, Version: outs[i].Item.Version, Data: outs[i].Item.Data})
		}
	}
	var pubErr error
	if len(pubs) > 0 {
		// Publish even if the caller went away: the items are durable and the cache should
		// say so. WithoutCancel keeps the caller's values (trace) but not its deadline.
		pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.PublishTimeout)
		pubErr = s.cache.Publish(pctx, pubs)
		pcancel()
		if pubErr != nil {
			s.enqueueRepair(pubs)
		}
	}
	if vetoed != nil {
		return outs, vetoed
	}
	for i := range outs {
		if outs[i].Err != nil {
			return outs, outs[i].Err
		}
	}
	if pubErr != nil {
		return outs, fmt.Errorf("%w: %w", ErrUnpublished, pubErr)
	}
	return outs, nil
}

// next is the item a change stores over cur: versions never go backwards and are at
// least the commit time in microseconds, so they keep increasing across deletion too.
func (s *Store) next(key Key, cur Item, ch Change) Item {
	return Item{Key: key, Version: max(cur.Version+1, s.clock.Now().UnixMicro()), Data: ch.Data, Subject: ch.Subject, ExpiresAt: ch.ExpiresAt}
}

// decide applies mutate to key i's current item and records what can be recorded before
// any write: the result, a mutation error, or "no change" (the current item stands). It
// returns the item to put, if any.
func decide[R any](s *Store, keys []Key, i int, cur Item, exists bool, mutate Mutation[R], out *Outcome[R]) (Item, bool) {
	if !exists {
		cur = Item{Key: keys[i]}
	}
	ch, r, err := mutate(i, Current{Item: cur, Exists: exists})
	out.Result = r
	out.Item, out.Exists, out.known, out.Written, out.Err = cur, exists, true, false, nil
	if err != nil {
		out.Err = err
		return Item{}, false
	}
	if !ch.Put {
		return Item{}, false
	}
	next := s.next(keys[i], cur, ch)
	if next.Size() > MaxItemBytes {
		out.Err = fmt.Errorf("%w: %w", ErrNotWritten, ErrItemTooLarge)
		return Item{}, false
	}
	return next, true
}

// writer is one update's identity in the cache.
type writer struct {
	token string
	ckeys []string
	// markedAt is taken before MARK was sent: the lease runs from no earlier.
	markedAt time.Time
}

// assert runs ASSERT for keys idx between the commit's read and its put (see the package
// doc): it puts the writer's token back where the cache lost it. On error the put must
// not happen.
func (s *Store) assert(ctx context.Context, w *writer, idx []int) error {
	keys := make([]string, len(idx))
	for j, i := range idx {
		keys[j] = w.ckeys[i]
	}
	lost, err := s.cache.Assert(ctx, keys, w.token, s.cfg.Lease-time.Since(w.markedAt))
	if err != nil {
		return fmt.Errorf("%w: cache: %w", ErrNotWritten, err)
	}
	if lost > 0 {
		s.cfg.Metrics.LostTokens(ctx, lost)
	}
	return nil
}

// commitOne commits key i: read, mutate, assert, conditional put, again on a lost race.
func commitOne[R any](ctx context.Context, s *Store, w *writer, keys []Key, i int, mutate Mutation[R], outs []Outcome[R]) {
	out := &outs[i]
	for attempt := 0; attempt < s.cfg.MaxCommitAttempts; attempt++ {
		items, err := s.db.GetItems(ctx, keys[i:i+1])
		if err != nil {
			// Earlier attempts lost their races, so nothing of this update was written.
			*out = Outcome[R]{Err: fmt.Errorf("%w: read: %w", ErrNotWritten, commitCause(ctx, err))}
			return
		}
		cur, exists := items[keys[i]]
		next, put := decide(s, keys, i, cur, exists, mutate, out)
		if !put {
			return
		}
		// Earlier attempts lost their races: nothing of this update is written yet. The
		// put's window counts from before its ASSERT.
		pctx, cancel := s.putWindow(ctx)
		if err := s.assert(ctx, w, []int{i}); err != nil {
			cancel()
			out.Err = err
			return
		}
		err = s.db.PutItem(pctx, next, cur.Version)
		err = commitCause(pctx, err)
		cancel()
		switch {
		case err == nil:
			out.Item, out.Exists, out.Written = next, true, true
			return
		case errors.Is(err, ErrConflict):
			continue
		case errors.Is(err, ErrItemTooLarge):
			out.known, out.Err = true, fmt.Errorf("%w: %w", ErrNotWritten, err)
			return
		default:
			out.known, out.Err = false, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
			return
		}
	}
	var zero R
	*out = Outcome[R]{Result: zero, Err: ErrContention}
}

// commitGroup commits many keys: one wave of batched reads, a mutation per key, and the
// changed items in transactions of up to MaxGroupItems puts and MaxGroupBytes. A
// transaction that loses a race stores nothing; its keys fall back to commitOne. With
// allOrNothing, a mutation's error on the first read stops every put, and is returned.
func commitGroup[R any](ctx context.Context, s *Store, w *writer, keys []Key, mutate Mutation[R], outs []Outcome[R], allOrNothing bool) error {
	current, err := s.db.GetItems(ctx, keys)
	if err != nil {
		for i := range outs {
			outs[i] = Outcome[R]{Err: fmt.Errorf("%w: read: %w", ErrNotWritten, commitCause(ctx, err))}
		}
		return nil
	}
	nexts := make([]Item, len(keys))
	prevs := make([]int64, len(keys))
	var pending []int
	for i, k := range keys {
		cur, exists := current[k]
		if next, put := decide(s, keys, i, cur, exists, mutate, &outs[i]); put {
			nexts[i], prevs[i] = next, cur.Version
			pending = append(pending, i)
		}
	}
	if allOrNothing {
		for i := range outs {
			if err := outs[i].Err; err != nil {
				// Nothing was put: every key keeps (and publishes) its current item.
				for _, j := range pending {
					outs[j].Err = fmt.Errorf("%w: another key's mutation failed", ErrNotWritten)
				}
				return err
			}
		}
	}
	var retry []int
	for _, part := range groups(pending, nexts) {
		batch := make([]Item, len(part))
		bprev := make([]int64, len(part))
		for j, i := range part {
			batch[j], bprev[j] = nexts[i], prevs[i]
		}
		// Each transaction has its own ASSERT, and its window counts from before it.
		pctx, cancel := s.putWindow(ctx)
		if err := s.assert(ctx, w, part); err != nil {
			cancel()
			for _, i := range part {
				outs[i].Err = err
			}
			continue
		}
		err := commitCause(pctx, s.db.PutItems(pctx, batch, bprev))
		cancel()
		switch {
		case err == nil:
			for _, i := range part {
				outs[i].Item, outs[i].Exists, outs[i].Written = nexts[i], true, true
			}
		case errors.Is(err, ErrConflict):
			retry = append(retry, part...)
		case errors.Is(err, ErrItemTooLarge):
			for _, i := range part {
				outs[i].Err = fmt.Errorf("%w: %w", ErrNotWritten, err)
			}
		default:
			for _, i := range part {
				outs[i].known, outs[i].Err = false, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
			}
		}
	}
	if len(retry) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.Parallelism)
	for _, i := range retry {
		g.Go(func() error {
			commitOne(gctx, s, w, keys, i, mutate, outs)
			return nil
		})
	}
	_ = g.Wait()
	return nil
}

// groups splits the pending keys into transactions within the database's limits.
func groups(pending []int, items []Item) [][]int {
	// Leave room for the request's own overhead inside the transaction limit.
	const budget = MaxGroupBytes - 64*1024
	var out [][]int
	start, bytes := 0, 0
	for j, i := range pending {
		sz := items[i].Size()
		if j > start && (j-start == MaxGroupItems || bytes+sz > budget) {
			out = append(out, pending[start:j])
			start, bytes = j, 0
		}
		bytes += sz
	}
	if start < len(pending) {
		out = append(out, pending[start:])
	}
	return out
}

// commitCause names the write timeout or the put window when it is why a database call
// failed, so callers can tell the server's own deadlines from the client's.
func commitCause(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); errors.Is(cause, ErrWriteTimeout) || errors.Is(cause, ErrPutWindow) {
		return fmt.Errorf("%w (%w)", err, cause)
	}
	return err
}

// putWindow is the context of one conditional put: it ends PutWindow from now, or with
// ctx. Call it before the ASSERT that precedes the put (see the package doc).
func (s *Store) putWindow(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, s.cfg.PutWindow, ErrPutWindow)
}

// ErrPutWindow marks a conditional put abandoned because it could not land within
// Config.PutWindow of its ASSERT.
var ErrPutWindow = errors.New("the put window elapsed")

// ErrWriteTimeout marks a database call cut short by the store's own write timeout
// rather than by the caller's deadline.
var ErrWriteTimeout = errors.New("the write timeout elapsed")
