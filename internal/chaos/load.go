package chaos

import (
	"context"
	"math"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/client"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// LaneKinds are the write lanes, each driven through a replica's gRPC server:
// WriteFeatures (on-demand), StreamWriteFeatures and BatchWriteFeatures.
var LaneKinds = []string{"ondemand", "stream", "batch"}

// writeRow writes one row through lane and returns its outcome for the history:
// "written", "stale", or "unknown" when the call failed (it may have applied) or when the
// batch lane retried the row, which makes a stale answer ambiguous.
func writeRow(ctx context.Context, api pb.FeatureStoreServiceClient, lane string, row *pb.FeatureRow) string {
	status := func(st pb.WriteStatus) string {
		switch st {
		case pb.WriteStatus_WRITE_STATUS_WRITTEN:
			return "written"
		case pb.WriteStatus_WRITE_STATUS_STALE:
			return "stale"
		}
		return "rejected" // never valid here: the checker flags it
	}
	switch lane {
	case "stream":
		st, err := api.StreamWriteFeatures(ctx)
		if err != nil {
			return "unknown"
		}
		if err := st.Send(&pb.StreamWriteFeaturesRequest{Sequence: 1, FeatureSet: "chaos", Rows: []*pb.FeatureRow{row}}); err != nil {
			return "unknown"
		}
		if err := st.CloseSend(); err != nil {
			return "unknown"
		}
		ack, err := st.Recv()
		if err != nil || ack.GetSequence() != 1 || len(ack.GetResults()) != 1 {
			return "unknown"
		}
		return status(ack.GetResults()[0].GetStatus())
	case "batch":
		st, err := api.BatchWriteFeatures(ctx)
		if err != nil {
			return "unknown"
		}
		if err := st.Send(&pb.BatchWriteFeaturesRequest{FeatureSet: "chaos", Rows: []*pb.FeatureRow{row}}); err != nil {
			return "unknown"
		}
		sum, err := st.CloseAndRecv()
		switch {
		case err != nil || sum.GetRowsWritten()+sum.GetRowsStale() != 1:
			return "unknown"
		case sum.GetRowsWritten() == 1:
			return "written"
		case sum.GetRowsRetried() > 0:
			return "unknown"
		}
		return "stale"
	default:
		res, err := api.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "chaos", Rows: []*pb.FeatureRow{row}})
		if err != nil || len(res.GetResults()) != 1 {
			return "unknown"
		}
		return status(res.GetResults()[0].GetStatus())
	}
}

// recorder collects the history of a run.
type recorder struct {
	start   time.Time
	mu      sync.Mutex
	history []op
	lanes   map[string]int
}

func (r *recorder) now() int64 { return time.Since(r.start).Nanoseconds() }

func (r *recorder) add(o op) {
	r.mu.Lock()
	r.history = append(r.history, o)
	r.mu.Unlock()
}

// drive runs the writers, the readers and the fault injector for the run's duration and
// returns the history and the writes per lane.
func (e *environment) drive(ctx context.Context, rng *rand.Rand, start time.Time) ([]op, map[string]int) {
	cfg := e.cfg
	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	rec := &recorder{start: start, lanes: map[string]int{}}
	var clock, values atomic.Int64 // event times (mostly increasing, sometimes older) and values
	loadCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Writers; w++ {
		r := rand.New(rand.NewSource(rng.Int63()))
		rp := e.replicas[w%len(e.replicas)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for loadCtx.Err() == nil {
				key := keys[r.Intn(len(keys))]
				if r.Intn(12) == 0 {
					call := rec.now()
					dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					resp, err := rp.api.DeleteEntities(dctx, &pb.DeleteEntitiesRequest{FeatureSet: "chaos", EntityIds: []string{key}})
					cancel()
					o := op{Key: key, Client: w, Input: deleteIn{}, Call: call, Return: rec.now()}
					if err != nil || len(resp.GetResults()) != 1 {
						o.Output, o.Return = deleteOut{Unknown: true}, math.MaxInt64
					} else {
						o.Output = deleteOut{Existed: resp.GetResults()[0].GetExisted()}
					}
					rec.add(o)
					continue
				}
				t := clock.Add(1)
				if r.Intn(5) == 0 {
					t -= int64(r.Intn(20)) // an older event: STALE unless it is new to the key
				}
				in := writeIn{T: t, V: values.Add(1)}
				row := client.Row(key, time.UnixMicro(1_000_000_000+t), map[string]*pb.Value{"v": client.Int64(in.V)})
				lane := LaneKinds[r.Intn(len(LaneKinds))]
				call := rec.now()
				wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				status := writeRow(wctx, rp.api, lane, row)
				cancel()
				o := op{Key: key, Client: w, Input: in, Output: writeOut{Status: status}, Call: call, Return: rec.now()}
				if status == "unknown" {
					o.Return = math.MaxInt64 // it may apply at any time from its call on
				}
				rec.add(o)
				rec.mu.Lock()
				rec.lanes[lane]++
				rec.mu.Unlock()
				if cfg.WriterPause > 0 {
					time.Sleep(time.Duration(r.Int63n(int64(cfg.WriterPause))))
				}
			}
		}()
	}
	for rd := 0; rd < cfg.Readers; rd++ {
		r := rand.New(rand.NewSource(rng.Int63()))
		rp := e.replicas[rd%len(e.replicas)]
		clientID := cfg.Writers + rd
		wg.Add(1)
		go func() {
			defer wg.Done()
			for loadCtx.Err() == nil {
				n := 1 + r.Intn(min(3, len(keys)))
				ks := make([]string, 0, n)
				for _, i := range r.Perm(len(keys))[:n] {
					ks = append(ks, keys[i])
				}
				call := rec.now()
				rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				resp, err := rp.api.GetFeatures(rctx, &pb.GetFeaturesRequest{Features: []string{"chaos:v"}, EntityIds: ks})
				cancel()
				ret := rec.now()
				if err != nil || len(resp.GetResults()) != len(ks) {
					continue // a failed read observed nothing
				}
				for i, k := range ks {
					out := readOut{}
					if er := resp.GetResults()[i]; er.GetStatuses()[0] == pb.FeatureStatus_FEATURE_STATUS_PRESENT {
						out = readOut{Found: true, T: er.GetEventTimes()[0].AsTime().UnixMicro() - 1_000_000_000, V: er.GetValues()[0].GetInt64Value()}
					}
					rec.add(op{Key: k, Client: clientID, Output: out, Call: call, Return: ret})
				}
				if cfg.ReaderPause > 0 {
					time.Sleep(time.Duration(r.Int63n(int64(cfg.ReaderPause))))
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.injector.run(loadCtx, rand.New(rand.NewSource(rng.Int63())), cfg.Faults, cfg.FaultEvery)
	}()
	wg.Wait()
	return rec.history, rec.lanes
}
