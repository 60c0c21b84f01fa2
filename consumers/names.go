package consumers

import (
	"fmt"
	"unicode/utf8"
)

// CheckGroupName reports why name cannot be a group name, or nil: the rules
// a consumers document's groups follow, for configuration (a matcher, an
// allow list) that names groups and would otherwise silently never match.
func CheckGroupName(name string) error {
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return fmt.Errorf("group name is empty")
	case n > MaxGroupNameChars:
		return fmt.Errorf("group name is longer than %d characters", MaxGroupNameChars)
	}
	if !validGroupName([]byte(name)) {
		return fmt.Errorf("group name %q holds white space, a comma or a control character", name)
	}
	return nil
}

// CheckLabelName reports why name cannot be a label name, or nil.
func CheckLabelName(name string) error {
	if !validLabelName([]byte(name)) {
		return fmt.Errorf("label name %q is not 1 to %d letters, digits, '_', '-' or '.'", name, MaxLabelNameLength)
	}
	return nil
}

// CheckLabelValue reports why v cannot be a label's value, or nil.
func CheckLabelValue(v string) error {
	if len(v) > MaxLabelValueBytes {
		return fmt.Errorf("label value is longer than %d bytes", MaxLabelValueBytes)
	}
	if hasControl([]byte(v)) {
		return fmt.Errorf("label value has a control character")
	}
	return nil
}

// CheckIdentifier reports why v cannot be a consumer's username, id or
// custom_id (field says which), or nil: a document refuses an empty one, and
// a consumer without a custom_id has none rather than an empty one.
func CheckIdentifier(field, v string) error {
	if v == "" {
		return fmt.Errorf("%s is empty", field)
	}
	return nil
}
