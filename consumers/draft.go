package consumers

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// A consumerDraft is one consumer on its way into a Set: read from bytes by
// the parser (parse.go) or loaded from a ConsumerEntry by Build
// (document.go), checked by the rules (rules.go) and added by the builder
// (builder.go). Both ways in share everything after the reading, so they
// cannot differ in what they accept.

// span is a string of a draft: a stretch of its buf.
type span struct{ start, end int }

type credentialDraft struct {
	id, key, hash, expiry  span
	created                span
	hasID, hasKey, hasHash bool
	hasExpiry, hasCreated  bool
	disabled, canary       bool
	limits                 limitRange
}

// limitDraft is one member of a limits object: a meter's limit, or
// in_flight.
type limitDraft struct {
	meter, per, timezone span
	max                  int64
	hasMax, inFlight     bool
	hasPer, hasTimezone  bool
	window               Window // found by checkLimits
}

// limitRange is a limits object of a draft: limits[start:end] of its list.
type limitRange struct{ start, end int }

func (r limitRange) empty() bool { return r.start == r.end }

// groupDraft is one group of the document's groups.
type groupDraft struct {
	name                 span
	at                   int // where it starts in the document, for errors
	limits, memberLimits limitRange
}

// groupsDraft is the document's groups on their way into a Set: read
// whole (by the parser's first pass, or from Document.Groups), checked
// once the consumers are, and given to the builder, which makes the Set's
// table of groups before the first consumer goes in.
type groupsDraft struct {
	buf    []byte
	limits []limitDraft
	groups []groupDraft
	// lineOf is the line of a position in the document, for the errors of
	// a parse; nil for Build.
	lineOf func(pos int) int
}

func (g *groupsDraft) reset(lineOf func(int) int) {
	*g = groupsDraft{buf: g.buf[:0], limits: g.limits[:0], groups: g.groups[:0], lineOf: lineOf}
}

func (g *groupsDraft) keep(s []byte) span {
	start := len(g.buf)
	g.buf = append(g.buf, s...)
	return span{start, len(g.buf)}
}

func (g *groupsDraft) s(sp span) []byte { return g.buf[sp.start:sp.end] }

// at places a group's error in the document, when parsed.
func (g *groupsDraft) at(gr *groupDraft, err error) error {
	if g.lineOf == nil {
		return err
	}
	return fmt.Errorf("line %d: %w", g.lineOf(gr.at), err)
}

// previousDraft is a previous secret of credential cred (its index in
// the consumer's credentials): the credential's earlier key, kept for a
// grace period after a roll.
type previousDraft struct {
	cred               int
	n                  int // its number among its credential's, from 1: errors name it so
	hash, expiry       span
	hasHash, hasExpiry bool
}

type labelDraft struct{ name, value span }

type consumerDraft struct {
	index, at              int // at: where the consumer starts in the document
	username, id, customID span
	hasUsername, hasID     bool
	disabled               bool
	tags                   []span
	groups                 []span
	labels                 []labelDraft // sorted by name once checked
	credentials            []credentialDraft
	previous               []previousDraft // of all its credentials, in order
	// limits holds the limits objects of the consumer (ownLimits) and of
	// its credentials, each a range of it.
	limits    []limitDraft
	ownLimits limitRange
	buf       []byte // the decoded strings the spans point into
	order     []span // scratch: the groups sorted, to find a duplicate
}

func (d *consumerDraft) reset(index, at int) {
	*d = consumerDraft{index: index, at: at, tags: d.tags[:0], groups: d.groups[:0], labels: d.labels[:0],
		credentials: d.credentials[:0], previous: d.previous[:0], limits: d.limits[:0], buf: d.buf[:0], order: d.order[:0]}
}

// hasExtra reports whether the consumer needs a record in the side table of
// groups, labels, flags and limits.
func (d *consumerDraft) hasExtra() bool {
	return len(d.groups) > 0 || len(d.labels) > 0 || d.disabled || !d.ownLimits.empty()
}

func (d *consumerDraft) s(sp span) []byte { return d.buf[sp.start:sp.end] }

// name is how errors refer to the consumer.
func (d *consumerDraft) name() string {
	if d.hasUsername && d.username.end > d.username.start {
		return fmt.Sprintf("consumer %q", d.s(d.username))
	}
	return fmt.Sprintf("consumer #%d", d.index+1)
}

// credName is how errors refer to a credential: by its id, else by position.
func (d *consumerDraft) credName(i int) string {
	if c := &d.credentials[i]; c.hasID {
		return fmt.Sprintf("%s, credential %q", d.name(), d.s(c.id))
	}
	return fmt.Sprintf("%s, key #%d", d.name(), i+1)
}

// digest is the credential's key digest (credentialDigest); the draft has
// passed check.
func (d *consumerDraft) digest(c *credentialDraft) Digest {
	return credentialDigest(c.hasKey, d.s(c.key), d.s(c.hash))
}

// credentialDigest is a credential's key digest: hashed from the key if it
// has one, else decoded from its hash, which must be well formed (validHash).
func credentialDigest[S ~string | ~[]byte](hasKey bool, key, hash S) Digest {
	if hasKey {
		return sha256.Sum256([]byte(key))
	}
	var dg Digest
	_, _ = hex.Decode(dg[:], []byte(hash[len(HashPrefix):]))
	return dg
}

