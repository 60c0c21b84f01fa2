package consumers

import (
	"bytes"
	"fmt"
	"strings"
)

// Parse checks a consumers document and builds its Set. Its errors name the
// consumer and the credential at fault, never a key.
//
// It reads the document twice: the first pass checks it and counts what the
// Set needs, the second fills arrays of exactly that size, so a large document
// leaves no slack behind and needs no copy at the end.
func Parse(doc []byte) (*Set, error) { return parse(doc, nil) }

// parse is Parse telling release, as it goes, which stretches of the
// document it is done with in the current pass, so a caller holding the
// document in a mapped file can let those pages go.
func parse(doc []byte, release func(from, to int)) (*Set, error) {
	var b builder
	// One parser for both passes: the second reuses the buffers the first
	// grew.
	p := &parser{data: doc, b: &b, release: release}
	if err := p.document(); err != nil {
		return nil, err
	}
	if err := b.startFill(); err != nil {
		return nil, err
	}
	p.pos, p.released = 0, 0
	if err := p.document(); err != nil {
		return nil, err
	}
	return b.finish(), nil
}

// releaseEvery is how much of the document the parser moves through
// between two calls of its release function.
const releaseEvery = 8 << 20

type parser struct {
	data    []byte
	pos     int
	b       *builder
	draft   consumerDraft
	groups  groupsDraft
	out     *[]byte // the buffer of the draft being read: draft's or groups'
	scratch []byte

	release  func(from, to int)
	released int
}

// The byte order marks a Windows editor may start a file with.
var (
	bomUTF8    = []byte("\xef\xbb\xbf")
	bomUTF16BE = []byte("\xfe\xff")
	bomUTF16LE = []byte("\xff\xfe")
)

func (p *parser) document() error {
	// A byte order mark is refused by name rather than skipped: JSON text
	// must not start with one (RFC 8259, 8.1), Go's encoding/json and
	// Python's json refuse it, and a document this module accepts should
	// read the same in the other tools that handle it (a generator, a
	// script, `caddy key-auth` itself, which decodes with encoding/json).
	switch {
	case bytes.HasPrefix(p.data, bomUTF8):
		return p.errAt(0, "the document starts with a UTF-8 byte order mark (bytes EF BB BF); save it as UTF-8 without one")
	case bytes.HasPrefix(p.data, bomUTF16BE), bytes.HasPrefix(p.data, bomUTF16LE):
		return p.errAt(0, "the document is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8 without a byte order mark")
	}
	seen, seenGroups := false, false
	p.out = &p.draft.buf
	p.groups.reset(p.lineOf)
	err := p.object(fixed("the document"), func(name []byte, at int) error {
		switch string(name) {
		case "consumers":
			if seen {
				return p.errAt(at, `"consumers" given twice`)
			}
			seen = true
			if p.null() {
				// A generator's nil list would otherwise wipe every consumer.
				return p.errAt(at, `"consumers" is null; an empty list is []`)
			}
			return p.array(fixed(`"consumers"`), p.consumer)
		case "groups":
			if seenGroups {
				return p.errAt(at, `"groups" given twice`)
			}
			seenGroups = true
			return p.groupsObject()
		}
		return p.errAt(at, `unknown field in the document (fields: groups, consumers)`)
	})
	if err != nil {
		return err
	}
	if !seen {
		return p.errAt(0, `the document has no "consumers" field`)
	}
	// peek's 0 is the end or a NUL byte: the position tells them apart.
	if p.peek(); p.pos < len(p.data) {
		return p.errAt(p.pos, "unexpected data after the document")
	}
	// The groups are checked after the consumers, wherever they stand, as
	// Build checks them; the second pass reads them again and leaves them.
	if p.b.filling {
		return nil
	}
	if err := p.groups.check(); err != nil {
		return err
	}
	p.b.setGroups(&p.groups)
	return nil
}

// groupsObject reads the document's groups: an object of groups by name,
// or null for none.
func (p *parser) groupsObject() error {
	if p.null() {
		return nil
	}
	g := &p.groups
	p.out = &g.buf
	defer func() { p.out = &p.draft.buf }()
	return p.object(fixed("groups"), func(name []byte, at int) error {
		gr := groupDraft{name: p.keep(name), at: at} // kept before str reuses its buffer
		err := fields(p, fixed("a group"), groupMembers, &gr)
		g.groups = append(g.groups, gr)
		return err
	})
}

