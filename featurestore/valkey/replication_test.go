package valkey_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/internal/devstack"
)

func TestReplicationCheck(t *testing.T) {
	cluster := func(primaries, lo, hi int) valkey.Replication {
		return valkey.Replication{Cluster: true, Primaries: primaries, MinReplicas: lo, MaxReplicas: hi}
	}
	for _, tc := range []struct {
		name string
		r    valkey.Replication
		want int
		err  string // a part of the error; "" for none
	}{
		{"standalone without replicas", valkey.Replication{Primaries: 1}, 0, ""},
		{"standalone, waiting for a replica it lacks", valkey.Replication{Primaries: 1}, 1, "waiting for 1 replica, but the standalone primary has 0 replicas: every cache change would wait for acknowledgements that cannot come, and writes would fail; set it to 0"},
		{"standalone with a replica, waiting for none", valkey.Replication{Primaries: 1, MinReplicas: 1, MaxReplicas: 1}, 0, "failover could promote"},
		{"cluster of primaries only", cluster(3, 0, 0), 0, ""},
		{"one replica each, waiting for it", cluster(3, 1, 1), 1, ""},
		{"one replica each, waiting for none", cluster(3, 1, 1), 0, "each of the 3 primaries has 1 replica: a failover could promote"},
		{"one replica each, waiting for two", cluster(3, 1, 1), 2, "writes would fail; set it to 1"},
		{"two replicas each, waiting for one", cluster(3, 2, 2), 1, "set it to 2"},
		{"uneven, waiting for the fewest", cluster(3, 0, 1), 0, "from 0 to 1 replica, so no number"},
		{"uneven, waiting for the most", cluster(3, 0, 1), 1, "cannot come"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Check(tc.want)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("Check(%d) = %v, want nil", tc.want, err)
			case tc.err != "" && (!errors.Is(err, valkey.ErrReplicasMismatch) || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("Check(%d) = %v, want ErrReplicasMismatch containing %q", tc.want, err, tc.err)
			}
		})
	}
}

// TestReplicationOfRealServers reads the replicas of a standalone server, of it with a
// replica attached, and of a cluster with one replica per primary.
func TestReplicationOfRealServers(t *testing.T) {
	bin, err := devstack.FindValkeyServer(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	replication := func(addrs ...string) (valkey.Replication, error) {
		c, err := valkey.Dial(ctx, addrs, valkey.Options{Horizon: horizon})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Replication(ctx)
	}

	primary := startServer(t)
	if r, err := replication(primary); err != nil || r != (valkey.Replication{Primaries: 1}) {
		t.Errorf("standalone: %+v, %v; want one primary without replicas", r, err)
	}
	_, port, _ := strings.Cut(primary, ":")
	rep, err := devstack.StartValkey(ctx, bin, devstack.ValkeyOptions{Extra: []string{"--replicaof", "127.0.0.1", port}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rep.Stop)
	for deadline := time.Now().Add(20 * time.Second); ; {
		r, err := replication(primary)
		if err != nil {
			t.Fatal(err)
		}
		if r == (valkey.Replication{Primaries: 1, MinReplicas: 1, MaxReplicas: 1}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("standalone with a replica attached: %+v", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := replication(rep.Addr); !errors.Is(err, valkey.ErrReplicationUnknown) {
		t.Errorf("asking the replica itself: %v, want ErrReplicationUnknown", err)
	}

	cl, err := devstack.StartReplicatedValkeyCluster(ctx, bin, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Stop)
	r, err := replication(cl.Addrs...)
	if err != nil || r != (valkey.Replication{Cluster: true, Primaries: 3, MinReplicas: 1, MaxReplicas: 1}) {
		t.Fatalf("cluster of 3 primaries with a replica each: %+v, %v", r, err)
	}
	if err := r.Check(1); err != nil {
		t.Error(err)
	}
	if err := r.Check(0); !errors.Is(err, valkey.ErrReplicasMismatch) {
		t.Errorf("Check(0) on a replicated cluster: %v", err)
	}
}
