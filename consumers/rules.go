package consumers

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxKeyLength is the longest key a consumers document may hold and the
// longest a request may present; a longer one is refused before it is hashed.
const MaxKeyLength = 4096

// check applies the rules a consumer must follow on its own; the builder
// checks those that span consumers.
func (d *consumerDraft) check() error {
	if !d.hasUsername || len(d.s(d.username)) == 0 {
		return fmt.Errorf("%s has no username", d.name())
	}
	if d.hasID && len(d.s(d.id)) == 0 {
		return fmt.Errorf("%s has an empty id", d.name())
	}
	for i := range d.credentials {
		c := &d.credentials[i]
		switch {
		case c.hasID && c.id.start == c.id.end:
			return fmt.Errorf("%s has an empty id", d.credName(i))
		case c.hasKey && c.hasHash:
			return fmt.Errorf("%s has both key and hash", d.credName(i))
		case !c.hasKey && !c.hasHash:
			return fmt.Errorf("%s has neither key nor hash", d.credName(i))
		case c.hasKey && c.key.start == c.key.end:
			return fmt.Errorf("%s has an empty key", d.credName(i))
		case c.hasKey && c.key.end-c.key.start > MaxKeyLength:
			return fmt.Errorf("%s has a key longer than %d bytes", d.credName(i), MaxKeyLength)
		case c.hasKey && keyFault(d.s(c.key)) != nil:
			return fmt.Errorf("%s: %w", d.keyName(i), keyFault(d.s(c.key)))
		case c.hasHash && !validHash(d.s(c.hash)):
			return fmt.Errorf(`%s has a malformed hash (want %q and 64 hex digits)`, d.credName(i), HashPrefix)
		}
		if c.hasExpiry {
			if _, err := time.Parse(time.RFC3339, string(d.s(c.expiry))); err != nil {
				return fmt.Errorf("%s has an expires_at that is not an RFC 3339 time", d.credName(i))
			}
		}
		if c.hasCreated {
			if _, err := time.Parse(time.RFC3339, string(d.s(c.created))); err != nil {
				return fmt.Errorf("%s has a created_at that is not an RFC 3339 time", d.credName(i))
			}
		}
		if !c.limits.empty() {
			where := func() string { return d.credName(i) + ": limits" }
			if err := checkLimits(d.buf, d.limits[c.limits.start:c.limits.end], where); err != nil {
				return err
			}
		}
	}
	if err := d.checkPrevious(); err != nil {
		return err
	}
	if err := d.checkTags(); err != nil {
		return err
	}
	if err := d.checkGroups(); err != nil {
		return err
	}
	if err := d.checkLabels(); err != nil {
		return err
	}
	if !d.ownLimits.empty() {
		where := func() string { return d.name() + ": limits" }
		return checkLimits(d.buf, d.limits[d.ownLimits.start:d.ownLimits.end], where)
	}
	return nil
}

// Limits of groups and labels, as the authorization rules of APISIX and Kong
// need them: a group name travels in a comma-separated header, a label value
// in a header or an upstream address.
const (
	MaxGroupNameChars  = 128  // characters (Unicode code points) of a group name
	MaxLabelNameLength = 64   // bytes (all ASCII) of a label name
	MaxLabelValueBytes = 1024 // bytes of a label value's UTF-8
)

func (d *consumerDraft) checkGroups() error {
	for i, g := range d.groups {
		if f, quote := groupFault(d.s(g)); f != "" {
			if quote {
				return fmt.Errorf("%s: group %q %s", d.name(), d.s(g), f)
			}
			return fmt.Errorf("%s: group #%d %s", d.name(), i+1, f)
		}
	}
	if len(d.groups) <= 8 { // the usual few: compared pairwise, cheaper than sorting
		for i := 1; i < len(d.groups); i++ {
			for _, o := range d.groups[:i] {
				if bytes.Equal(d.s(o), d.s(d.groups[i])) {
					return fmt.Errorf("%s lists group %q twice", d.name(), d.s(o))
				}
			}
		}
		return nil
	}
	// Sorted, a duplicate is next to its twin: no quadratic scan of a long
	// list, and no allocation once the scratch slice has grown.
	d.order = append(d.order[:0], d.groups...)
	slices.SortFunc(d.order, func(a, b span) int { return bytes.Compare(d.s(a), d.s(b)) })
	for i := 1; i < len(d.order); i++ {
		if bytes.Equal(d.s(d.order[i-1]), d.s(d.order[i])) {
			return fmt.Errorf("%s lists group %q twice", d.name(), d.s(d.order[i]))
		}
	}
	return nil
}

