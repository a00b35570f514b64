package featurestore

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Limits on names, chosen so that a key ("<set>#<entity>") stays far below DynamoDB's
// 2 KiB partition key limit.
const (
	MaxNameLen     = 64
	MaxFeatures    = 1000
	MaxEntityIDLen = 512
	MaxSubjectLen  = 256
)

// FeatureSpec declares one feature.
type FeatureSpec struct {
	Name string    `json:"name"`
	Type ValueType `json:"type"`
}

// FeatureSet is a named group of features of one entity type.
type FeatureSet struct {
	Name         string        `json:"name"`
	EntityType   string        `json:"entity_type"`
	Features     []FeatureSpec `json:"features"`
	TTL          time.Duration `json:"ttl"`
	Description  string        `json:"description,omitempty"`
	Owner        string        `json:"owner,omitempty"`
	PersonalData bool          `json:"personal_data,omitempty"`
	// Version is assigned by the registry: 1 on creation, +1 per applied change.
	Version int64 `json:"version"`
	// Retired sets (DeleteFeatureSet) are kept so that their name cannot be applied again;
	// they are not served, written or listed.
	Retired bool `json:"retired,omitempty"`
	// History is kept by the registry: one entry per version, oldest first, at most
	// MaxHistory (the oldest are dropped). What a caller passes to ApplyFeatureSet is
	// ignored.
	History []VersionChange `json:"history,omitempty"`
}

// MaxHistory bounds the versions a set's History keeps, so its item stays small.
const MaxHistory = 50

// VersionChange is one version of a feature set in its History.
type VersionChange struct {
	Version int64 `json:"version"`
	// AppliedAt is when the version was applied, in Unix microseconds.
	AppliedAt int64 `json:"applied_at_us"`
	// Change says what the version changed, in words (names only, never values).
	Change string `json:"change"`
}

// describeChange says in words what next changes from prev (Evolve's allowed changes).
func describeChange(prev, next FeatureSet) string {
	var parts []string
	var added []string
	for _, f := range next.Features {
		if _, ok := prev.Feature(f.Name); !ok {
			added = append(added, f.Name+" ("+f.Type.String()+")")
		}
	}
	if len(added) > 0 {
		parts = append(parts, "added "+strings.Join(added, ", "))
	}
	if next.TTL != prev.TTL {
		parts = append(parts, fmt.Sprintf("ttl %v → %v", prev.TTL, next.TTL))
	}
	if next.Owner != prev.Owner {
		parts = append(parts, fmt.Sprintf("owner %q → %q", prev.Owner, next.Owner))
	}
	if next.Description != prev.Description {
		parts = append(parts, "description changed")
	}
	return strings.Join(parts, "; ")
}

// Feature returns the spec of the named feature.
func (fs *FeatureSet) Feature(name string) (FeatureSpec, bool) {
	for _, f := range fs.Features {
		if f.Name == name {
			return f, true
		}
	}
	return FeatureSpec{}, false
}

// Validate checks a feature set as submitted to ApplyFeatureSet. It returns KindInvalid
// errors naming the field.
func (fs *FeatureSet) Validate() error {
	if err := validateName("feature_set.name", fs.Name); err != nil {
		return err
	}
	if err := validateName("feature_set.entity_type", fs.EntityType); err != nil {
		return err
	}
	if len(fs.Features) == 0 {
		return Invalid("feature_set.features", "at least one feature is required")
	}
	if len(fs.Features) > MaxFeatures {
		return Invalid("feature_set.features", "at most %d features are allowed, got %d", MaxFeatures, len(fs.Features))
	}
	seen := make(map[string]bool, len(fs.Features))
	for i, f := range fs.Features {
		field := fmt.Sprintf("feature_set.features[%d]", i)
		if err := validateName(field+".name", f.Name); err != nil {
			return err
		}
		if seen[f.Name] {
			return Invalid(field+".name", "duplicate feature %q", f.Name)
		}
		seen[f.Name] = true
		if !f.Type.Valid() {
			return Invalid(field+".type", "a value type is required")
		}
	}
	if fs.TTL < 0 {
		return Invalid("feature_set.ttl", "must not be negative")
	}
	if len(fs.Description) > 4096 {
		return Invalid("feature_set.description", "at most 4096 bytes")
	}
	if len(fs.Owner) > 256 {
		return Invalid("feature_set.owner", "at most 256 bytes")
	}
	return nil
}

// validateName accepts what is safe in keys, refs and file names: a letter first, then
// letters, digits, '_' and '-'. In particular ':' (the ref separator) and '#' (the key
// separator) are refused.
func validateName(field, s string) error {
	if s == "" {
		return Invalid(field, "is required")
	}
	if len(s) > MaxNameLen {
		return Invalid(field, "at most %d characters, got %d", MaxNameLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if letter || i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '-') {
			continue
		}
		return Invalid(field, "must start with a letter and hold only letters, digits, '_' and '-'")
	}
	return nil
}

// Evolve checks that next may replace prev and returns the set to store. Adding features
// and changing ttl, description and owner are allowed. Removing a feature or changing a
// feature's type, the entity type or personal_data is KindFailedPrecondition, because
// rows already written (and writes validated against prev that are still in flight) must
// stay valid under next. changed is false when next equals prev apart from Version.
func Evolve(prev, next FeatureSet) (out FeatureSet, changed bool, err error) {
	if next.EntityType != prev.EntityType {
		return FeatureSet{}, false, FailedPrecondition("feature_set.entity_type", "cannot change from %q to %q", prev.EntityType, next.EntityType)
	}
	if next.PersonalData != prev.PersonalData {
		return FeatureSet{}, false, FailedPrecondition("feature_set.personal_data", "cannot be changed after creation")
	}
	for _, p := range prev.Features {
		n, ok := next.Feature(p.Name)
		if !ok {
			return FeatureSet{}, false, FailedPrecondition("feature_set.features", "feature %q cannot be removed", p.Name)
		}
		if n.Type != p.Type {
			return FeatureSet{}, false, FailedPrecondition("feature_set.features", "feature %q cannot change type from %s to %s", p.Name, p.Type, n.Type)
		}
	}
	// Keep the existing order and append new features, so the stored order is stable.
	out = next
	out.Features = append([]FeatureSpec(nil), prev.Features...)
	for _, f := range next.Features {
		if _, ok := prev.Feature(f.Name); !ok {
			out.Features = append(out.Features, f)
		}
	}
	changed = len(out.Features) != len(prev.Features) || out.TTL != prev.TTL ||
		out.Description != prev.Description || out.Owner != prev.Owner
	if changed {
		out.Version = prev.Version + 1
	} else {
		out.Version = prev.Version
	}
	return out, changed, nil
}

// EncodeFeatureSet is the stored form of a feature set, in DynamoDB and in the cache.
func EncodeFeatureSet(fs FeatureSet) ([]byte, error) {
	return json.Marshal(fs)
}

// DecodeFeatureSet parses the stored form.
func DecodeFeatureSet(b []byte) (FeatureSet, error) {
	var fs FeatureSet
	if err := json.Unmarshal(b, &fs); err != nil {
		return FeatureSet{}, fmt.Errorf("decode feature set: %w", err)
	}
	return fs, nil
}
