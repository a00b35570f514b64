package ui

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dsfeatures/featurestore/featurestore"
)

// Bounds of a value as the lookup shows it: a page must stay readable (and small) even
// for a 100 KB string or a 10,000-element embedding.
const (
	maxShownRunes = 500
	maxShownItems = 32
	maxShownBytes = 32
)

// formatValue renders a value as plain text; the template escapes it.
func formatValue(v featurestore.Value) string {
	switch v.Type {
	case featurestore.TypeInt64:
		return strconv.FormatInt(v.Int, 10)
	case featurestore.TypeDouble:
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	case featurestore.TypeString:
		return clipRunes(v.Str)
	case featurestore.TypeBool:
		return strconv.FormatBool(v.Bool)
	case featurestore.TypeBytes:
		n := min(len(v.Bytes), maxShownBytes)
		s := "0x" + hex.EncodeToString(v.Bytes[:n])
		if n < len(v.Bytes) {
			s += fmt.Sprintf("… (%d bytes)", len(v.Bytes))
		}
		return s
	case featurestore.TypeFloatList:
		return list(len(v.Floats), func(i int) string { return strconv.FormatFloat(float64(v.Floats[i]), 'g', -1, 32) })
	case featurestore.TypeInt64List:
		return list(len(v.Ints), func(i int) string { return strconv.FormatInt(v.Ints[i], 10) })
	case featurestore.TypeStringList:
		return list(len(v.Strs), func(i int) string { return strconv.Quote(clipRunes(v.Strs[i])) })
	}
	return ""
}

func list(n int, item func(int) string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < n && i < maxShownItems; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(item(i))
	}
	if n > maxShownItems {
		fmt.Fprintf(&b, ", … (%d items)", n)
	}
	b.WriteByte(']')
	return b.String()
}

func clipRunes(s string) string {
	if utf8.RuneCountInString(s) <= maxShownRunes {
		return s
	}
	i, n := 0, 0
	for n < maxShownRunes {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		n++
	}
	return s[:i] + fmt.Sprintf("… (%d bytes)", len(s))
}

// formatTTL renders a set's ttl ("none" for 0).
func formatTTL(d time.Duration) string {
	if d <= 0 {
		return "none"
	}
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// ago renders how long before now t was, coarsely ("just now", "5s ago", "3 min ago",
// "2 h ago", "4 days ago"); "in the future" for a t ahead of now by more than a second.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < -time.Second:
		return "in the future"
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
}