// expires is the credential's expiry in unix nanoseconds, 0 for never.
func (d *consumerDraft) expires(c *credentialDraft) int64 {
	if !c.hasExpiry {
		return 0
	}
	return expiryNanos(d.s(c.expiry))
}

// previousExpires is when a previous secret stops working, in unix
// nanoseconds: its own expires_at, or its credential's expiry if that
// comes first. It is never 0 (never): a previous secret always expires.
func (d *consumerDraft) previousExpires(p *previousDraft) int64 {
	own := expiryNanos(d.s(p.expiry))
	if cred := d.expires(&d.credentials[p.cred]); cred != 0 {
		return min(own, cred)
	}
	return own
}

// expiryNanos is a checked RFC 3339 expiry in unix nanoseconds, never 0.
func expiryNanos(v []byte) int64 {
	t, _ := time.Parse(time.RFC3339, string(v))
	// UnixNano is undefined outside the years 1678 to 2262: a later expiry
	// (such as 9999-12-31, for never) must not wrap around into the past.
	switch {
	case t.After(maxExpiry):
		return math.MaxInt64
	case t.Before(minExpiry):
		return math.MinInt64
	}
	if n := t.UnixNano(); n != 0 {
		return n
	}
	return -1 // the epoch itself, which 0 cannot say
}

// createdAt is the credential's created_at in unix seconds; ok is false
// when it has none.
func (d *consumerDraft) createdAt(c *credentialDraft) (secs int64, ok bool) {
	if !c.hasCreated {
		return 0, false
	}
	t, _ := time.Parse(time.RFC3339, string(d.s(c.created)))
	return t.Unix(), true
}

var minExpiry, maxExpiry = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

// credentialID is the credential's id: its own, or one derived from the
// consumer's id and the credential's position, never from the key.
func (d *consumerDraft) credentialID(dst []byte, i int) []byte {
	if c := &d.credentials[i]; c.hasID {
		return append(dst, d.s(c.id)...)
	}
	return appendDerivedID(dst, d.consumerID(), i+1)
}

func (d *consumerDraft) consumerID() []byte {
	if d.hasID {
		return d.s(d.id)
	}
	return d.s(d.username)
}

// load makes the draft hold consumer c, which is #index+1 of its document.
func (d *consumerDraft) load(index int, c *ConsumerEntry) {
	d.reset(index, 0)
	d.username, d.hasUsername = d.keepString(c.Username), true
	d.id, d.hasID = d.keepString(c.ID), c.ID != ""
	d.customID = d.keepString(c.CustomID)
	for _, t := range c.Tags {
		d.tags = append(d.tags, d.keepString(t))
	}
	for _, g := range c.Groups {
		d.groups = append(d.groups, d.keepString(g))
	}
	// A map has no order: by name, so that an error about label #n names
	// the same label every time.
	for _, name := range slices.Sorted(maps.Keys(c.Labels)) {
		d.labels = append(d.labels, labelDraft{d.keepString(name), d.keepString(c.Labels[name])})
	}
	d.disabled = c.Disabled
	d.ownLimits = loadLimits(&d.buf, &d.limits, c.Limits)
	for _, k := range c.Keys {
		d.credentials = append(d.credentials, credentialDraft{
			id: d.keepString(k.ID), hasID: k.ID != "",
			key: d.keepString(k.Key), hasKey: k.Key != "",
			hash: d.keepString(k.Hash), hasHash: k.Hash != "",
			expiry: d.keepString(k.ExpiresAt), hasExpiry: k.ExpiresAt != "",
			created: d.keepString(k.CreatedAt), hasCreated: k.CreatedAt != "",
			disabled: k.Disabled, canary: k.Canary,
			limits: loadLimits(&d.buf, &d.limits, k.Limits),
		})
		for j, p := range k.Previous {
			d.previous = append(d.previous, previousDraft{
				cred: len(d.credentials) - 1, n: j + 1,
				hash: d.keepString(p.Hash), hasHash: p.Hash != "",
				expiry: d.keepString(p.ExpiresAt), hasExpiry: p.ExpiresAt != "",
			})
		}
	}
}

// loadLimits appends a limits object of a Document to a draft's limits,
// its strings to buf.
func loadLimits(buf *[]byte, dst *[]limitDraft, l LimitsEntry) limitRange {
	keep := func(s string) span {
		start := len(*buf)
		*buf = append(*buf, s...)
		return span{start, len(*buf)}
	}
	r := limitRange{start: len(*dst)}
	for name, e := range l {
		*dst = append(*dst, limitDraft{
			meter: keep(name), max: e.Max, hasMax: true, inFlight: name == InFlight,
			per: keep(e.Per), hasPer: e.Per != "", timezone: keep(e.Timezone), hasTimezone: e.Timezone != "",
		})
	}
	r.end = len(*dst)
	return r
}

// loadGroups makes the draft hold a Document's groups.
func (g *groupsDraft) load(groups map[string]GroupEntry) {
	g.reset(nil)
	for name, e := range groups {
		gr := groupDraft{name: g.keep([]byte(name))}
		gr.limits = loadLimits(&g.buf, &g.limits, e.Limits)
		gr.memberLimits = loadLimits(&g.buf, &g.limits, e.MemberLimits)
		g.groups = append(g.groups, gr)
	}
}

func (d *consumerDraft) keepString(s string) span {
	start := len(d.buf)
	d.buf = append(d.buf, s...)
	return span{start, len(d.buf)}
}
