package valkey_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"testing"

	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/internal/devstack"
)

// TestSlot checks the slot function against values from the cluster specification and
// CLUSTER KEYSLOT (TestSlotMatchesServer checks it against a server on random keys).
func TestSlot(t *testing.T) {
	for key, want := range map[string]uint16{
		"":                     0,
		"123456789":            12739, // the specification's CRC16 check value 0x31C3, mod 16384
		"foo":                  12182,
		"{user1000}.following": 3443,
		"{user1000}.followers": 3443,
		"foo{}{bar}":           8363, // an empty tag: the whole key
		"foo{{bar}}zap":        4015, // the tag is "{bar"
		"foo{bar}{zap}":        5061, // the first tag: "bar"
	} {
		if got := valkey.Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
}

// TestSlotMatchesServer compares Slot with CLUSTER KEYSLOT of a cluster-enabled
// valkey-server on random keys, braces included.
func TestSlotMatchesServer(t *testing.T) {
	bin, err := devstack.FindValkeyServer(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v, err := devstack.StartValkey(ctx, bin, devstack.ValkeyOptions{Extra: []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	c, err := valkey.Dial(ctx, []string{v.Addr}, valkey.Options{Horizon: horizon})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := c.Client()
	rng := rand.New(rand.NewSource(1))
	alphabet := "ab{}:#xyz0"
	for i := 0; i < 500; i++ {
		b := make([]byte, rng.Intn(12))
		for j := range b {
			b[j] = alphabet[rng.Intn(len(alphabet))]
		}
		key := fmt.Sprintf("f:set#%s", b)
		want, err := cl.Do(ctx, cl.B().ClusterKeyslot().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if got := valkey.Slot(key); int64(got) != want {
			t.Fatalf("Slot(%q) = %d, CLUSTER KEYSLOT says %d", key, got, want)
		}
	}
}
