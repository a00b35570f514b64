package featurestore

import (
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRefPlanLayout(t *testing.T) {
	p, err := newRefPlan([]string{"b:z", "a:y", "b:a", "a:y", "b:m"})
	if err != nil {
		t.Fatal(err)
	}
	want := &refPlan{
		key:      []string{"b:z", "a:y", "b:a", "a:y", "b:m"},
		refs:     []FeatureRef{{"b", "z"}, {"a", "y"}, {"b", "a"}, {"a", "y"}, {"b", "m"}},
		refSet:   []int{0, 1, 0, 1, 0},
		setNames: []string{"b", "a"},
		// Set b's features sorted (a, m, z), then set a's (y, asked twice).
		names:   []string{"a", "m", "z", "y"},
		colSet:  []int{0, 0, 0, 1},
		span:    []int{0, 3, 4},
		colOf:   []int{2, 3, 0, 3, 1},
		refMult: []int{1, 1, 1, 2},
		byName:  [][]int{{2, 4, 0}, {1, 3}},
	}
	if diff := cmp.Diff(want, p, cmp.AllowUnexported(refPlan{})); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
}

// TestRefPlansRemember: the same refs get the same (shared) plan; other refs, also ones
// that land in the same slot, get their own; refs that do not parse are an error each
// time and are never remembered.
func TestRefPlansRemember(t *testing.T) {
	c := newRefPlans()
	refs := []string{"s:a", "s:b"}
	p1, err := c.get(refs)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.get([]string{"s:a", "s:b"})
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Error("the same refs were planned twice")
	}
	refs[0] = "s:changed" // the caller's slice is not the cache's key
	if p3, _ := c.get([]string{"s:a", "s:b"}); p3 != p1 {
		t.Error("changing the caller's slice changed the remembered plan")
	}
	// Many lists, so that some share a slot: each gets its own refs back.
	for i := range 500 {
		list := []string{fmt.Sprintf("s:f%d", i), "t:g"}
		p, err := c.get(list)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(list, p.key); diff != "" {
			t.Fatalf("list %d got the plan of another list (-want +got):\n%s", i, diff)
		}
	}
	for range 2 {
		if _, err := c.get([]string{"s:a", "nocolon"}); err == nil || ErrorKind(err) != KindInvalid {
			t.Fatalf("a bad ref: %v, want KindInvalid", err)
		}
	}
	for i := range c.slots {
		if p := c.slots[i].Load(); p != nil && p.key[len(p.key)-1] == "nocolon" {
			t.Fatal("a list that failed to parse was remembered")
		}
	}
}

func TestRefPlansConcurrent(t *testing.T) {
	c := newRefPlans()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 300 {
				list := []string{fmt.Sprintf("s:f%d", (i+w)%70), "s:x"}
				p, err := c.get(list)
				if err != nil || p.refs[0].Feature != fmt.Sprintf("f%d", (i+w)%70) {
					t.Errorf("get(%v): %v, %v", list, p.refs, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
