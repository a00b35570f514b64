package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// ErrWriterClosed is returned by Send after Close.
var ErrWriterClosed = errors.New("stream writer is closed")

// StreamOptions configure a StreamWriter.
type StreamOptions struct {
	// MaxUnacked bounds the requests sent and not yet acknowledged; Send blocks beyond it
	// (default 64).
	MaxUnacked int
	// OnAck, if set, is called once per acknowledged request (a request resent after a
	// reconnect is still reported once), one call at a time, from the writer's goroutines.
	// It must not call the writer's Send or Close.
	OnAck func(*pb.StreamWriteFeaturesResponse)
	// Reconnects bounds consecutive reconnects that deliver no acknowledgement before the
	// writer gives up (default 10).
	Reconnects int
}

// StreamWriter writes on the streaming lane. It keeps every request until it is
// acknowledged. When the server ends the stream with UNAVAILABLE, or ends it while
// requests are unacknowledged, the writer reconnects with backoff and resends them in
// sequence order before anything newer. Resending is safe: a row that had landed merges
// as a no-op. Any other error ends the writer: Send and Close then return it.
//
// Send and Close must be called from one goroutine; Unacked and Reconnected from any.
type StreamWriter struct {
	c    *Client
	opts StreamOptions
	// ctx is the writer's own context (derived from NewStreamWriter's); Close and a fatal
	// error cancel it, which ends every stream and goroutine the writer started.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // receivers (which also reconnect)
	ackMu  sync.Mutex     // serializes OnAck calls

	// sendMu orders what goes on a stream: a reconnect's resends, then new requests.
	// Lock order: sendMu before mu.
	sendMu sync.Mutex

	mu         sync.Mutex
	cond       *sync.Cond // signalled when unacked shrinks or err is set
	unacked    []*pb.StreamWriteFeaturesRequest
	seq        int64
	cur        *streamConn
	err        error
	closing    bool
	reconnects int // successful reconnects
	failures   int // reconnects since the last acknowledgement
}

// streamConn is one gRPC stream of a StreamWriter.
type streamConn struct {
	s      pb.FeatureStoreService_StreamWriteFeaturesClient
	cancel context.CancelFunc
	done   chan struct{} // closed when its receiver returns
	// sentUpTo is the highest sequence sent on this stream; guarded by sendMu.
	sentUpTo int64
}

// NewStreamWriter opens a stream. The writer and its stream end when ctx does; until
// then Close must be called to release them.
func (c *Client) NewStreamWriter(ctx context.Context, opts StreamOptions) (*StreamWriter, error) {
	if opts.MaxUnacked <= 0 {
		opts.MaxUnacked = 64
	}
	if opts.Reconnects <= 0 {
		opts.Reconnects = 10
	}
	w := &StreamWriter{c: c, opts: opts}
	w.ctx, w.cancel = context.WithCancel(ctx)
	w.cond = sync.NewCond(&w.mu)
	if err := w.connect(); err != nil {
		w.cancel()
		return nil, fmt.Errorf("open write stream: %w", err)
	}
	return w, nil
}

// connect opens a stream, makes it current, starts its receiver and resends every
// unacknowledged request on it.
func (w *StreamWriter) connect() error {
	sctx, scancel := context.WithCancel(w.ctx)
	s, err := w.c.fs.StreamWriteFeatures(sctx)
	if err != nil {
		scancel()
		return err
	}
	conn := &streamConn{s: s, cancel: scancel, done: make(chan struct{})}
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	w.mu.Lock()
	old := w.cur
	w.cur = conn
	pending := slices.Clone(w.unacked)
	w.mu.Unlock()
	if old != nil {
		old.cancel()
	}
	w.wg.Add(1)
	go w.receive(conn)
	for _, req := range pending {
		conn.sentUpTo = req.GetSequence()
		if err := s.Send(req); err != nil {
			break // the stream is over; its receiver sees why and reconnects
		}
	}
	return nil
}

// receive reads acknowledgements from conn until it ends, then reconnects or fails the
// writer.
func (w *StreamWriter) receive(conn *streamConn) {
	defer w.wg.Done()
	defer close(conn.done)
	for {
		resp, err := conn.s.Recv()
		if err != nil {
			w.ended(conn, err)
			return
		}
		w.mu.Lock()
		i := slices.IndexFunc(w.unacked, func(r *pb.StreamWriteFeaturesRequest) bool { return r.GetSequence() == resp.GetSequence() })
		if i >= 0 {
			w.unacked = slices.Delete(w.unacked, i, i+1)
			w.failures = 0
			w.cond.Broadcast()
		}
		w.mu.Unlock()
		// An ack of a request already acknowledged on an earlier stream is not news.
		if i >= 0 && w.opts.OnAck != nil {
			w.ackMu.Lock()
			w.opts.OnAck(resp)
			w.ackMu.Unlock()
		}
	}
}

