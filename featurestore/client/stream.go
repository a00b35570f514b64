package client

import (
	"context"
	"errors"
	"sync"
	"time"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// StreamOptions configure a StreamWriter.
type StreamOptions struct {
	// MaxUnacked bounds the requests sent and not yet acknowledged; Send blocks beyond it
	// (default 64).
	MaxUnacked int
	// OnAck, if set, is called with every acknowledgement, from the writer's goroutine.
	OnAck func(*pb.StreamWriteFeaturesResponse)
	// Reconnects bounds consecutive failed reconnects before the writer gives up (default 10).
	Reconnects int
}

// StreamWriter writes on the streaming lane. It keeps every request until it is
// acknowledged; when the stream breaks it reconnects with backoff and resends them in
// order. Resending is safe: a row that had landed merges as a no-op. Use it from one
// goroutine.
type StreamWriter struct {
	c    *Client
	ctx  context.Context
	opts StreamOptions

	mu      sync.Mutex
	cond    *sync.Cond
	unacked []*pb.StreamWriteFeaturesRequest // in sequence order
	seq     int64
	stream  pb.FeatureStoreService_StreamWriteFeaturesClient
	gen     int // bumped per stream, so a stale receiver cannot touch a new stream
	err     error
	closed  bool
	// Reconnected counts successful reconnects.
	Reconnected int
}

// NewStreamWriter opens a stream. It ends when ctx does.
func (c *Client) NewStreamWriter(ctx context.Context, opts StreamOptions) (*StreamWriter, error) {
	if opts.MaxUnacked <= 0 {
		opts.MaxUnacked = 64
	}
	if opts.Reconnects <= 0 {
		opts.Reconnects = 10
	}
	w := &StreamWriter{c: c, ctx: ctx, opts: opts}
	w.cond = sync.NewCond(&w.mu)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.connectLocked(); err != nil {
		return nil, err
	}
	return w, nil
}

// connectLocked opens a stream, starts its receiver and resends everything unacked.
func (w *StreamWriter) connectLocked() error {
	s, err := w.c.fs.StreamWriteFeatures(w.ctx)
	if err != nil {
		return err
	}
	w.stream = s
	w.gen++
	gen := w.gen
	go w.receive(s, gen)
	for _, req := range w.unacked {
		if err := s.Send(req); err != nil {
			return nil // the receiver sees the failure and reconnects
		}
	}
	return nil
}

func (w *StreamWriter) receive(s pb.FeatureStoreService_StreamWriteFeaturesClient, gen int) {
	for {
		resp, err := s.Recv()
		w.mu.Lock()
		if gen != w.gen {
			w.mu.Unlock()
			return
		}
		if err != nil {
			if w.closed && len(w.unacked) == 0 {
				w.mu.Unlock()
				return
			}
			w.reconnectLocked(err)
			w.mu.Unlock()
			return
		}
		for i, req := range w.unacked {
			if req.GetSequence() == resp.GetSequence() {
				w.unacked = append(w.unacked[:i], w.unacked[i+1:]...)
				break
			}
		}
		w.cond.Broadcast()
		w.mu.Unlock()
		if w.opts.OnAck != nil {
			w.opts.OnAck(resp)
		}
	}
}

// reconnectLocked replaces a broken stream, retrying with backoff.
func (w *StreamWriter) reconnectLocked(cause error) {
	backoff := w.c.opts.BaseBackoff
	for attempt := 1; ; attempt++ {
		if w.ctx.Err() != nil || attempt > w.opts.Reconnects {
			w.err = errors.Join(errors.New("stream writer gave up reconnecting"), cause, w.ctx.Err())
			w.cond.Broadcast()
			return
		}
		w.mu.Unlock()
		select {
		case <-w.ctx.Done():
		case <-time.After(backoff):
		}
		w.mu.Lock()
		backoff = min(2*backoff, 2*time.Second)
		if err := w.connectLocked(); err == nil {
			w.Reconnected++
			return
		} else {
			cause = err
		}
	}
}

// Send queues rows for set and sends them; it returns the request's sequence. It blocks
// while MaxUnacked requests are unacknowledged, and fails once the writer gave up.
func (w *StreamWriter) Send(set string, rows ...*pb.FeatureRow) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.unacked) >= w.opts.MaxUnacked && w.err == nil {
		w.cond.Wait()
	}
	if w.err != nil {
		return 0, w.err
	}
	w.seq++
	req := &pb.StreamWriteFeaturesRequest{Sequence: w.seq, FeatureSet: set, Rows: rows}
	w.unacked = append(w.unacked, req)
	// A failed send surfaces in the receiver, which reconnects and resends.
	_ = w.stream.Send(req)
	return w.seq, nil
}

// Unacked returns how many requests await acknowledgement.
func (w *StreamWriter) Unacked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.unacked)
}

// Close waits until every request is acknowledged, then closes the stream.
func (w *StreamWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for len(w.unacked) > 0 && w.err == nil {
		w.cond.Wait()
	}
	if w.err != nil {
		return w.err
	}
	return w.stream.CloseSend()
}
