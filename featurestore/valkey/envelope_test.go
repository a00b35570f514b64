package valkey

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	tests := []Envelope{
		{Version: 0, Payload: []byte{}},
		{Version: 1795515881280902, Payload: []byte("a|b|c")},
		{Dirty: true, Version: 7, HorizonMs: 123, Ticket: "t1", Payload: []byte("x|y")},
		{Dirty: true, Tokens: []Token{{ID: "ab", ExpiryMs: 5, Early: true}, {ID: "cd", ExpiryMs: 6}}, Payload: []byte{}},
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

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte("V12|payload"))
	f.Add([]byte("D3|100|tk|a:1:0,b:2:1|p"))
	f.Add([]byte("D0|0|||"))
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