// ended handles the end of conn's stream with err.
func (w *StreamWriter) ended(conn *streamConn, err error) {
	w.mu.Lock()
	switch {
	case w.cur != conn || w.err != nil:
		// Replaced by a newer stream, or the writer already failed.
		w.mu.Unlock()
		return
	case w.closing && len(w.unacked) == 0:
		w.mu.Unlock()
		return
	case w.ctx.Err() != nil:
		w.failLocked(fmt.Errorf("stream writer: %w", w.ctx.Err()))
		w.mu.Unlock()
		return
	case !errors.Is(err, io.EOF) && status.Code(err) != codes.Unavailable:
		w.failLocked(fmt.Errorf("stream writer: %w", err))
		w.mu.Unlock()
		return
	}
	if len(w.unacked) == 0 {
		// An idle stream that ends (the server recycling connections) is not a failure.
		w.failures = 0
	}
	w.mu.Unlock()
	w.reconnect(err)
}

// reconnect replaces the current stream, with backoff, until it succeeds, the writer's
// context ends, or Reconnects attempts in a row brought no acknowledgement.
func (w *StreamWriter) reconnect(cause error) {
	b := w.c.newBackoff()
	for {
		w.mu.Lock()
		if w.closing && len(w.unacked) == 0 {
			// Close has everything it waits for; a new stream would only be closed again.
			w.mu.Unlock()
			return
		}
		w.failures++
		if w.failures > w.opts.Reconnects {
			w.failLocked(fmt.Errorf("stream writer: gave up after %d reconnects without an acknowledgement: %w", w.opts.Reconnects, cause))
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		t := time.NewTimer(b.NextBackOff())
		select {
		case <-w.ctx.Done():
			t.Stop()
			w.mu.Lock()
			w.failLocked(fmt.Errorf("stream writer: %w (while reconnecting after: %v)", w.ctx.Err(), cause))
			w.mu.Unlock()
			return
		case <-t.C:
		}
		if err := w.connect(); err != nil {
			cause = err
			continue
		}
		w.mu.Lock()
		w.reconnects++
		w.mu.Unlock()
		return
	}
}

// failLocked ends the writer with err; w.mu is held.
func (w *StreamWriter) failLocked(err error) {
	if w.err == nil {
		w.err = err
	}
	w.cancel()
	w.cond.Broadcast()
}

// Send queues rows for set, sends them, and returns the request's sequence. It blocks
// while MaxUnacked requests are unacknowledged. It fails once the writer has failed
// (with the reason) or after Close (ErrWriterClosed). A nil error means the request is
// queued: it will be acknowledged, or Close will report why not.
func (w *StreamWriter) Send(set string, rows ...*pb.FeatureRow) (int64, error) {
	w.mu.Lock()
	for len(w.unacked) >= w.opts.MaxUnacked && w.err == nil {
		w.cond.Wait()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return 0, err
	}
	if w.closing {
		w.mu.Unlock()
		return 0, ErrWriterClosed
	}
	w.seq++
	req := &pb.StreamWriteFeaturesRequest{Sequence: w.seq, FeatureSet: set, Rows: rows}
	w.unacked = append(w.unacked, req)
	w.mu.Unlock()

	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	w.mu.Lock()
	conn := w.cur
	w.mu.Unlock()
	// A reconnect that took the stream over after the append has resent it already.
	if req.GetSequence() > conn.sentUpTo {
		conn.sentUpTo = req.GetSequence()
		// A failed send ends the stream; its receiver reconnects and resends.
		_ = conn.s.Send(req)
	}
	return req.GetSequence(), nil
}

// Unacked returns how many requests await acknowledgement.
func (w *StreamWriter) Unacked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.unacked)
}

// Reconnected returns how many times the writer replaced a broken stream.
func (w *StreamWriter) Reconnected() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reconnects
}

// Close waits until every request is acknowledged, closes the stream, waits for the
// server to end it, and releases the writer. It returns nil only if every request sent
// was acknowledged; otherwise the reason the writer failed.
func (w *StreamWriter) Close() error {
	w.mu.Lock()
	w.closing = true
	for len(w.unacked) > 0 && w.err == nil {
		w.cond.Wait()
	}
	err := w.err
	w.mu.Unlock()
	if err == nil {
		w.sendMu.Lock()
		w.mu.Lock()
		conn := w.cur
		w.mu.Unlock()
		_ = conn.s.CloseSend()
		w.sendMu.Unlock()
		// The server ends the stream once it has read the half-close.
		select {
		case <-conn.done:
		case <-w.ctx.Done():
		}
	}
	w.cancel()
	w.wg.Wait()
	return err
}
