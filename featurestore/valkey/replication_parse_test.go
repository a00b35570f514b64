package valkey

import (
	"errors"
	"testing"
)

// FuzzStandaloneReplication: any INFO text either parses to one primary with a
// non-negative replica count, or is ErrReplicationUnknown; it never panics.
func FuzzStandaloneReplication(f *testing.F) {
	f.Add("# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=1,state=online\r\n")
	f.Add("role:slave\r\nmaster_host:127.0.0.1\r\n")
	f.Add("role:master\r\nconnected_slaves:x\r\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, info string) {
		r, err := standaloneReplication(info)
		if err != nil {
			if !errors.Is(err, ErrReplicationUnknown) {
				t.Fatalf("error %v is not ErrReplicationUnknown", err)
			}
			return
		}
		if r.Cluster || r.Primaries != 1 || r.MinReplicas != r.MaxReplicas || r.MinReplicas < 0 {
			t.Fatalf("parsed %+v", r)
		}
	})
}

func TestStandaloneReplication(t *testing.T) {
	for _, tc := range []struct {
		info string
		want int
		ok   bool
	}{
		{"# Replication\r\nrole:master\r\nconnected_slaves:2\r\n", 2, true},
		{"role:primary\nconnected_slaves:0\n", 0, true},
		{"role:slave\r\nconnected_slaves:0\r\n", 0, false},
		{"role:master\r\n", 0, false},
		{"role:master\r\nconnected_slaves:-1\r\n", 0, false},
	} {
		r, err := standaloneReplication(tc.info)
		if ok := err == nil; ok != tc.ok || (ok && r.MinReplicas != tc.want) {
			t.Errorf("%q: %+v, %v; want %d replicas, ok %v", tc.info, r, err, tc.want, tc.ok)
		}
	}
}
