// Package ingest implements the streaming and batch write lanes on top of the domain's
// lenient multi-row write, and the file readers behind `fsctl import`.
//
// Both lanes run requests concurrently up to a bound, while requests that touch the same
// entity run in the order they arrived, so per-key order is preserved. When the bound is
// reached the lane stops receiving, and gRPC flow control pushes back on the client:
// memory stays bounded whatever the client sends.
package ingest

import (
	"context"
	"sync"

	"github.com/dsfeatures/featurestore/featurestore"
)

// Writer is what the lanes need from the domain; *featurestore.Service implements it.
type Writer interface {
	WriteRowsLenient(ctx context.Context, set, field string, base int64, rows []featurestore.WriteRow) ([]featurestore.RowResult, error)
}

// sequencer runs tasks concurrently, at most cap at once, and runs tasks that share a key
// in submission order.
type sequencer struct {
	slots chan struct{}
	mu    sync.Mutex
	last  map[string]chan struct{}
	wg    sync.WaitGroup
}

func newSequencer(maxInFlight int) *sequencer {
	if maxInFlight <= 0 {
		maxInFlight = 8
	}
	return &sequencer{slots: make(chan struct{}, maxInFlight), last: map[string]chan struct{}{}}
}

// submit blocks until a slot is free (or ctx ends), then starts fn once every earlier task
// sharing one of keys has finished.
func (q *sequencer) submit(ctx context.Context, keys []string, fn func()) error {
	select {
	case q.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	done := make(chan struct{})
	var waits []chan struct{}
	q.mu.Lock()
	for _, k := range keys {
		if c, ok := q.last[k]; ok {
			waits = append(waits, c)
		}
		q.last[k] = done
	}
	q.mu.Unlock()
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		for _, c := range waits {
			<-c
		}
		fn()
		q.mu.Lock()
		for _, k := range keys {
			if q.last[k] == done {
				delete(q.last, k)
			}
		}
		q.mu.Unlock()
		close(done)
		<-q.slots
	}()
	return nil
}

// wait waits for every submitted task.
func (q *sequencer) wait() { q.wg.Wait() }

// rowKeys returns the distinct entity keys of rows in set.
func rowKeys(set string, rows []featurestore.WriteRow) []string {
	seen := make(map[string]bool, len(rows))
	keys := make([]string, 0, len(rows))
	for _, r := range rows {
		k := set + "#" + r.EntityID
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// receive runs recv in a goroutine and hands its messages over a channel, so that a lane
// can stop waiting for the client the moment a write fails: a stream must end (and tell
// the client) within the write timeout, not when the client next sends. The goroutine
// ends when recv fails, which gRPC guarantees once the RPC's handler has returned, or
// when ctx ends. errs receives recv's final error (io.EOF at a clean end).
func receive[T any](ctx context.Context, recv func() (T, error)) (<-chan T, <-chan error) {
	msgs := make(chan T)
	errs := make(chan error, 1)
	go func() {
		for {
			m, err := recv()
			if err != nil {
				errs <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				errs <- ctx.Err()
				return
			}
		}
	}()
	return msgs, errs
}
