package valkey

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	vk "github.com/valkey-io/valkey-go"
)

// Replication is how many replicas the cache's primaries have, as the servers report.
type Replication struct {
	// Cluster tells whether the cache is a ValKey Cluster (else one standalone primary).
	Cluster bool
	// Primaries counts the primaries (shards that serve slots, in a cluster).
	Primaries int
	// MinReplicas and MaxReplicas are the fewest and the most replicas any primary has.
	// A cluster's count includes replicas marked failed: they are part of the topology
	// and may come back, or be promoted, at any time. A standalone primary counts only
	// the replicas connected to it.
	MinReplicas, MaxReplicas int
}

// ErrReplicationUnknown: the servers did not say how many replicas they have (for
// example, an ACL that denies CLUSTER SHARDS and INFO). Callers may go on without the
// check.
var ErrReplicationUnknown = errors.New("cannot tell how many replicas ValKey has")

// ErrReplicasMismatch: Options.Replicas does not fit the servers' replicas, so either
// every cache change would wait for acknowledgements that cannot come, or a failover
// could promote a replica without a writer's marker and serve a value older than an
// acknowledged write.
var ErrReplicasMismatch = errors.New("the replicas to wait for do not match ValKey's replicas")

// Replication asks the servers how many replicas each primary has: CLUSTER SHARDS on a
// cluster, INFO replication on a standalone server. It returns ErrReplicationUnknown
// (wrapped) when neither answers in a form it understands.
func (c *Cache) Replication(ctx context.Context) (Replication, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	shards, err := c.client.Do(ctx, c.client.B().ClusterShards().Build()).ToArray()
	if err == nil {
		return clusterReplication(shards)
	}
	if !strings.Contains(strings.ToLower(err.Error()), "cluster support disabled") {
		return Replication{}, fmt.Errorf("%w: CLUSTER SHARDS: %w", ErrReplicationUnknown, err)
	}
	info, err := c.client.Do(ctx, c.client.B().Info().Section("replication").Build()).ToString()
	if err != nil {
		return Replication{}, fmt.Errorf("%w: INFO replication: %w", ErrReplicationUnknown, err)
	}
	return standaloneReplication(info)
}

// shardNodes is the part of one CLUSTER SHARDS entry the check needs: whether the shard
// serves slots, and its nodes' roles.
type shardNodes struct {
	slots int
	roles []string
}

func clusterReplication(shards []vk.ValkeyMessage) (Replication, error) {
	parsed := make([]shardNodes, 0, len(shards))
	for _, sh := range shards {
		m, err := sh.AsMap()
		if err != nil {
			return Replication{}, fmt.Errorf("%w: CLUSTER SHARDS entry: %w", ErrReplicationUnknown, err)
		}
		var s shardNodes
		if slots, ok := m["slots"]; ok {
			if arr, err := slots.ToArray(); err == nil {
				s.slots = len(arr)
			}
		}
		nodes, ok := m["nodes"]
		if !ok {
			return Replication{}, fmt.Errorf("%w: CLUSTER SHARDS entry without nodes", ErrReplicationUnknown)
		}
		list, err := nodes.ToArray()
		if err != nil {
			return Replication{}, fmt.Errorf("%w: CLUSTER SHARDS nodes: %w", ErrReplicationUnknown, err)
		}
		for _, n := range list {
			nm, err := n.AsStrMap()
			if err != nil {
				return Replication{}, fmt.Errorf("%w: CLUSTER SHARDS node: %w", ErrReplicationUnknown, err)
			}
			s.roles = append(s.roles, nm["role"])
		}
		parsed = append(parsed, s)
	}
	return countReplicas(parsed)
}

// countReplicas summarises shards; a shard without slots (a node not yet given any)
// holds no keys and is left out.
func countReplicas(shards []shardNodes) (Replication, error) {
	r := Replication{Cluster: true, MinReplicas: -1}
	for _, s := range shards {
		if s.slots == 0 {
			continue
		}
		replicas := 0
		for _, role := range s.roles {
			if role == "replica" || role == "slave" {
				replicas++
			}
		}
		r.Primaries++
		if r.MinReplicas < 0 || replicas < r.MinReplicas {
			r.MinReplicas = replicas
		}
		r.MaxReplicas = max(r.MaxReplicas, replicas)
	}
	if r.Primaries == 0 {
		return Replication{}, fmt.Errorf("%w: no shard serves slots", ErrReplicationUnknown)
	}
	return r, nil
}

// standaloneReplication reads INFO replication's connected_slaves of a primary.
func standaloneReplication(info string) (Replication, error) {
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	if role := fields["role"]; role != "master" && role != "primary" {
		return Replication{}, fmt.Errorf("%w: the server's role is %q, not a primary", ErrReplicationUnknown, role)
	}
	n, err := strconv.Atoi(fields["connected_slaves"])
	if err != nil || n < 0 {
		return Replication{}, fmt.Errorf("%w: INFO replication connected_slaves %q", ErrReplicationUnknown, fields["connected_slaves"])
	}
	return Replication{Primaries: 1, MinReplicas: n, MaxReplicas: n}, nil
}

// Check returns nil if waiting for want replicas is both possible and enough on r: want
// is at least every primary's replicas (so any replica a failover promotes has every
// acknowledged marker) and at most the fewest any primary has (so the acknowledgements
// can come). Otherwise it returns ErrReplicasMismatch, wrapped with what to change.
func (r Replication) Check(want int) error {
	switch {
	case want > r.MinReplicas:
		return fmt.Errorf("%w: waiting for %s, but %s: every cache change would wait for acknowledgements that cannot come, and writes would fail; set it to %d, or add replicas",
			ErrReplicasMismatch, replicas(want), r, r.MinReplicas)
	case want < r.MaxReplicas && r.MinReplicas == r.MaxReplicas:
		return fmt.Errorf("%w: waiting for %s, but %s: a failover could promote a replica without a writer's marker and serve a value older than an acknowledged write; set it to %d",
			ErrReplicasMismatch, replicas(want), r, r.MaxReplicas)
	case want < r.MaxReplicas:
		return fmt.Errorf("%w: %s, so no number of replicas to wait for is both enough for any failover (%d) and possible for every primary (%d); give every primary the same number of replicas",
			ErrReplicasMismatch, r, r.MaxReplicas, r.MinReplicas)
	}
	return nil
}

// String describes r, as in "each of the 3 primaries has 1 replica".
func (r Replication) String() string {
	n := replicas
	switch {
	case !r.Cluster:
		return "the standalone primary has " + n(r.MinReplicas)
	case r.MinReplicas != r.MaxReplicas:
		return fmt.Sprintf("the %d primaries have from %d to %s", r.Primaries, r.MinReplicas, n(r.MaxReplicas))
	}
	return fmt.Sprintf("each of the %d primaries has %s", r.Primaries, n(r.MinReplicas))
}

func replicas(k int) string {
	if k == 1 {
		return "1 replica"
	}
	return strconv.Itoa(k) + " replicas"
}