// limits reads a limits object, or null for none, into dst; its strings go
// where the draft being read keeps them.
func (p *parser) limits(what label, dst *[]limitDraft) (limitRange, error) {
	r := limitRange{start: len(*dst), end: len(*dst)}
	if p.null() {
		return r, nil
	}
	err := p.object(what, func(name []byte, _ int) error {
		l := limitDraft{meter: p.keep(name)} // kept before str reuses its buffer
		var err error
		if string(name) == InFlight {
			l.inFlight, l.hasMax = true, true
			l.max, err = p.integer(fixed("in_flight"))
		} else {
			err = fields(p, fixed("a limit"), limitMembers, &l)
		}
		*dst = append(*dst, l)
		return err
	})
	r.end = len(*dst)
	return r, err
}

func (p *parser) consumer(index int) error {
	d := &p.draft
	d.reset(index, p.pos)
	p.out = &d.buf
	err := fields(p, label{consumer: index + 1}, consumerMembers, d)
	if err != nil {
		return err
	}
	err = d.check()
	if err == nil {
		err = p.b.add(d)
	}
	if err != nil {
		return fmt.Errorf("line %d: %w", p.lineOf(d.at), err)
	}
	if p.release != nil && p.pos-p.released >= releaseEvery {
		p.release(p.released, p.pos)
		p.released = p.pos
	}
	return nil
}

func (p *parser) credential(int) error {
	d := &p.draft
	d.credentials = append(d.credentials, credentialDraft{})
	return fields(p, label{consumer: d.index + 1, key: len(d.credentials)}, credentialMembers, &d.credentials[len(d.credentials)-1])
}

// member reads the member of an object that it is named for into a draft.
type member[T any] struct {
	name string
	read func(p *parser, v *T) error
}

// The members of a consumer, a credential and a previous secret: those of
// their description, ConsumerEntry, CredentialEntry and PreviousSecret
// (TestParseFieldsAreDescribed), the frequent ones first, as fields tries
// them in turn.
var (
	consumerMembers = []member[consumerDraft]{
		{"username", func(p *parser, d *consumerDraft) (err error) {
			d.hasUsername, err = p.optStr(fixed("username"), &d.username)
			return err
		}},
		{"id", func(p *parser, d *consumerDraft) (err error) {
			d.hasID, err = p.optStr(fixed("id"), &d.id)
			return err
		}},
		{"custom_id", func(p *parser, d *consumerDraft) (err error) {
			_, err = p.optStr(fixed("custom_id"), &d.customID)
			return err
		}},
		{"tags", func(p *parser, d *consumerDraft) error { return p.strings(fixed("tags"), fixed("a tag"), &d.tags) }},
		{"keys", func(p *parser, _ *consumerDraft) error { return p.array(fixed("keys"), p.credential) }},
		{"groups", func(p *parser, d *consumerDraft) error {
			return p.strings(fixed("groups"), fixed("a group"), &d.groups)
		}},
		{"labels", func(p *parser, _ *consumerDraft) error { return p.labels() }},
		{"disabled", func(p *parser, d *consumerDraft) error { return p.optBool("disabled", &d.disabled) }},
		{"limits", func(p *parser, d *consumerDraft) (err error) {
			d.ownLimits, err = p.limits(fixed("limits"), &d.limits)
			return err
		}},
	}
	credentialMembers = []member[credentialDraft]{
		{"id", func(p *parser, c *credentialDraft) (err error) {
			c.hasID, err = p.optStr(fixed("id"), &c.id)
			return err
		}},
		{"key", func(p *parser, c *credentialDraft) (err error) {
			c.hasKey, err = p.optStr(fixed("key"), &c.key)
			return err
		}},
		{"hash", func(p *parser, c *credentialDraft) (err error) {
			c.hasHash, err = p.optStr(fixed("hash"), &c.hash)
			return err
		}},
		{"expires_at", func(p *parser, c *credentialDraft) (err error) {
			c.hasExpiry, err = p.optStr(fixed("expires_at"), &c.expiry)
			return err
		}},
		{"created_at", func(p *parser, c *credentialDraft) (err error) {
			c.hasCreated, err = p.optStr(fixed("created_at"), &c.created)
			return err
		}},
		{"disabled", func(p *parser, c *credentialDraft) error { return p.optBool("disabled", &c.disabled) }},
		{"canary", func(p *parser, c *credentialDraft) error { return p.optBool("canary", &c.canary) }},
		{"limits", func(p *parser, c *credentialDraft) (err error) {
			c.limits, err = p.limits(fixed("limits"), &p.draft.limits)
			return err
		}},
		{"previous", func(p *parser, _ *credentialDraft) error { return p.array(fixed("previous"), p.previous) }},
	}
	previousMembers = []member[previousDraft]{
		{"hash", func(p *parser, v *previousDraft) (err error) {
			v.hasHash, err = p.optStr(fixed("hash"), &v.hash)
			return err
		}},
		{"expires_at", func(p *parser, v *previousDraft) (err error) {
			v.hasExpiry, err = p.optStr(fixed("expires_at"), &v.expiry)
			return err
		}},
	}
	// The members of a group of the document's groups (GroupEntry) and of
	// a meter's limit (LimitEntry).
	groupMembers = []member[groupDraft]{
		{"limits", func(p *parser, g *groupDraft) (err error) {
			g.limits, err = p.limits(fixed("limits"), &p.groups.limits)
			return err
		}},
		{"member_limits", func(p *parser, g *groupDraft) (err error) {
			g.memberLimits, err = p.limits(fixed("member_limits"), &p.groups.limits)
			return err
		}},
	}
	limitMembers = []member[limitDraft]{
		{"max", func(p *parser, l *limitDraft) (err error) {
			if p.null() {
				return nil
			}
			l.hasMax = true
			l.max, err = p.integer(fixed("max"))
			return err
		}},
		{"per", func(p *parser, l *limitDraft) (err error) {
			l.hasPer, err = p.optStr(fixed("per"), &l.per)
			return err
		}},
		{"timezone", func(p *parser, l *limitDraft) (err error) {
			l.hasTimezone, err = p.optStr(fixed("timezone"), &l.timezone)
			return err
		}},
	}
)

