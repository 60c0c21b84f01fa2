package consumers

import (
	"iter"
	"slices"
	"strings"
	"unsafe"

	"github.com/keyauth/caddy-keyauth/consumers/limits"
)

// limitTables are the limits of a Set and its document's groups.
type limitTables struct {
	limits         []limitRec          // the limits objects, each a range, sorted by meter
	calendars      []*calendar         // the calendars of limitRec.cal
	groups         []groupRec          // the document's groups, sorted by name
	groupRefs      []uint32            // ranges of indexes of groups: a consumer's groups that have limits
	consumerLimits []consumerLimitsRec // of extraRec.limits
	credLimits     []credLimitsRec     // of the credentials flagged flagLimits, by credential
}

func (t *limitTables) bytes() int {
	if t == nil {
		return 0
	}
	return int(unsafe.Sizeof(*t)) + len(t.limits)*int(unsafe.Sizeof(limitRec{})) + len(t.calendars)*8 +
		len(t.groups)*int(unsafe.Sizeof(groupRec{})) + len(t.groupRefs)*4 +
		len(t.consumerLimits)*int(unsafe.Sizeof(consumerLimitsRec{})) + len(t.credLimits)*int(unsafe.Sizeof(credLimitsRec{}))
}

// limitRec is one limit of a Set. It holds no pointer (its calendar is an
// index), so the garbage collector never scans the limits record by
// record.
type limitRec struct {
	meter strRef // interned: one meter's name is one strRef throughout a Set
	max   int64
	span  int64  // a window of a duration, in nanoseconds
	cal   uint32 // calendars[cal-1], or 0 for a duration or no window
}

// groupRec is a group of the document's groups.
type groupRec struct {
	name                 strRef
	limits, memberLimits strRef // ranges of Set.limits
}

// consumerLimitsRec is what a consumer with limits has: its own, and its
// groups that have any, in the order it lists them.
type consumerLimitsRec struct {
	own    strRef // a range of Set.limits
	groups strRef // a range of Set.groupRefs
}

// credLimitsRec is a credential's limits.
type credLimitsRec struct {
	cred   uint32
	limits strRef // a range of Set.limits
}

// Limit is one limit of a Set: at most Max of a meter per window. For
// in_flight, Max caps the requests under way at once and Window is zero.
type Limit struct {
	Max    int64
	Window Window
}

// Limits is a limits object of a Set: its limits by meter, in_flight
// among them as the meter InFlight. The zero Limits has none. It is a
// view of the Set's memory: reading it allocates nothing.
type Limits struct {
	set *Set
	r   strRef
}

// Len is how many limits there are.
func (l Limits) Len() int { return int(l.r.n) }

// At is the i-th limit, in the order of the meters' names (byte-wise).
func (l Limits) At(i int) (meter string, lim Limit) {
	rec := &l.set.lim.limits[int(l.r.off)+i]
	return l.set.str(rec.meter), l.set.limit(rec)
}

// Get is the limit of a meter, and whether there is one.
func (l Limits) Get(meter string) (Limit, bool) {
	recs := l.recs()
	i, ok := slices.BinarySearchFunc(recs, meter, func(r limitRec, m string) int {
		return strings.Compare(l.set.str(r.meter), m)
	})
	if !ok {
		return Limit{}, false
	}
	return l.set.limit(&recs[i]), true
}

// All yields the limits by meter, in the order of the meters' names.
func (l Limits) All() iter.Seq2[string, Limit] {
	return func(yield func(string, Limit) bool) {
		for i := range l.Len() {
			if !yield(l.At(i)) {
				return
			}
		}
	}
}

// Entry is the limits in the document's form (LimitsEntry), or nil when
// there are none. It allocates: it is for writers of the document (the
// Redis layout), not for requests.
func (l Limits) Entry() LimitsEntry {
	if l.Len() == 0 {
		return nil
	}
	e := make(LimitsEntry, l.Len())
	for meter, lim := range l.All() {
		e[meter] = LimitEntry{Max: lim.Max, Per: lim.Window.Per(), Timezone: lim.Window.Timezone()}
	}
	return e
}

