package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vk "github.com/valkey-io/valkey-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dsfeatures/featurestore/featurestore/client"
	"github.com/dsfeatures/featurestore/internal/devstack"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// TestGdprRaceAcrossReplicas: writers of two subjects race a deletion of one of them on
// shared entities, through three replicas of the server. After DONE no value of the
// erased subject is served by any replica, also after a ValKey FLUSHALL, and every
// acknowledged write of the other subject is still served.
func TestGdprRaceAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	cache, err := devstack.StartValkey(ctx, shared.ValkeyBin, devstack.ValkeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Stop)
	env := map[string]string{"FS_VALKEY_ADDRS": cache.Addr, "FS_TABLE_PREFIX": devstack.UniquePrefix(t.Name()),
		"FS_GDPR_RATE": "1000", "FS_GDPR_INDEX_SETTLE": "500ms", "FS_METRICS_LISTEN": "127.0.0.1:0"}
	var clients []*client.Client
	var addrs []string
	for i := 0; i < 3; i++ {
		ts := startServerAt(t, env)
		addrs = append(addrs, ts.addr)
		c, err := client.Dial(ts.addr, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clients = append(clients, c)
	}
	if _, err := clients[0].API().ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: &pb.FeatureSet{
		Name: "p", EntityType: "user", PersonalData: true, Features: []*pb.FeatureSpec{
			{Name: "a", Type: pb.ValueType_VALUE_TYPE_INT64}, {Name: "b", Type: pb.ValueType_VALUE_TYPE_INT64}},
	}}); err != nil {
		t.Fatal(err)
	}
	const entities = 12
	ids := make([]string, entities)
	for i := range ids {
		ids[i] = fmt.Sprintf("e%d", i)
	}
	// Subject "anna" writes a < 0 with event times before the deletion (so that after it
	// her rows are refused for good); "ben" writes b > 0 at the current time.
	var (
		stop      atomic.Bool
		counter   atomic.Int64
		wg        sync.WaitGroup
		mu        sync.Mutex
		benAcked  = map[string]time.Time{} // newest acknowledged event time of ben's b, per entity
		annaAcked atomic.Int64
	)
	defer func() { stop.Store(true); wg.Wait() }() // also when the test fails early
	annaTime := time.Now().Add(-time.Hour)
	for w := 0; w < 4; w++ {
		c := clients[w%len(clients)]
		anna := w%2 == 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := ids[(i*7+w)%entities]
				n := counter.Add(1)
				var row *pb.FeatureRow
				if anna {
					row = subjectRow("anna", id, annaTime.Add(time.Duration(n)*time.Microsecond), map[string]*pb.Value{"a": client.Int64(-n)})
				} else {
					row = subjectRow("ben", id, time.Now(), map[string]*pb.Value{"b": client.Int64(n)})
				}
				wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				res, err := c.Write(wctx, "p", row)
				cancel()
				if err != nil || res[0].GetStatus() != pb.WriteStatus_WRITE_STATUS_WRITTEN {
					continue // refused (another subject's entity, or erased) or unknown: not acknowledged
				}
				if anna {
					annaAcked.Add(1)
					continue
				}
				mu.Lock()
				if at := row.GetEventTime().AsTime(); at.After(benAcked[id]) {
					benAcked[id] = at
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	conn, err := grpc.NewClient(addrs[2], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g := pb.NewGdprServiceClient(conn)
	del, err := g.DeleteSubject(ctx, &pb.DeleteSubjectRequest{SubjectId: "anna", Reason: "race"})
	if err != nil {
		t.Fatal(err)
	}
	var d *pb.Deletion
	for deadline := time.Now().Add(45 * time.Second); ; {
		resp, err := g.GetDeletion(ctx, &pb.GetDeletionRequest{Id: del.GetDeletion().GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if d = resp.GetDeletion(); d.GetState() == pb.DeletionState_DELETION_STATE_DONE || d.GetState() == pb.DeletionState_DELETION_STATE_FAILED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deletion not finished: %v", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // writers keep going a little after DONE
	stop.Store(true)
	wg.Wait()
	if d.GetState() != pb.DeletionState_DELETION_STATE_DONE || annaAcked.Load() == 0 || len(benAcked) == 0 {
		t.Fatalf("deletion %v; anna had %d acknowledged writes, ben %d entities: the race did not happen", d, annaAcked.Load(), len(benAcked))
	}
	check := func(when string) {
		t.Helper()
		for r, c := range clients {
			got, err := c.GetFeatures(ctx, []string{"p:a", "p:b"}, ids)
			if err != nil {
				t.Fatal(err)
			}
			for e, er := range got.GetResults() {
				if er.GetStatuses()[0] == pb.FeatureStatus_FEATURE_STATUS_PRESENT {
					t.Fatalf("%s: replica %d serves anna's a=%d on %s after her deletion is DONE", when, r, er.GetValues()[0].GetInt64Value(), ids[e])
				}
				want, ok := benAcked[ids[e]]
				if !ok {
					continue
				}
				if er.GetStatuses()[1] != pb.FeatureStatus_FEATURE_STATUS_PRESENT || er.GetEventTimes()[1].AsTime().Before(want.Truncate(time.Microsecond)) {
					t.Fatalf("%s: replica %d serves %v for ben's b on %s, want his value written at %v or newer", when, r, er, ids[e], want)
				}
			}
		}
	}
	check("cached")
	c, err := vk.NewClient(vk.ClientOption{InitAddress: []string{cache.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Do(ctx, c.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	check("after FLUSHALL")
}
