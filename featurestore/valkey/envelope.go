package valkey

import (
	"bytes"
	"errors"
	"strconv"
)

// ErrCorruptEnvelope is returned for cache values that are not an envelope.
var ErrCorruptEnvelope = errors.New("corrupt cache envelope")

// Token is a writer's token in a DIRTY envelope.
type Token struct {
	ID       string
	ExpiryMs int64
	Early    bool
}

// Envelope is the decoded cache value of one key.
type Envelope struct {
	Dirty     bool
	Version   int64
	HorizonMs int64
	Ticket    string
	Tokens    []Token
	Payload   []byte
}

// DecodeEnvelope parses a cache value. Payload aliases b.
func DecodeEnvelope(b []byte) (Envelope, error) {
	if len(b) == 0 {
		return Envelope{}, ErrCorruptEnvelope
	}
	switch b[0] {
	case 'V':
		i := bytes.IndexByte(b, '|')
		if i < 0 {
			return Envelope{}, ErrCorruptEnvelope
		}
		v, err := parseUint(b[1:i])
		if err != nil {
			return Envelope{}, err
		}
		return Envelope{Version: v, Payload: b[i+1:]}, nil
	case 'D':
		var fields [4][]byte
		rest := b[1:]
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
	return Envelope{}, ErrCorruptEnvelope
}

// AppendEnvelope is the inverse of DecodeEnvelope; the Lua scripts write the same format.
func AppendEnvelope(dst []byte, e Envelope) []byte {
	if !e.Dirty {
		dst = append(dst, 'V')
		dst = strconv.AppendInt(dst, e.Version, 10)
		dst = append(dst, '|')
		return append(dst, e.Payload...)
	}
	dst = append(dst, 'D')
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
