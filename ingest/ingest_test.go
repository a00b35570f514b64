package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dsfeatures/featurestore/featurestore"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// recordingWriter is a unit-test fake: it records, per key, the order rows arrive in and
// sleeps a random while so that reordering would show. The lanes' real behaviour is tested
// end to end in cmd/featurestore against the real stack.
type recordingWriter struct {
	mu       sync.Mutex
	order    map[string][]int64
	inFlight int
	maxSeen  int
	fail     error
	// failFirst makes that many calls fail with an unknown outcome before any succeeds.
	failFirst int
	calls     int
}

func (w *recordingWriter) WriteRowsLenient(ctx context.Context, set, field string, base int64, rows []featurestore.WriteRow) ([]featurestore.RowResult, error) {
	w.mu.Lock()
	w.calls++
	w.inFlight++
	w.maxSeen = max(w.maxSeen, w.inFlight)
	w.mu.Unlock()
	time.Sleep(time.Duration(rand.Intn(2000)) * time.Microsecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFlight--
	if w.fail != nil {
		return nil, w.fail
	}
	if w.failFirst > 0 {
		w.failFirst--
		return nil, featurestore.Unavailable("database unavailable; the rows may have been written", errors.New("timeout"))
	}
	out := make([]featurestore.RowResult, len(rows))
	for i, r := range rows {
		w.order[r.EntityID] = append(w.order[r.EntityID], r.Values["n"].Int)
		out[i] = featurestore.RowResult{Status: featurestore.Written}
		if r.EntityID == "" {
			out[i] = featurestore.RowResult{Status: featurestore.Rejected, Error: fmt.Sprintf("%s[%d].entity_id: is required", field, base+int64(i))}
		}
	}
	return out, nil
}

func TestStreamKeepsPerKeyOrderWithBoundedConcurrency(t *testing.T) {
	w := &recordingWriter{order: map[string][]int64{}}
	const n = 300
	i := 0
	var acks []int64
	err := Stream(context.Background(), w, func() (StreamRequest, error) {
		if i == n {
			return StreamRequest{}, io.EOF
		}
		i++
		key := fmt.Sprintf("k%d", i%3)
		return StreamRequest{Sequence: int64(i), Set: "s", Rows: []featurestore.WriteRow{{EntityID: key, Values: map[string]featurestore.Value{"n": {Int: int64(i)}}}}}, nil
	}, func(a StreamAck) error { acks = append(acks, a.Sequence); return nil }, StreamOptions{MaxInFlight: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != n {
		t.Fatalf("%d acks, want %d", len(acks), n)
	}
	for k, got := range w.order {
		for j := 1; j < len(got); j++ {
			if got[j] < got[j-1] {
				t.Fatalf("key %s written out of order: %v", k, got)
			}
		}
	}
	if w.maxSeen > 4 || w.maxSeen < 2 {
		t.Fatalf("max concurrent writes %d, want 2..4", w.maxSeen)
	}
}

func TestStreamStopsOnWriteFailure(t *testing.T) {
	boom := errors.New("boom")
	w := &recordingWriter{order: map[string][]int64{}, fail: boom}
	i := 0
	err := Stream(context.Background(), w, func() (StreamRequest, error) {
		i++
		return StreamRequest{Sequence: int64(i), Set: "s", Rows: []featurestore.WriteRow{{EntityID: "k"}}}, nil
	}, func(StreamAck) error { t.Error("acked a failed write"); return nil }, StreamOptions{})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
}

func TestBatchPositions(t *testing.T) {
	w := &recordingWriter{order: map[string][]int64{}}
	chunks := [][]featurestore.WriteRow{make([]featurestore.WriteRow, 120), make([]featurestore.WriteRow, 80)}
	for c := range chunks {
		for i := range chunks[c] {
			chunks[c][i] = featurestore.WriteRow{EntityID: fmt.Sprintf("e%d", i)}
		}
	}
	chunks[1][33].EntityID = "" // row 153 of the batch
	next := 0
	sum, err := Batch(context.Background(), w, func() (BatchChunk, error) {
		if next == len(chunks) {
			return BatchChunk{}, io.EOF
		}
		next++
		return BatchChunk{Set: "s", Rows: chunks[next-1]}, nil
	}, BatchOptions{SubChunk: 50})
	if err != nil {
		t.Fatal(err)
	}
	want := BatchSummary{Written: 199, Rejected: 1, Errors: []BatchError{{Row: 153, EntityID: "", Error: "rows[153].entity_id: is required"}}}
	if diff := cmp.Diff(want, sum); diff != "" {
		t.Fatalf("summary (-want +got):\n%s", diff)
	}
}

// A sub-chunk whose write failed with an unknown outcome is written again, and the summary
// says how many rows that concerned, since their stale answers may hide an earlier apply.
func TestBatchRetriesUnknownOutcomes(t *testing.T) {
	w := &recordingWriter{order: map[string][]int64{}, failFirst: 1}
	rows := make([]featurestore.WriteRow, 120)
	for i := range rows {
		rows[i] = featurestore.WriteRow{EntityID: fmt.Sprintf("e%d", i)}
	}
	sent := false
	sum, err := Batch(context.Background(), w, func() (BatchChunk, error) {
		if sent {
			return BatchChunk{}, io.EOF
		}
		sent = true
		return BatchChunk{Set: "s", Rows: rows}, nil
	}, BatchOptions{SubChunk: 50, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Written != 120 || sum.Retried != 50 {
		t.Fatalf("summary %+v, want 120 written and the first 50 rows retried", sum)
	}
}

// TestBatchRetryLimits: a sub-chunk whose outcome stays unknown is tried 1 + Retries times
// and then fails the batch with the last error; an error a retry cannot fix is not retried.
func TestBatchRetryLimits(t *testing.T) {
	tests := []struct {
		name        string
		w           *recordingWriter
		wantCalls   int
		wantRetried int64
		wantKind    featurestore.Kind
	}{
		{"unknown outcomes retried, then given up", &recordingWriter{failFirst: 10}, 3, 20, featurestore.KindUnavailable},
		{"invalid not retried", &recordingWriter{fail: featurestore.Invalid("rows", "no")}, 1, 0, featurestore.KindInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.w.order = map[string][]int64{}
			sent := false
			sum, err := Batch(context.Background(), tc.w, func() (BatchChunk, error) {
				if sent {
					return BatchChunk{}, io.EOF
				}
				sent = true
				return BatchChunk{Set: "s", Rows: make([]featurestore.WriteRow, 10)}, nil
			}, BatchOptions{Retries: 2})
			if featurestore.ErrorKind(err) != tc.wantKind {
				t.Fatalf("err %v, want kind %v", err, tc.wantKind)
			}
			if tc.w.calls != tc.wantCalls || sum.Retried != tc.wantRetried || sum.Written != 0 {
				t.Fatalf("%d calls, summary %+v; want %d calls, %d retried, none written", tc.w.calls, sum, tc.wantCalls, tc.wantRetried)
			}
		})
	}
}

var fileSet = &pb.FeatureSet{Name: "s", EntityType: "u", Features: []*pb.FeatureSpec{
	{Name: "n", Type: pb.ValueType_VALUE_TYPE_INT64},
	{Name: "x", Type: pb.ValueType_VALUE_TYPE_DOUBLE},
	{Name: "tags", Type: pb.ValueType_VALUE_TYPE_STRING_LIST},
}}

func readAll(t *testing.T, src Source) []*pb.FeatureRow {
	t.Helper()
	var out []*pb.FeatureRow
	for {
		r, err := src.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
}

func TestFileFormats(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	want := []*pb.FeatureRow{
		{EntityId: "a", SubjectId: "s1", EventTime: timestamppb.New(at), Values: map[string]*pb.Value{
			"n": {Kind: &pb.Value_Int64Value{Int64Value: 7}}, "x": {Kind: &pb.Value_DoubleValue{DoubleValue: 1.5}},
			"tags": {Kind: &pb.Value_StringListValue{StringListValue: &pb.StringList{Values: []string{"p", "q"}}}}}},
		{EntityId: "b", EventTime: timestamppb.New(now), Values: map[string]*pb.Value{"n": {Kind: &pb.Value_Int64Value{Int64Value: -1}}}},
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	type prow struct {
		EntityID  string   `parquet:"entity_id"`
		SubjectID *string  `parquet:"subject_id,optional"`
		EventTime *int64   `parquet:"event_time,optional,timestamp(microsecond)"`
		N         int64    `parquet:"n"`
		X         *float64 `parquet:"x,optional"`
		Tags      []string `parquet:"tags,list"`
	}
	s1, us, x := "s1", at.UnixMicro(), 1.5
	pq := filepath.Join(dir, "rows.parquet")
	f, err := os.Create(pq)
	if err != nil {
		t.Fatal(err)
	}
	pw := parquet.NewGenericWriter[prow](f)
	if _, err := pw.Write([]prow{{EntityID: "a", SubjectID: &s1, EventTime: &us, N: 7, X: &x, Tags: []string{"p", "q"}}, {EntityID: "b", N: -1}}); err != nil {
		t.Fatal(err)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tests := []struct {
		name, path string
	}{
		{"csv", write("rows.csv", "entity_id,subject_id,event_time,n,x,tags\na,s1,2026-01-02T03:04:05Z,7,1.5,\"p,q\"\nb,,,-1,,\n")},
		{"jsonl", write("rows.jsonl", `{"entity_id":"a","subject_id":"s1","event_time":1767323045,"n":7,"x":1.5,"tags":["p","q"]}`+"\n\n"+`{"entity_id":"b","n":-1,"x":null}`+"\n")},
		{"parquet", pq},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := Open(tc.path, "", fileSet, now)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			got := readAll(t, src)
			if tc.name == "parquet" {
				// An empty list column reads as an empty list, not as absent.
				delete(got[1].Values, "tags")
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if done, total := src.Progress(); done == 0 || (total > 0 && done > total) {
				t.Errorf("progress %d of %d", done, total)
			}
		})
	}
}

func TestFileErrorsNameTheProblem(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, file, content, want string
	}{
		{"unknown column", "a.csv", "entity_id,nope\na,1\n", `column "nope" is not a feature`},
		{"no entity column", "b.csv", "n\n1\n", "no entity_id column"},
		{"bad number", "c.csv", "entity_id,n\na,1\nb,x\n", "line 3: n: want an integer"},
		{"bad json", "d.jsonl", "{\"entity_id\":\"a\"}\n{oops\n", "line 2:"},
		{"unknown extension", "e.txt", "", "pass -format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.file)
			os.WriteFile(p, []byte(tc.content), 0o644)
			src, err := Open(p, "", fileSet, time.Now())
			if err == nil {
				defer src.Close()
				for err == nil {
					_, err = src.Next()
				}
			}
			if err == nil || errors.Is(err, io.EOF) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func FuzzParseEventTime(f *testing.F) {
	for _, s := range []string{"2026-01-02T03:04:05Z", "1767323045.5", "-1", "1e300", "NaN", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseEventTime(s) // must not panic
	})
}

func FuzzJSONLRow(f *testing.F) {
	f.Add(`{"entity_id":"a","n":1,"x":2.5,"tags":["a"]}`)
	f.Add(`{"entity_id":1}`)
	f.Add(`{"event_time":"x"}`)
	types := FeatureTypes(fileSet)
	f.Fuzz(func(t *testing.T, line string) {
		src := NewJSONL(strings.NewReader(line), 0, types, time.Unix(0, 0))
		row, err := src.Next()
		if err == nil && row == nil {
			t.Fatal("nil row without error")
		}
	})
}

// Progress moves with the rows parsed, not with the bytes read ahead: halfway through the
// rows of a file, it reports about half of the file.
func TestProgressFollowsParsedRows(t *testing.T) {
	dir := t.TempDir()
	const rows = 20000
	var csvB, jsonB strings.Builder
	csvB.WriteString("entity_id,n\n")
	for i := 0; i < rows; i++ {
		fmt.Fprintf(&csvB, "e%d,%d\n", i, i)
		fmt.Fprintf(&jsonB, `{"entity_id":"e%d","n":%d}`+"\n", i, i)
	}
	for _, tc := range []struct{ name, content string }{{"rows.csv", csvB.String()}, {"rows.jsonl", jsonB.String()}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			src, err := Open(path, "", fileSet, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			for i := 0; i < rows/2; i++ {
				if _, err := src.Next(); err != nil {
					t.Fatal(err)
				}
			}
			done, total := src.Progress()
			if f := float64(done) / float64(total); f < 0.45 || f > 0.55 {
				t.Fatalf("after half the rows, progress %d of %d (%.2f)", done, total, f)
			}
			for {
				if _, err := src.Next(); err != nil {
					break
				}
			}
			if done, total := src.Progress(); done != total {
				t.Fatalf("at the end, progress %d of %d", done, total)
			}
		})
	}
}