// previous reads a previous secret of the credential being read, the
// draft's last.
func (p *parser) previous(i int) error {
	d := &p.draft
	cred := len(d.credentials) - 1
	d.previous = append(d.previous, previousDraft{cred: cred, n: i + 1})
	return fields(p, label{consumer: d.index + 1, key: cred + 1, previous: i + 1}, previousMembers, &d.previous[len(d.previous)-1])
}

// strings reads an array of strings (null for none) into the draft.
func (p *parser) strings(what, elem label, dst *[]span) error {
	return p.array(what, func(int) error {
		s, err := p.str(elem)
		if err == nil {
			*dst = append(*dst, p.keep(s))
		}
		return err
	})
}

// labels reads a consumer's labels: an object of strings, or null for none.
// Their names and values are checked with the consumer, so that the error
// names it.
func (p *parser) labels() error {
	if p.null() {
		return nil
	}
	d := &p.draft
	return p.object(fixed("labels"), func(name []byte, _ int) error {
		l := labelDraft{name: p.keep(name)} // kept before str reuses its buffer
		v, err := p.str(fixed("a label value"))
		if err != nil {
			return err
		}
		l.value = p.keep(v)
		d.labels = append(d.labels, l)
		return nil
	})
}

// maxFields is how many members of one object fields can tell apart.
const maxFields = 16

// fields walks an object whose members must be among members, each at most
// once, and has each read its value into v.
func fields[T any](p *parser, what label, members []member[T], v *T) error {
	var seen [maxFields]bool
	return p.object(what, func(name []byte, at int) error {
		for i := range members {
			if string(name) == members[i].name { // compares in place, without a copy
				if seen[i] {
					return p.errAt(at, "field %s given twice in %s", name, what)
				}
				seen[i] = true
				return members[i].read(p, v)
			}
		}
		// The name is not quoted: a broken document may have a key there.
		names := make([]string, len(members))
		for i := range members {
			names[i] = members[i].name
		}
		return p.errAt(at, "unknown field in %s (fields: %s)", what, strings.Join(names, ", "))
	})
}

// ParseLimits reads a limits object on its own, as a consumers document
// holds one (the Redis layout keeps limits as JSON in a hash field), with
// the same checks; what names it in errors ("consumer \"alice\": limits").
// Null and the empty string are no limits.
func ParseLimits(data []byte, what string) (LimitsEntry, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	var (
		buf []byte
		ls  []limitDraft
	)
	p := &parser{data: data, out: &buf}
	if _, err := p.limits(fixed("limits"), &ls); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if p.peek(); p.pos < len(p.data) {
		return nil, fmt.Errorf("%s: %w", what, p.errAt(p.pos, "unexpected data after the limits"))
	}
	if err := checkLimits(buf, ls, func() string { return what }); err != nil {
		return nil, err
	}
	if len(ls) == 0 {
		return nil, nil
	}
	out := make(LimitsEntry, len(ls))
	for _, l := range ls {
		out[string(buf[l.meter.start:l.meter.end])] = LimitEntry{Max: l.max, Per: l.window.Per(), Timezone: l.window.Timezone()}
	}
	return out, nil
}