func (l Limits) recs() []limitRec {
	if l.r.n == 0 {
		return nil
	}
	return l.set.lim.limits[l.r.off : l.r.off+l.r.n]
}

func (s *Set) limit(r *limitRec) Limit {
	lim := Limit{Max: r.max, Window: Window{span: r.span}}
	if r.cal != 0 {
		lim.Window.cal = s.lim.calendars[r.cal-1]
	}
	return lim
}

func (s *Set) limitsOf(r strRef) Limits { return Limits{s, r} }

// Group is a group of the document's groups (Document.Groups).
type Group struct {
	set *Set
	i   uint32
}

// Group finds a group of the document's groups by name. A consumer's group
// that the document does not describe is not one: it has no limits.
func (s *Set) Group(name string) (Group, bool) {
	if s == nil || s.lim == nil {
		return Group{}, false
	}
	i, ok := slices.BinarySearchFunc(s.lim.groups, name, func(g groupRec, n string) int {
		return strings.Compare(s.str(g.name), n)
	})
	return Group{s, uint32(i)}, ok
}

// Groups yields the document's groups, in the order of their names.
func (s *Set) Groups() iter.Seq[Group] {
	return func(yield func(Group) bool) {
		if s == nil || s.lim == nil {
			return
		}
		for i := range s.lim.groups {
			if !yield(Group{s, uint32(i)}) {
				return
			}
		}
	}
}

// Name is the group's name.
func (g Group) Name() string { return g.set.str(g.set.lim.groups[g.i].name) }

// Limits are the group's pool: counted once for all its members
// (limits.Group, scoped by the group's name).
func (g Group) Limits() Limits { return g.set.limitsOf(g.set.lim.groups[g.i].limits) }

// MemberLimits apply to each member on its own (limits.Consumer, scoped by
// the member's id), unless the member has its own limit on the meter.
func (g Group) MemberLimits() Limits { return g.set.limitsOf(g.set.lim.groups[g.i].memberLimits) }

func (c Consumer) limitsRec() consumerLimitsRec {
	if x := c.extra().limits(); x != 0 {
		return c.set.lim.consumerLimits[x-1]
	}
	return consumerLimitsRec{}
}

// Limits are the consumer's own limits (ConsumerEntry.Limits), not those
// of its groups: see EachLimit for every limit that applies.
func (c Consumer) Limits() Limits { return c.set.limitsOf(c.limitsRec().own) }

// LimitGroups yields the consumer's groups that have limits, in the order
// the consumer lists them.
func (c Consumer) LimitGroups() iter.Seq[Group] {
	return func(yield func(Group) bool) {
		r := c.limitsRec().groups
		if r.n == 0 {
			return
		}
		for _, g := range c.set.lim.groupRefs[r.off : r.off+r.n] {
			if !yield(Group{c.set, g}) {
				return
			}
		}
	}
}

// HasLimits reports whether any limit applies to the consumer's requests
// (its own, or its groups'): the handler skips counting for the many
// consumers that have none.
func (c Consumer) HasLimits() bool { return c.extra().limits() != 0 }

// EachLimit yields every limit that applies to a request of the consumer
// made without a key of its own (the anonymous consumer's: every request
// that falls back to it shares them), until yield returns false. See
// Credential.EachLimit for the rule. It allocates nothing.
func (c Consumer) EachLimit(yield func(kind limits.ScopeKind, scope, meter string, l Limit) bool) {
	c.eachLimit(yield)
}