// keyName is how a key's errors refer to its credential: by its id, or by
// its position and the id derived from it, so an operator can find it
// without the error quoting the key.
func (d *consumerDraft) keyName(i int) string {
	if d.credentials[i].hasID {
		return d.credName(i)
	}
	return fmt.Sprintf("%s (credential %q)", d.credName(i), d.credentialID(nil, i))
}

// ValidateKey checks that a key can be sent as it is stored: not empty, not
// blank, no whitespace at either end and no control character anywhere.
// Header values are trimmed and a "+" in a query is a space, so a key with
// an edge of whitespace could only ever match by accident. Whitespace is
// Unicode's (unicode.IsSpace: also NBSP and the other Unicode spaces, which
// look like nothing in a terminal and which copy and paste tends to add or
// drop); control characters are C0, DEL and C1 (unicode.IsControl), which
// HTTP cannot carry in a header. Its errors never quote the key. Consumers
// documents are checked with it, and so should be any tool that writes keys.
func ValidateKey(key string) error { return keyFault([]byte(key)) }

func keyFault(k []byte) error {
	if len(k) == 0 {
		return errors.New("the key is empty")
	}
	first, _ := utf8.DecodeRune(k)
	last, _ := utf8.DecodeLastRune(k)
	switch {
	case unicode.IsSpace(first) && bytes.IndexFunc(k, func(r rune) bool { return !unicode.IsSpace(r) }) < 0:
		return errors.New("the key is blank (only whitespace)")
	case unicode.IsSpace(first):
		return errors.New("the key begins with whitespace")
	case unicode.IsSpace(last):
		return errors.New("the key ends with whitespace")
	}
	// Every key of a large document passes here, twice: ASCII is checked
	// byte by byte, without decoding.
	for i := 0; i < len(k); {
		if c := k[i]; c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return errors.New("the key contains a control character")
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(k[i:])
		if unicode.IsControl(r) {
			return errors.New("the key contains a control character")
		}
		i += n
	}
	return nil
}

// groupFault is why a group name is refused, or "", and whether the error
// may quote the name: an empty one or one too long to read is named by its
// place instead.
func groupFault(name []byte) (fault string, quote bool) {
	switch n := utf8.RuneCount(name); {
	case n == 0:
		return "is empty", false
	case n > MaxGroupNameChars:
		return fmt.Sprintf("is longer than %d characters", MaxGroupNameChars), false
	}
	if !validGroupName(name) {
		return "holds white space, a comma or a control character", true
	}
	return "", false
}

