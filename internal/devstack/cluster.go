package devstack

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ValkeyCluster is a ValKey Cluster of primaries without replicas, on loopback.
type ValkeyCluster struct {
	Nodes []*Valkey
	Addrs []string
}

// Stop stops every node.
func (c *ValkeyCluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}

// StartValkeyCluster starts n cluster-enabled valkey-servers, joins them into one cluster
// with valkey-cli (found beside bin) and waits until the cluster reports ok.
func StartValkeyCluster(ctx context.Context, bin string, n int) (*ValkeyCluster, error) {
	cli := filepath.Join(filepath.Dir(bin), "valkey-cli")
	if _, err := exec.LookPath(cli); err != nil {
		return nil, fmt.Errorf("valkey-cli not found beside %s: %w", bin, err)
	}
	c := &ValkeyCluster{}
	for i := 0; i < n; i++ {
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
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("valkey-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range c.Addrs {
		host, port, _ := net.SplitHostPort(addr)
		for {
			out, _ := exec.CommandContext(ctx, cli, "-h", host, "-p", port, "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				c.Stop()
				return nil, fmt.Errorf("cluster node %s not ok:\n%s", addr, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c, nil
}
