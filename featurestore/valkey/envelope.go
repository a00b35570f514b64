package valkey

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// Errors of DecodeEnvelope.
var (
	// ErrCorruptEnvelope is returned for cache values that are not an envelope.
	ErrCorruptEnvelope = errors.New("corrupt cache envelope")
	// ErrMisbound is returned for an envelope bound to another key: a value copied or
	// renamed there, which must not be served as this key's.
	ErrMisbound = errors.New("cache envelope bound to another key")
)

// Token is a writer's token in a DIRTY envelope.
type Token struct {
	ID       string
	ExpiryMs int64
	Early    bool
}

// Envelope is the decoded cache value of one key.
type Envelope struct {
	// Key is the key the envelope is bound to.
	Key       string
	Dirty     bool
	Version   int64
	HorizonMs int64
	Ticket    string
	Tokens    []Token
	Payload   []byte
}

// DecodeEnvelope parses a cache value. Payload aliases b.
func DecodeEnvelope(b []byte) (Envelope, error) {
	key, rest, err := binding(b)
	if err != nil {
		return Envelope{}, err
	}
	e, err := decodeRest(b[0], rest)
	e.Key = string(key)
	return e, err
}

// DecodeEnvelopeFor parses the cache value of key: ErrMisbound if it is bound to another
// key. It allocates nothing for the binding.
func DecodeEnvelopeFor(b []byte, key string) (Envelope, error) {
	k, rest, err := binding(b)
	if err != nil {
		return Envelope{}, err
	}
	if string(k) != key {
		return Envelope{}, ErrMisbound
	}
	e, err := decodeRest(b[0], rest)
	e.Key = key
	return e, err
}

// binding splits an envelope into its key and the rest after the kind and the binding.
func binding(b []byte) (key, rest []byte, err error) {
	if len(b) == 0 || b[0] != 'V' && b[0] != 'D' {
		return nil, nil, ErrCorruptEnvelope
	}
	c := bytes.IndexByte(b[1:], ':')
	if c < 0 {
		return nil, nil, ErrCorruptEnvelope
	}
	n, err := parseUint(b[1 : 1+c])
	if err != nil || b[1] == '0' && c > 1 || int64(len(b)-2-c) < n {
		return nil, nil, ErrCorruptEnvelope
	}
	start := 2 + c
	return b[start : start+int(n)], b[start+int(n):], nil
}

func decodeRest(kind byte, b []byte) (Envelope, error) {
	switch kind {
	case 'V':
		i := bytes.IndexByte(b, '|')
		if i < 0 {
			return Envelope{}, ErrCorruptEnvelope
		}
		v, err := parseUint(b[:i])
		if err != nil {
			return Envelope{}, err
		}
		return Envelope{Version: v, Payload: b[i+1:]}, nil
	default:
		var fields [4][]byte
		rest := b
		for k := range fields {
			i := bytes.IndexByte(rest, '|')
			if i < 0 {
				return Envelope{}, ErrCorruptEnvelope
			}
			fields[k], rest = rest[:i], rest[i+1:]
		}
		e := Envelope{Dirty: true, Ticket: string(fields[2]), Payload: rest}
		var err error
		if e.Version, err = parseUint(fields[0]); err != nil {
			return Envelope{}, err
		}
		if e.HorizonMs, err = parseUint(fields[1]); err != nil {
			return Envelope{}, err
		}
		if len(fields[3]) > 0 {
			for _, t := range bytes.Split(fields[3], []byte{','}) {
				parts := bytes.Split(t, []byte{':'})
				if len(parts) != 3 || len(parts[0]) == 0 || len(parts[2]) != 1 || (parts[2][0] != '0' && parts[2][0] != '1') {
					return Envelope{}, ErrCorruptEnvelope
				}
				exp, err := parseUint(parts[1])
				if err != nil {
					return Envelope{}, err
				}
				e.Tokens = append(e.Tokens, Token{ID: string(parts[0]), ExpiryMs: exp, Early: parts[2][0] == '1'})
			}
		}
		return e, nil
	}
}

// AppendEnvelope is the inverse of DecodeEnvelope (bound to e.Key); the Lua scripts
// write the same format.
func AppendEnvelope(dst []byte, e Envelope) []byte {
	bind := func(dst []byte) []byte {
		dst = strconv.AppendInt(dst, int64(len(e.Key)), 10)
		dst = append(dst, ':')
		return append(dst, e.Key...)
	}
	if !e.Dirty {
		dst = append(dst, 'V')
		dst = bind(dst)
		dst = strconv.AppendInt(dst, e.Version, 10)
		dst = append(dst, '|')
		return append(dst, e.Payload...)
	}
	dst = append(dst, 'D')
	dst = bind(dst)
	dst = strconv.AppendInt(dst, e.Version, 10)
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, e.HorizonMs, 10)
	dst = append(dst, '|')
	dst = append(dst, e.Ticket...)
	dst = append(dst, '|')
	for i, t := range e.Tokens {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, t.ID...)
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, t.ExpiryMs, 10)
		if t.Early {
			dst = append(dst, ":1"...)
		} else {
			dst = append(dst, ":0"...)
		}
	}
	dst = append(dst, '|')
	return append(dst, e.Payload...)
}

// Provisional reports whether a DIRTY envelope is a provisional entry: servable as a
// VALUE of Version until HorizonMs by the server's clock.
func (e Envelope) Provisional() bool {
	return e.Dirty && strings.HasPrefix(e.Ticket, "P:")
}

// parseUint parses a non-negative decimal of at most 16 digits (Lua's exact range).
func parseUint(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 16 {
		return 0, ErrCorruptEnvelope
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, ErrCorruptEnvelope
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}
