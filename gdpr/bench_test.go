package gdpr_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/gdpr"
)

// BenchmarkDeletionUnderLoad measures a GetFeatures load (4 closed-loop readers over 200
// cached entities) for a while without deletion, then while a worker erases a subject's
// 2000 rows at its configured rate, and reports items deleted per second and the load's
// p99 in both phases (same run, same stack).
func BenchmarkDeletionUnderLoad(b *testing.B) {
	for i := 0; i < b.N; i++ {
		benchDeletion(b)
	}
}

func benchDeletion(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	if _, err := e.svc.ApplyFeatureSet(ctx, featurestore.FeatureSet{Name: "profile", EntityType: "user", PersonalData: true,
		Features: []featurestore.FeatureSpec{{Name: "n", Type: featurestore.TypeInt64}}}); err != nil {
		b.Fatal(err)
	}
	const victims, readers = 2000, 200
	var rows []featurestore.WriteRow
	for i := 0; i < victims; i++ {
		rows = append(rows, featurestore.WriteRow{EntityID: fmt.Sprintf("v%d", i), SubjectID: "victim", EventTime: time.Now().Add(-time.Minute),
			Values: map[string]featurestore.Value{"n": {Type: featurestore.TypeInt64, Int: int64(i)}}})
	}
	ids := make([]string, readers)
	for i := range ids {
		ids[i] = fmt.Sprintf("r%d", i)
		rows = append(rows, featurestore.WriteRow{EntityID: ids[i], SubjectID: fmt.Sprintf("s%d", i), EventTime: time.Now().Add(-time.Minute),
			Values: map[string]featurestore.Value{"n": {Type: featurestore.TypeInt64, Int: int64(i)}}})
	}
	for s := 0; s < len(rows); s += 100 {
		if _, err := e.svc.WriteFeatures(ctx, "profile", rows[s:min(s+100, len(rows))]); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(fsCfg.Lease + 100*time.Millisecond)
	if _, err := e.svc.GetFeatures(ctx, []string{"profile:n"}, ids); err != nil {
		b.Fatal(err)
	}
	load := func(d time.Duration) []time.Duration {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		end := time.Now().Add(d)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := w; time.Now().Before(end); k++ {
					batch := []string{ids[k%readers], ids[(k*7)%readers], ids[(k*13)%readers]}
					t0 := time.Now()
					if _, err := e.svc.GetFeatures(ctx, []string{"profile:n"}, batch); err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return lat
	}
	p99 := func(l []time.Duration) float64 {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		return float64(l[len(l)*99/100].Microseconds())
	}
	quiet := load(5 * time.Second)

	g, _ := e.worker(b, gdpr.Config{Rate: 1000})
	j, err := g.DeleteSubject(ctx, "victim", "bench", "bench")
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var busy []time.Duration
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			busy = append(busy, load(500*time.Millisecond)...)
		}
	}()
	var done gdpr.Job
	for {
		done, err = g.GetDeletion(ctx, j.ID)
		if err != nil {
			b.Fatal(err)
		}
		if done.State == gdpr.Done {
			break
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("deletion not done: %+v", done)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	// The job's own clock: from request to completion, including the final quiet period.
	elapsed := done.CompletedAt.Sub(done.RequestedAt).Seconds()
	b.ReportMetric(float64(done.ItemsDeleted)/elapsed, "items-deleted/s")
	b.ReportMetric(p99(quiet), "load-p99-us-without")
	b.ReportMetric(p99(busy), "load-p99-us-during")
	b.ReportMetric(p99(busy)/p99(quiet), "p99-ratio")
}
