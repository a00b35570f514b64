package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ValkeyCluster is a ValKey Cluster on loopback: primaries, each with the same number of
// replicas.
type ValkeyCluster struct {
	Nodes []*Valkey
	// Addrs are every node's address (seeds for a client).
	Addrs []string
	cli   string
}

// Stop stops every node.
func (c *ValkeyCluster) Stop() {
	for _, n := range c.Nodes {
		n.Resume() // a paused node would not stop
		n.Stop()
	}
}

// StartValkeyCluster starts n cluster-enabled valkey-servers as primaries without
// replicas, joins them into one cluster with valkey-cli (found beside bin) and waits
// until the cluster reports ok.
func StartValkeyCluster(ctx context.Context, bin string, n int) (*ValkeyCluster, error) {
	return StartReplicatedValkeyCluster(ctx, bin, n, 0)
}

// StartReplicatedValkeyCluster starts primaries x (1 + replicas) cluster-enabled
// valkey-servers and joins them into a cluster in which every primary has that many
// replicas.
func StartReplicatedValkeyCluster(ctx context.Context, bin string, primaries, replicas int) (*ValkeyCluster, error) {
	cli := filepath.Join(filepath.Dir(bin), "valkey-cli")
	if _, err := exec.LookPath(cli); err != nil {
		return nil, fmt.Errorf("valkey-cli not found beside %s: %w", bin, err)
	}
	c := &ValkeyCluster{cli: cli}
	for i := 0; i < primaries*(1+replicas); i++ {
		bus, err := FreePort()
		if err != nil {
			c.Stop()
			return nil, err
		}
		// The cluster bus port is set explicitly: the default (port + 10000) may not exist.
		v, err := StartValkey(ctx, bin, ValkeyOptions{Extra: []string{
			"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
			"--cluster-config-file", fmt.Sprintf("nodes-%d.conf", i), "--cluster-node-timeout", "2000",
		}})
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, v)
		c.Addrs = append(c.Addrs, v.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("valkey-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitOK(ctx, 30*time.Second, c.Nodes...); err != nil {
		c.Stop()
		return nil, err
	}
	if replicas > 0 {
		// Replicas join asynchronously; wait until every one has synced.
		deadline := time.Now().Add(30 * time.Second)
		for {
			pairs, err := c.Pairs(ctx)
			if err == nil && len(pairs) == primaries*replicas {
				break
			}
			if time.Now().After(deadline) {
				c.Stop()
				return nil, fmt.Errorf("replicas did not sync: %d of %d (%v)", len(pairs), primaries*replicas, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c, nil
}

func (c *ValkeyCluster) run(ctx context.Context, n *Valkey, args ...string) (string, error) {
	host, port, _ := net.SplitHostPort(n.Addr)
	out, err := exec.CommandContext(ctx, c.cli, append([]string{"-h", host, "-p", port}, args...)...).Output()
	return string(out), err
}

func (c *ValkeyCluster) waitOK(ctx context.Context, d time.Duration, nodes ...*Valkey) error {
	deadline := time.Now().Add(d)
	for _, n := range nodes {
		for {
			out, _ := c.run(ctx, n, "cluster", "info")
			if strings.Contains(out, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("cluster node %s not ok:\n%s", n.Addr, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// Pair is a primary and one of its replicas whose replication link is up.
type Pair struct{ Primary, Replica *Valkey }

// Pairs lists each replica with link up and its primary.
func (c *ValkeyCluster) Pairs(ctx context.Context) ([]Pair, error) {
	byAddr := map[string]*Valkey{}
	for _, n := range c.Nodes {
		byAddr[n.Addr] = n
	}
	var out []Pair
	for _, n := range c.Nodes {
		info, err := c.run(ctx, n, "info", "replication")
		if err != nil {
			return nil, err
		}
		f := fields(info)
		if f["role"] != "slave" || f["master_link_status"] != "up" {
			continue
		}
		p := byAddr[net.JoinHostPort(f["master_host"], f["master_port"])]
		if p == nil {
			return nil, fmt.Errorf("replica %s follows an unknown primary %s:%s", n.Addr, f["master_host"], f["master_port"])
		}
		out = append(out, Pair{Primary: p, Replica: n})
	}
	return out, nil
}

func fields(info string) map[string]string {
	f := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			f[k] = v
		}
	}
	return f
}

// PairOf returns the pair whose primary serves slot.
func (c *ValkeyCluster) PairOf(ctx context.Context, slot uint16) (Pair, error) {
	pairs, err := c.Pairs(ctx)
	if err != nil {
		return Pair{}, err
	}
	for _, p := range pairs {
		out, err := c.run(ctx, p.Primary, "cluster", "nodes")
		if err != nil {
			return Pair{}, err
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || !strings.Contains(f[2], "myself") {
				continue
			}
			for _, r := range f[8:] {
				lo, hi, ok := strings.Cut(r, "-")
				if !ok {
					hi = lo
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 == nil && err2 == nil && int(slot) >= a && int(slot) <= b {
					return p, nil
				}
			}
		}
	}
	return Pair{}, fmt.Errorf("no primary with a replica serves slot %d", slot)
}

// Failover promotes a replica over its primary so that writes the replica never received
// are lost, as a failover after a network partition does: it pauses the replica and has
// the primary drop its replication link (a paused process still receives into its socket
// buffer, so pausing alone does not stop replication), lets the primary take writes for
// cutoff, pauses the primary,
// resumes the replica and has it take over (CLUSTER FAILOVER TAKEOVER, no agreement from
// the primary), then resumes the old primary, which finds itself failed over, becomes a
// replica of the new primary and drops what it had not replicated. pick chooses which of
// the pairs (index modulo their number).
func (c *ValkeyCluster) Failover(ctx context.Context, pick int, cutoff time.Duration) error {
	pairs, err := c.Pairs(ctx)
	if err != nil {
		return err
	}
	if len(pairs) == 0 {
		return errors.New("no primary has a replica in sync")
	}
	return c.FailoverPair(ctx, pairs[pick%len(pairs)], cutoff)
}

// FailoverPair is Failover of the pair p.
func (c *ValkeyCluster) FailoverPair(ctx context.Context, p Pair, cutoff time.Duration) error {
	if err := p.Replica.Pause(); err != nil {
		return err
	}
	if out, err := c.run(ctx, p.Primary, "client", "kill", "type", "replica"); err != nil {
		p.Replica.Resume()
		return fmt.Errorf("dropping the replication link on %s: %v %s", p.Primary.Addr, err, out)
	}
	select {
	case <-ctx.Done():
	case <-time.After(cutoff):
	}
	if err := p.Primary.Pause(); err != nil {
		p.Replica.Resume()
		return err
	}
	defer p.Primary.Resume()
	if err := p.Replica.Resume(); err != nil {
		return err
	}
	if out, err := c.run(ctx, p.Replica, "cluster", "failover", "takeover"); err != nil || !strings.Contains(out, "OK") {
		return fmt.Errorf("cluster failover takeover on %s: %v %s", p.Replica.Addr, err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, _ := c.run(ctx, p.Replica, "info", "replication")
		if fields(info)["role"] == "master" {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not become primary: %w", p.Replica.Addr, context.Cause(ctx))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.Primary.Resume(); err != nil {
		return err
	}
	// The old primary rejoins as a replica of the new one and resyncs.
	deadline = time.Now().Add(20 * time.Second)
	for {
		info, _ := c.run(ctx, p.Primary, "info", "replication")
		f := fields(info)
		if f["role"] == "slave" && f["master_link_status"] == "up" && net.JoinHostPort(f["master_host"], f["master_port"]) == p.Replica.Addr {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("old primary %s did not rejoin as a replica of %s: role=%s master=%s:%s link=%s", p.Primary.Addr, p.Replica.Addr, f["role"], f["master_host"], f["master_port"], f["master_link_status"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c.waitOK(ctx, 20*time.Second, c.Nodes...)
}
