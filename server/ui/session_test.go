package ui

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dsfeatures/featurestore/featurestore"
)

var testKey = sessions{key: []byte("a session key of at least thirty-two bytes"), ttl: time.Hour}

// parseSession accepts exactly what issue writes.
func TestParseSession(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	good := testKey.issue("viewer", now)
	if id, err := testKey.verify(good, now); err != nil || id != "viewer" {
		t.Fatalf("verify(issue) = %q, %v", id, err)
	}
	parts := strings.Split(good, ".")
	for name, v := range map[string]string{
		"empty":              "",
		"no version":         strings.Join(parts[1:], "."),
		"other version":      "v2." + strings.Join(parts[1:], "."),
		"extra part":         good + ".x",
		"empty identity":     "v1.." + parts[2] + "." + parts[3],
		"identity not b64":   "v1.!!." + parts[2] + "." + parts[3],
		"leading zero":       "v1." + parts[1] + ".0" + parts[2] + "." + parts[3],
		"negative expiry":    "v1." + parts[1] + ".-5." + parts[3],
		"short mac":          "v1." + parts[1] + "." + parts[2] + ".AAAA",
		"expiry not decimal": "v1." + parts[1] + ".1e9." + parts[3],
	} {
		if _, err := parseSession(v); err == nil {
			t.Errorf("%s: %q parsed", name, v)
		}
	}
	other := sessions{key: []byte("another key of at least thirty-two bytes!!"), ttl: time.Hour}
	if _, err := other.verify(good, now); err != errBadSignature {
		t.Errorf("another key: %v, want a bad signature", err)
	}
	if _, err := testKey.verify(good, now.Add(time.Hour)); err != errExpiredSession {
		t.Errorf("at expiry: %v, want expired", err)
	}
}

// FuzzParseSession: no input makes the parser panic or accept an identity issue could
// not have written, and whatever parses re-verifies only with the right MAC.
func FuzzParseSession(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	f.Add(testKey.issue("viewer", now))
	f.Add("v1.dmlld2Vy.1700003600.AAAA")
	f.Add("v1...")
	f.Add(strings.Repeat(".", 100))
	f.Fuzz(func(t *testing.T, v string) {
		s, err := parseSession(v)
		if err != nil {
			return
		}
		if s.identity == "" || len(s.identity) > maxIdentityLen || !utf8.ValidString(s.identity) || s.expiry <= 0 || len(s.mac) != 32 {
			t.Fatalf("accepted %q as %+v", v, s)
		}
		if id, err := testKey.verify(v, time.Unix(0, 0)); err == nil && v != testKey.issue(id, time.Unix(s.expiry, 0).Add(-testKey.ttl)) {
			t.Fatalf("%q verified but is not what issue writes", v)
		}
	})
}

func TestFormatValue(t *testing.T) {
	long := strings.Repeat("é", maxShownRunes+10)
	tests := []struct {
		v    featurestore.Value
		want string
	}{
		{featurestore.Value{Type: featurestore.TypeInt64, Int: -7}, "-7"},
		{featurestore.Value{Type: featurestore.TypeDouble, Float: 4.9}, "4.9"},
		{featurestore.Value{Type: featurestore.TypeBool, Bool: true}, "true"},
		{featurestore.Value{Type: featurestore.TypeString, Str: "<b>x</b>"}, "<b>x</b>"}, // the template escapes it
		{featurestore.Value{Type: featurestore.TypeString, Str: long}, strings.Repeat("é", maxShownRunes) + "… (1020 bytes)"},
		{featurestore.Value{Type: featurestore.TypeBytes, Bytes: []byte{0xde, 0xad}}, "0xdead"},
		{featurestore.Value{Type: featurestore.TypeBytes, Bytes: make([]byte, 40)}, "0x" + strings.Repeat("00", 32) + "… (40 bytes)"},
		{featurestore.Value{Type: featurestore.TypeFloatList, Floats: []float32{0.1, 2}}, "[0.1, 2]"},
		{featurestore.Value{Type: featurestore.TypeInt64List, Ints: make([]int64, 40)}, "[" + strings.Repeat("0, ", 31) + "0, … (40 items)]"},
		{featurestore.Value{Type: featurestore.TypeStringList, Strs: []string{"a", `"q"`}}, `["a", "\"q\""]`},
	}
	for _, tc := range tests {
		if got := formatValue(tc.v); got != tc.want {
			t.Errorf("formatValue(%v) = %q, want %q", tc.v.Type, got, tc.want)
		}
	}
}

func TestAgo(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for d, want := range map[time.Duration]string{
		-time.Hour: "in the future", 0: "just now", 5 * time.Second: "5s ago", 3 * time.Minute: "3 min ago",
		5 * time.Hour: "5 h ago", 72 * time.Hour: "3 days ago",
	} {
		if got := ago(now, now.Add(-d)); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
	if got := ago(now, time.Time{}); got != "never" {
		t.Errorf("ago(zero) = %q", got)
	}
}
