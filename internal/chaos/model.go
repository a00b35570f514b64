package chaos

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// The model is one key holding one feature, merged by event time exactly as the feature
// store documents: newer wins, older is stale, equal time and value is a no-op.

type state struct {
	Found bool
	T, V  int64
	// Floor is the newest event time a delete removed (when Floored): writes at or before
	// it are stale.
	Floor   int64
	Floored bool
}

type writeIn struct{ T, V int64 }

// deleteIn is DeleteEntities of the key.
type deleteIn struct{}

type deleteOut struct {
	// Existed is what the delete reported; Unknown: the call failed (it may have applied).
	Existed, Unknown bool
}

type writeOut struct {
	// Status is "written", "stale" or "unknown" (the call failed; it may have applied).
	Status string
}

type readOut struct {
	Found bool
	T, V  int64
}

type op struct {
	Key    string
	Client int
	Input  any // writeIn, or nil for a read
	Output any // writeOut or readOut
	Call   int64
	Return int64
}

func step(s state, in writeIn) (next state, status string) {
	switch {
	case s.Floored && in.T <= s.Floor:
		return s, "stale"
	case !s.Found || in.T > s.T:
		return state{Found: true, T: in.T, V: in.V, Floor: s.Floor, Floored: s.Floored}, "written"
	case in.T == s.T && in.V == s.V:
		return s, "written"
	default:
		return s, "stale"
	}
}

var model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, o := range history {
			k := o.Metadata.(string)
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], o)
		}
		out := make([][]porcupine.Operation, len(keys))
		for i, k := range keys {
			out[i] = byKey[k]
		}
		return out
	},
	Init: func() any { return state{} },
	Step: func(st, input, output any) (bool, any) {
		s := st.(state)
		if _, ok := input.(deleteIn); ok {
			out := output.(deleteOut)
			next := state{Floor: s.Floor, Floored: s.Floored}
			if s.Found {
				next.Floor, next.Floored = s.T, true
				if s.Floored {
					next.Floor = max(s.Floor, s.T)
				}
			}
			return out.Unknown || out.Existed == s.Found, next
		}
		if in, ok := input.(writeIn); ok {
			next, status := step(s, in)
			out := output.(writeOut)
			return out.Status == "unknown" || out.Status == status, next
		}
		out := output.(readOut)
		if !out.Found {
			return !s.Found, s
		}
		return s.Found && out.T == s.T && out.V == s.V, s
	},
	Hash: func(st any) uint64 {
		s := st.(state)
		return uint64(s.T)*31 + uint64(s.V) + uint64(s.Floor)*961
	},
	DescribeOperation: func(input, output any) string {
		if _, ok := input.(deleteIn); ok {
			return fmt.Sprintf("delete() -> %+v", output.(deleteOut))
		}
		if in, ok := input.(writeIn); ok {
			return fmt.Sprintf("write(t=%d, v=%d) -> %s", in.T, in.V, output.(writeOut).Status)
		}
		out := output.(readOut)
		if !out.Found {
			return "read() -> not found"
		}
		return fmt.Sprintf("read() -> (t=%d, v=%d)", out.T, out.V)
	},
	DescribeState: func(st any) string {
		s := st.(state)
		if !s.Found {
			return "empty"
		}
		return fmt.Sprintf("(t=%d, v=%d)", s.T, s.V)
	},
	DescribeOperationMetadata: func(info any) string { return fmt.Sprint(info) },
}