// eachLimit is EachLimit, reporting whether yield asked for more.
func (c Consumer) eachLimit(yield func(kind limits.ScopeKind, scope, meter string, l Limit) bool) bool {
	x := c.extra().limits()
	if x == 0 {
		return true
	}
	s := c.set
	rec := s.lim.consumerLimits[x-1]
	id := c.ID()
	own := s.lim.limits[rec.own.off : rec.own.off+rec.own.n]
	for i := range own {
		if !yield(limits.Consumer, id, s.str(own[i].meter), s.limit(&own[i])) {
			return false
		}
	}
	groups := s.lim.groupRefs[rec.groups.off : rec.groups.off+rec.groups.n]
	for gi, g := range groups {
		ml := s.lim.groups[g].memberLimits
		for i := range s.lim.limits[ml.off : ml.off+ml.n] {
			l := &s.lim.limits[ml.off+uint32(i)]
			// Meter names are interned: one offset per name.
			if hasMeter(own, l.meter) || s.memberMeterBefore(groups[:gi], l.meter) {
				continue
			}
			if !yield(limits.Consumer, id, s.str(l.meter), s.limit(l)) {
				return false
			}
		}
	}
	for _, g := range groups {
		gr := &s.lim.groups[g]
		name := s.str(gr.name)
		for i := range s.lim.limits[gr.limits.off : gr.limits.off+gr.limits.n] {
			l := &s.lim.limits[gr.limits.off+uint32(i)]
			if !yield(limits.Group, name, s.str(l.meter), s.limit(l)) {
				return false
			}
		}
	}
	return true
}

func hasMeter(ls []limitRec, meter strRef) bool {
	for i := range ls {
		if ls[i].meter.off == meter.off {
			return true
		}
	}
	return false
}

// memberMeterBefore reports whether one of groups sets member_limits on
// meter.
func (s *Set) memberMeterBefore(groups []uint32, meter strRef) bool {
	for _, g := range groups {
		ml := s.lim.groups[g].memberLimits
		if hasMeter(s.lim.limits[ml.off:ml.off+ml.n], meter) {
			return true
		}
	}
	return false
}

func (c Credential) limitsRef() strRef {
	if c.set.credentials[c.i].flags&flagLimits == 0 {
		return strRef{}
	}
	// A previous secret's record is a copy of its credential's: its limits
	// are the credential's, found by the credential's index.
	cl := c.set.lim.credLimits
	i, _ := slices.BinarySearchFunc(cl, uint32(c.Index()), func(r credLimitsRec, k uint32) int { return int(r.cred) - int(k) })
	return cl[i].limits
}

// Limits are the credential's own limits (CredentialEntry.Limits): see
// EachLimit for every limit that applies.
func (c Credential) Limits() Limits { return c.set.limitsOf(c.limitsRef()) }

// HasLimits reports whether any limit applies to the credential's
// requests: its own, its consumer's or its consumer's groups'.
func (c Credential) HasLimits() bool {
	return c.set.credentials[c.i].flags&flagLimits != 0 || c.Consumer().HasLimits()
}

// EachLimit yields every limit that applies to a request made with the
// credential, until yield returns false; every one must have room for the
// request to pass. A limit is counted per kind, scope and meter:
//
//   - the credential's own limits: kind limits.Credential, scope the
//     credential's id;
//   - the consumer's own limits, and the member_limits of each of its
//     groups: kind limits.Consumer, scope the consumer's id, each member
//     counted on its own. The consumer's own limit on a meter replaces
//     its groups' member_limits on that meter, and of two groups with
//     member_limits on one meter, the one the consumer lists first
//     applies: one count per consumer and meter;
//   - each group's limits: kind limits.Group, scope the group's name, one
//     pool its members share.
//
// The meter limits.InFlight is the cap of the scope's requests under way.
// Scopes and meters are strings of the Set: it allocates nothing.
func (c Credential) EachLimit(yield func(kind limits.ScopeKind, scope, meter string, l Limit) bool) {
	if r := c.limitsRef(); r.n != 0 {
		s := c.set
		id := c.ID()
		for i := range s.lim.limits[r.off : r.off+r.n] {
			l := &s.lim.limits[r.off+uint32(i)]
			if !yield(limits.Credential, id, s.str(l.meter), s.limit(l)) {
				return
			}
		}
	}
	c.Consumer().eachLimit(yield)
}
