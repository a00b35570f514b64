package featurestore

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync/atomic"
)

// refPlan is what a read request's refs alone decide, worked out once per distinct list
// of refs: the refs parsed and grouped by set, and the order in which both response forms
// walk them (by set, then by feature name: the order stored rows hold their cells in).
// Serving code sends the same refs with every call (a ranking model's feature list), so
// the parse and the sort, about a tenth of a cached 10 x 100 read, are done once. A
// refPlan is immutable once built and shared by every request that uses it.
type refPlan struct {
	key  []string // the refs as requested
	hash uint64

	refs []FeatureRef
	// refSet[f] is the index in setNames of refs[f]'s set.
	refSet   []int
	setNames []string

	// Distinct (set, feature) pairs sorted by set, then name: names[c] is pair c's
	// feature, colSet[c] its set, and the pairs of set si are span[si]..span[si+1].
	// colOf[f] is ref f's pair; refMult[c] is how many refs name pair c.
	names   []string
	colSet  []int
	span    []int
	colOf   []int
	refMult []int
	// byName[si] lists the positions of set si's refs sorted by feature name (repeats
	// included), for the row-wise form.
	byName [][]int
}

// newRefPlan parses refStrs. Errors are KindInvalid, naming the field features[i].
func newRefPlan(refStrs []string) (*refPlan, error) {
	nf := len(refStrs)
	p := &refPlan{key: slices.Clone(refStrs), refs: make([]FeatureRef, nf)}
	ints := make([]int, 4*nf)
	p.refSet, p.colOf, p.refMult = ints[:nf:nf], ints[nf:2*nf:2*nf], ints[2*nf:3*nf:3*nf]
	order := ints[3*nf:]
	for i, rs := range refStrs {
		// The field name is only built for an error: a request of many refs must not pay
		// for formatting one per ref.
		r, err := ParseFeatureRef("", rs)
		if err != nil {
			return nil, renameField(err, fmt.Sprintf("features[%d]", i))
		}
		p.refs[i] = r
		si := slices.Index(p.setNames, r.Set) // requests name few sets: a scan beats a map
		if si < 0 {
			si = len(p.setNames)
			p.setNames = append(p.setNames, r.Set)
		}
		p.refSet[i] = si
	}
	for f := range order {
		order[f] = f
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if c := p.refSet[a] - p.refSet[b]; c != 0 {
			return c
		}
		return strings.Compare(p.refs[a].Feature, p.refs[b].Feature)
	})
	p.span = make([]int, len(p.setNames)+1)
	p.byName = make([][]int, len(p.setNames))
	prev := -1
	for _, f := range order {
		si := p.refSet[f]
		if prev < 0 || si != p.refSet[prev] || p.refs[f].Feature != p.refs[prev].Feature {
			p.names = append(p.names, p.refs[f].Feature)
			p.colSet = append(p.colSet, si)
		}
		c := len(p.names) - 1
		p.colOf[f] = c
		p.refMult[c]++
		p.span[si+1] = c + 1
		p.byName[si] = append(p.byName[si], f)
		prev = f
	}
	p.refMult = p.refMult[:len(p.names)]
	return p, nil
}

// refPlans remembers the plans of the ref lists read most recently, in a fixed number of
// slots chosen by a hash of the list; a list that collides with another replaces it.
// Lookups take no lock. The zero value is not usable: see newRefPlans.
type refPlans struct {
	seed  maphash.Seed
	slots [64]atomic.Pointer[refPlan]
}

func newRefPlans() *refPlans { return &refPlans{seed: maphash.MakeSeed()} }

// get returns the plan of refStrs, from a slot or newly built (see newRefPlan for the
// errors; refs that fail to parse are not remembered). A nil *refPlans remembers
// nothing.
func (c *refPlans) get(refStrs []string) (*refPlan, error) {
	if c == nil {
		return newRefPlan(refStrs)
	}
	var h maphash.Hash
	h.SetSeed(c.seed)
	for _, r := range refStrs {
		h.WriteString(r)
		h.WriteByte(0) // no ref holds a NUL; a list that does fails to parse below
	}
	sum := h.Sum64()
	slot := &c.slots[sum%uint64(len(c.slots))]
	if p := slot.Load(); p != nil && p.hash == sum && slices.Equal(p.key, refStrs) {
		return p, nil
	}
	p, err := newRefPlan(refStrs)
	if err != nil {
		return nil, err
	}
	p.hash = sum
	slot.Store(p)
	return p, nil
}