// validGroupName reports whether a group name holds no white space, comma or
// control character (Unicode's categories, so no NEL or no-break space
// either).
func validGroupName(name []byte) bool {
	for i := 0; i < len(name); {
		c := name[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == ',' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(name[i:])
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
		i += size
	}
	return true
}

func (d *consumerDraft) checkLabels() error {
	for i, l := range d.labels {
		name := d.s(l.name)
		if !validLabelName(name) {
			if len(name) == 0 || len(name) > MaxLabelNameLength {
				return fmt.Errorf("%s: the name of label #%d is not 1 to %d letters, digits, '_', '-' or '.'",
					d.name(), i+1, MaxLabelNameLength)
			}
			return fmt.Errorf("%s: label name %q is not 1 to %d letters, digits, '_', '-' or '.'",
				d.name(), name, MaxLabelNameLength)
		}
		// A value is not quoted: it may be an address or a token.
		switch labelValueFault(d.s(l.value)) {
		case valueTooLong:
			return fmt.Errorf("%s: label %q has a value longer than %d bytes", d.name(), name, MaxLabelValueBytes)
		case valueControl:
			return fmt.Errorf("%s: label %q has a control character in its value", d.name(), name)
		}
	}
	if len(d.labels) < 2 {
		return nil
	}
	// Sorted by name, as the Set keeps them for its binary search.
	slices.SortFunc(d.labels, func(a, b labelDraft) int { return bytes.Compare(d.s(a.name), d.s(b.name)) })
	for i := 1; i < len(d.labels); i++ {
		if bytes.Equal(d.s(d.labels[i-1].name), d.s(d.labels[i].name)) {
			return fmt.Errorf("%s has label %q twice", d.name(), d.s(d.labels[i].name))
		}
	}
	return nil
}

func validLabelName(name []byte) bool {
	if len(name) == 0 || len(name) > MaxLabelNameLength {
		return false
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// valueFault is why a label value is refused: the rule is labelValueFault's,
// and each caller words it for what it names (a document's label, or the
// value alone).
type valueFault uint8

const (
	valueOK valueFault = iota
	valueTooLong
	valueControl
)

func labelValueFault(v []byte) valueFault {
	switch {
	case len(v) > MaxLabelValueBytes:
		return valueTooLong
	case hasControl(v):
		return valueControl
	}
	return valueOK
}

// hasControl reports whether v holds a control character: C0, DEL or C1.
func hasControl(v []byte) bool {
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			if c < ' ' || c == 0x7f {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(v[i:])
		if unicode.IsControl(r) {
			return true
		}
		i += size
	}
	return false
}

func validHash(h []byte) bool {
	if len(h) != len(HashPrefix)+64 || string(h[:len(HashPrefix)]) != HashPrefix {
		return false
	}
	for _, c := range h[len(HashPrefix):] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// CheckGroupName reports why name cannot be a group name, or nil: the rules
// a consumers document's groups follow, for configuration (a matcher, an
// allow list) that names groups and would otherwise silently never match.
func CheckGroupName(name string) error {
	if f, quote := groupFault([]byte(name)); f != "" {
		if quote {
			return fmt.Errorf("group name %q %s", name, f)
		}
		return fmt.Errorf("group name %s", f)
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
	switch labelValueFault([]byte(v)) {
	case valueTooLong:
		return fmt.Errorf("label value is longer than %d bytes", MaxLabelValueBytes)
	case valueControl:
		return errors.New("label value has a control character")
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

// checkPrevious applies the rules of previous secrets: each one a hash (a
// roll never keeps an old key in plain text) with a required expiry, and
// none on a canary, a key issued to nobody that nobody rolls. Errors number
// a previous secret within its credential; the hash is never quoted.
func (d *consumerDraft) checkPrevious() error {
	for i := range d.previous {
		p := &d.previous[i]
		n := p.n
		switch {
		case d.credentials[p.cred].canary:
			return fmt.Errorf("%s is a canary and cannot have previous secrets", d.credName(p.cred))
		case !p.hasHash:
			return fmt.Errorf("%s: previous secret #%d has no hash", d.credName(p.cred), n)
		case !validHash(d.s(p.hash)):
			return fmt.Errorf(`%s: previous secret #%d has a malformed hash (want %q and 64 hex digits)`, d.credName(p.cred), n, HashPrefix)
		case !p.hasExpiry:
			return fmt.Errorf("%s: previous secret #%d has no expires_at (a previous secret always expires)", d.credName(p.cred), n)
		}
		if _, err := time.Parse(time.RFC3339, string(d.s(p.expiry))); err != nil {
			return fmt.Errorf("%s: previous secret #%d has an expires_at that is not an RFC 3339 time", d.credName(p.cred), n)
		}
	}
	return nil
}

// Limits of a limits object.
const (
	// MaxMeterNameLength is the longest meter name, in bytes (all ASCII).
	MaxMeterNameLength = 64
	// MaxLimit is the largest max of a limit: 2^53-1, the largest integer
	// a double holds exactly, so that any store counts to it exactly (a
	// Redis script's numbers are doubles).
	MaxLimit = 1<<53 - 1
)

// CheckMeterName reports why name cannot be a meter's name, or nil: a
// meter is named as a label is, 1 to MaxMeterNameLength letters, digits,
// '_', '-' or '.', and in_flight is not a meter but the cap of concurrent
// requests.
func CheckMeterName(name string) error {
	switch {
	case name == InFlight:
		return errors.New(`"in_flight" is the cap of concurrent requests, not a meter`)
	case !validMeterName([]byte(name)):
		return fmt.Errorf("meter name %q is not 1 to %d letters, digits, '_', '-' or '.'", name, MaxMeterNameLength)
	}
	return nil
}

func validMeterName(name []byte) bool { return validLabelName(name) }

// checkLimits checks the limits object ls of a draft whose strings are in
// buf, and finds the windows of its limits; where names the object in
// errors ("consumer \"alice\": limits"). It sorts ls by meter name, as the
// Set keeps them: the first fault named is the same whichever order the
// document gave them in.
func checkLimits(buf []byte, ls []limitDraft, where func() string) error {
	s := func(sp span) []byte { return buf[sp.start:sp.end] }
	slices.SortFunc(ls, func(a, b limitDraft) int { return bytes.Compare(s(a.meter), s(b.meter)) })
	for i := range ls {
		l := &ls[i]
		name := s(l.meter)
		if i > 0 && bytes.Equal(s(ls[i-1].meter), name) {
			return fmt.Errorf("%s: %q given twice", where(), name)
		}
		if l.inFlight {
			switch {
			case l.hasPer || l.hasTimezone:
				return fmt.Errorf("%s: in_flight has a per or a timezone; it caps the requests under way at any time", where())
			case l.max < 0:
				return fmt.Errorf("%s: in_flight is negative", where())
			case l.max > MaxLimit:
				return fmt.Errorf("%s: in_flight is over %d", where(), int64(MaxLimit))
			}
			continue
		}
		switch {
		case len(name) == 0:
			return fmt.Errorf("%s: a meter has an empty name", where())
		case len(name) > MaxMeterNameLength:
			return fmt.Errorf("%s: a meter's name is longer than %d bytes", where(), MaxMeterNameLength)
		case !validMeterName(name):
			return fmt.Errorf("%s: meter name %q is not 1 to %d letters, digits, '_', '-' or '.'", where(), name, MaxMeterNameLength)
		case !l.hasMax:
			return fmt.Errorf("%s: meter %q has no max", where(), name)
		case l.max < 0:
			return fmt.Errorf("%s: meter %q has a negative max", where(), name)
		case l.max > MaxLimit:
			return fmt.Errorf("%s: meter %q has a max over %d", where(), name, int64(MaxLimit))
		}
		var per, tz string
		if l.hasPer {
			per = string(s(l.per))
		}
		if l.hasTimezone {
			if tz = string(s(l.timezone)); tz == "" {
				return fmt.Errorf("%s: meter %q has an empty timezone", where(), name)
			}
		}
		w, err := ParseWindow(per, tz)
		if err != nil {
			return fmt.Errorf("%s: meter %q %w", where(), name, err)
		}
		l.window = w
	}
	return nil
}

// check applies the rules of the document's groups, sorted by name: the
// first fault named is the same whichever order the document gave them in.
func (g *groupsDraft) check() error {
	s := func(sp span) []byte { return g.buf[sp.start:sp.end] }
	slices.SortFunc(g.groups, func(a, b groupDraft) int { return bytes.Compare(s(a.name), s(b.name)) })
	for i := range g.groups {
		gr := &g.groups[i]
		name := s(gr.name)
		if f, quote := groupFault(name); f != "" {
			if quote {
				return g.at(gr, fmt.Errorf("groups: group name %q %s", name, f))
			}
			return g.at(gr, fmt.Errorf("groups: a group name %s", f))
		}
		if i > 0 && bytes.Equal(s(g.groups[i-1].name), name) {
			return g.at(gr, fmt.Errorf("groups: group %q described twice", name))
		}
		for _, o := range []struct {
			field string
			r     limitRange
		}{{"limits", gr.limits}, {"member_limits", gr.memberLimits}} {
			where := func() string { return fmt.Sprintf("group %q: %s", name, o.field) }
			if err := checkLimits(g.buf, g.limits[o.r.start:o.r.end], where); err != nil {
				return g.at(gr, err)
			}
		}
	}
	return nil
}
