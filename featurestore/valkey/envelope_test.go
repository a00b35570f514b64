package valkey

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	tests := []Envelope{
		{Key: "f:s#e", Version: 0, Payload: []byte{}},
		{Key: "f:s#a|b:c", Version: 1795515881280902, Payload: []byte("a|b|c")},
		{Key: "r:set", Dirty: true, Version: 7, HorizonMs: 123, Ticket: "t1", Payload: []byte("x|y")},
		{Key: "k", Dirty: true, Tokens: []Token{{ID: "ab", ExpiryMs: 5, Early: true}, {ID: "cd", ExpiryMs: 6}}, Payload: []byte{}},
	}
	for _, e := range tests {
		b := AppendEnvelope(nil, e)
		got, err := DecodeEnvelope(b)
		if err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		if diff := cmp.Diff(e, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", b, diff)
		}
	}
}

// TestEnvelopeBoundToItsKey: an envelope read under another key (copied or renamed there)
// is refused, so another entity's value is never served.
func TestEnvelopeBoundToItsKey(t *testing.T) {
	b := AppendEnvelope(nil, Envelope{Key: "f:s#alice", Version: 3, Payload: []byte("row")})
	if _, err := DecodeEnvelopeFor(b, "f:s#bob"); err != ErrMisbound {
		t.Fatalf("decoding alice's value as bob's: %v, want ErrMisbound", err)
	}
	if e, err := DecodeEnvelopeFor(b, "f:s#alice"); err != nil || e.Version != 3 || string(e.Payload) != "row" {
		t.Fatalf("decoding alice's value as alice's: %+v %v", e, err)
	}
	for _, bad := range []string{"V", "V3", "V3:ab", "V03:abc1|p", "Vx:k1|p", "D1:k1|2|t|x|"} {
		if _, err := DecodeEnvelope([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte("V1:k12|payload"))
	f.Add([]byte("D3:abc3|100|tk|a:1:0,b:2:1|p"))
	f.Add([]byte("D1:k0|0|||"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEnvelope(b)
		if err != nil {
			return
		}
		// Anything accepted must survive a round trip unchanged in meaning.
		again, err := DecodeEnvelope(AppendEnvelope(nil, e))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if diff := cmp.Diff(e, again, cmp.Comparer(func(a, b []byte) bool { return string(a) == string(b) })); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
