package consumers

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/keyauth/caddy-keyauth/consumers/limits"
)

// limitsDoc is the example, with a consumer in two tiers, a
// consumer without limits and the anonymous one.
const limitsDoc = `{
  "groups": {
    "free": {"member_limits": {"requests": {"max": 1000, "per": "day"}, "in_flight": 2}},
    "beta": {"member_limits": {"requests": {"max": 10, "per": "minute"}, "tokens": {"max": 5000, "per": "week"}}},
    "acme-team": {"limits": {"requests": {"max": 100000, "per": "month", "timezone": "Europe/Berlin"}}},
    "no-members": {"limits": {"in_flight": 50}},
    "described": {}
  },
  "consumers": [
    {"username": "alice", "id": "a11ce", "groups": ["gold", "free", "beta", "acme-team", "described"],
     "limits": {"tokens": {"max": 2000000, "per": "month"}},
     "keys": [{"id": "alice-ci", "key": "` + keyMark + `-alice", "limits": {"requests": {"max": 100, "per": "hour"}}},
              {"id": "alice-2", "key": "` + keyMark + `-alice-2"}]},
    {"username": "bob", "groups": ["gold"], "keys": [{"key": "` + keyMark + `-bob"}]},
    {"username": "carol", "groups": ["beta", "free"], "limits": {"in_flight": 1}, "keys": [{"key": "` + keyMark + `-carol"}]},
    {"username": "anon", "groups": ["free"]}
  ]
}`

type yielded struct {
	kind         limits.ScopeKind
	scope, meter string
	max          int64
	window       string
}

func eachOf(each func(func(limits.ScopeKind, string, string, Limit) bool)) []yielded {
	var out []yielded
	each(func(k limits.ScopeKind, scope, meter string, l Limit) bool {
		out = append(out, yielded{k, scope, meter, l.Max, l.Window.String()})
		return true
	})
	return out
}

// TestEachLimit: the limits a request is charged, by the rule Credential.EachLimit
// states, in its order: the credential's, the consumer's own, its groups'
// member_limits where it has none of its own (the first group listed
// wins), then each group's pool.
func TestEachLimit(t *testing.T) {
	s := mustParse(t, limitsDoc)
	cred := func(key string) Credential {
		c, ok := s.Lookup(digestOf(keyMark + "-" + key))
		if !ok {
			t.Fatalf("%s not found", key)
		}
		return c
	}
	for _, tt := range []struct {
		name string
		got  []yielded
		want []yielded
	}{
		{"alice's key with limits", eachOf(cred("alice").EachLimit), []yielded{
			{limits.Credential, "alice-ci", "requests", 100, "hour"},
			{limits.Consumer, "a11ce", "tokens", 2000000, "month"}, // replaces beta's tokens
			{limits.Consumer, "a11ce", "in_flight", 2, ""},
			{limits.Consumer, "a11ce", "requests", 1000, "day"}, // free is listed before beta
			{limits.Group, "acme-team", "requests", 100000, "month in Europe/Berlin"},
		}},
		{"alice's other key", eachOf(cred("alice-2").EachLimit), []yielded{
			{limits.Consumer, "a11ce", "tokens", 2000000, "month"},
			{limits.Consumer, "a11ce", "in_flight", 2, ""},
			{limits.Consumer, "a11ce", "requests", 1000, "day"},
			{limits.Group, "acme-team", "requests", 100000, "month in Europe/Berlin"},
		}},
		{"bob, in a group the document does not describe", eachOf(cred("bob").EachLimit), nil},
		{"carol, beta before free", eachOf(cred("carol").EachLimit), []yielded{
			{limits.Consumer, "carol", "in_flight", 1, ""}, // replaces free's
			{limits.Consumer, "carol", "requests", 10, "minute"},
			{limits.Consumer, "carol", "tokens", 5000, "week"},
		}},
	} {
		if fmt.Sprint(tt.got) != fmt.Sprint(tt.want) {
			t.Errorf("%s:\n got %v\nwant %v", tt.name, tt.got, tt.want)
		}
	}
	anon, _ := s.FindConsumer("anon")
	if got, want := eachOf(anon.EachLimit), []yielded{{limits.Consumer, "anon", "in_flight", 2, ""}, {limits.Consumer, "anon", "requests", 1000, "day"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the anonymous consumer: %v, want %v", got, want)
	}
	if !cred("alice").HasLimits() || !cred("alice-2").HasLimits() || cred("bob").HasLimits() || !anon.HasLimits() {
		t.Error("HasLimits")
	}
	// Stopping early.
	n := 0
	cred("alice").EachLimit(func(limits.ScopeKind, string, string, Limit) bool { n++; return n < 3 })
	if n != 3 {
		t.Errorf("EachLimit yielded %d limits after yield returned false at the third", n)
	}

	alice, _ := s.FindConsumer("alice")
	var lg []string
	for g := range alice.LimitGroups() {
		lg = append(lg, g.Name())
	}
	if strings.Join(lg, " ") != "free beta acme-team" {
		t.Errorf("alice's LimitGroups: %q", lg)
	}
	var all []string
	for g := range s.Groups() {
		all = append(all, g.Name())
	}
	if strings.Join(all, " ") != "acme-team beta described free no-members" {
		t.Errorf("Groups: %q", all)
	}
	g, ok := s.Group("no-members")
	if l, has := g.Limits().Get(InFlight); !ok || !has || l.Max != 50 || !l.Window.IsZero() || g.MemberLimits().Len() != 0 {
		t.Errorf("no-members: %v %v %v", ok, l, has)
	}
	if _, ok := s.Group("gold"); ok {
		t.Error("Group finds a group the document does not describe")
	}
	if l, ok := alice.Limits().Get("tokens"); !ok || l.Max != 2000000 || l.Window.Per() != "month" {
		t.Errorf("alice's tokens: %v %v", l, ok)
	}
	if cred("alice-2").Limits().Len() != 0 || cred("alice").Limits().Len() != 1 {
		t.Error("credential limits")
	}
	var nilSet *Set
	if _, ok := nilSet.Group("free"); ok {
		t.Error("a nil set has a group")
	}
	for range nilSet.Groups() {
		t.Error("a nil set has groups")
	}
}

// TestLimitsNoAllocs: what the handler calls per request allocates
// nothing.
func TestLimitsNoAllocs(t *testing.T) {
	s := mustParse(t, limitsDoc)
	cr, _ := s.Lookup(digestOf(keyMark + "-alice"))
	anon, _ := s.FindConsumer("anon")
	now := time.Now()
	var sink int64
	yield := func(_ limits.ScopeKind, scope, meter string, l Limit) bool {
		start, _ := l.Window.Bounds(now)
		sink += l.Max + int64(len(scope)+len(meter)) + start.Unix()
		return true
	}
	allocs := testing.AllocsPerRun(100, func() {
		if cr.HasLimits() {
			cr.EachLimit(yield)
		}
		anon.EachLimit(yield)
		l, _ := cr.Consumer().Limits().Get("tokens")
		sink += l.Max
	})
	if allocs != 0 {
		t.Errorf("%v allocations per request", allocs)
	}
	_ = sink
}

// TestLimitsRefused: invalid limits and groups refuse the document, naming
// the consumer, credential or group, the object and the meter.
func TestLimitsRefused(t *testing.T) {
	one := func(limits string) string {
		return `{"consumers": [{"username": "alice", "limits": ` + limits + `, "keys": [{"id": "alice-ci", "key": "` + keyMark + `"}]}]}`
	}
	cred := func(limits string) string {
		return `{"consumers": [{"username": "alice", "keys": [{"id": "alice-ci", "key": "` + keyMark + `", "limits": ` + limits + `}]}]}`
	}
	group := func(field, limits string) string {
		return `{"groups": {"free": {"` + field + `": ` + limits + `}}, "consumers": []}`
	}
	for _, tt := range []struct{ doc, want string }{
		{one(`{"requests": {"max": 1, "per": "days"}}`), `line 1: consumer "alice": limits: meter "requests" has per "days", which is neither second, minute, hour, day, week, month, year nor a duration such as 90m`},
		{one(`{"requests": {"max": -1, "per": "day"}}`), `consumer "alice": limits: meter "requests" has a negative max`},
		{one(`{"requests": {"max": 9007199254740992, "per": "day"}}`), `consumer "alice": limits: meter "requests" has a max over 9007199254740991`},
		{one(`{"requests": {"per": "day"}}`), `consumer "alice": limits: meter "requests" has no max`},
		{one(`{"requests": {"max": null, "per": "day"}}`), `consumer "alice": limits: meter "requests" has no max`},
		{one(`{"requests": {"max": 1}}`), `consumer "alice": limits: meter "requests" has no per`},
		{one(`{"requests": {"max": 1, "per": ""}}`), `consumer "alice": limits: meter "requests" has no per`},
		{one(`{"requests": {"max": 1, "per": "500ms"}}`), `meter "requests" has per "500ms", shorter than 1s`},
		{one(`{"requests": {"max": 1, "per": "-1h"}}`), `meter "requests" has per "-1h", shorter than 1s`},
		{one(`{"requests": {"max": 1, "per": "1h", "timezone": "Europe/Berlin"}}`), `meter "requests" has per "1h" with a timezone`},
		{one(`{"requests": {"max": 1, "per": "day", "timezone": "Europe/Berlim"}}`), `consumer "alice": limits: meter "requests" has timezone "Europe/Berlim", which is not an IANA timezone this machine knows`},
		{one(`{"requests": {"max": 1, "per": "day", "timezone": "Local"}}`), `has timezone "Local", which depends on the machine`},
		{one(`{"requests": {"max": 1, "per": "day", "timezone": ""}}`), `meter "requests" has an empty timezone`},
		{one(`{"req uests": {"max": 1, "per": "day"}}`), `consumer "alice": limits: meter name "req uests" is not 1 to 64 letters, digits, '_', '-' or '.'`},
		{one(`{"": {"max": 1, "per": "day"}}`), `consumer "alice": limits: a meter has an empty name`},
		{one(`{"` + strings.Repeat("m", 65) + `": {"max": 1, "per": "day"}}`), `consumer "alice": limits: a meter's name is longer than 64 bytes`},
		{one(`{"b": {"max": 1, "per": "days"}, "a": {"max": -1, "per": "day"}}`), `meter "a" has a negative max`}, // by name, as Build
		{one(`{"requests": {"max": 1, "per": "day"}, "requests": {"max": 2, "per": "day"}}`), `consumer "alice": limits: "requests" given twice`},
		{one(`{"in_flight": -1}`), `consumer "alice": limits: in_flight is negative`},
		{one(`{"in_flight": 9007199254740992}`), `consumer "alice": limits: in_flight is over 9007199254740991`},
		{cred(`{"requests": {"max": 1, "per": "fortnight"}}`), `line 1: consumer "alice", credential "alice-ci": limits: meter "requests" has per "fortnight"`},
		{group("member_limits", `{"requests": {"max": -5, "per": "day"}}`), `line 1: group "free": member_limits: meter "requests" has a negative max`},
		{group("limits", `{"requests": {"max": 5, "per": "day", "timezone": "Nowhere/Town"}}`), `group "free": limits: meter "requests" has timezone "Nowhere/Town"`},
		{`{"groups": {"a b": {}}, "consumers": []}`, `groups: group name "a b" holds white space, a comma or a control character`},
		{`{"groups": {"": {}}, "consumers": []}`, `groups: a group name is empty`},
		{`{"groups": {"g": {}, "\u0067": {}}, "consumers": []}`, `groups: group "g" described twice`},
		// Syntax and shape: where, by line and column.
		{one(`{"requests": {"max": 1.5, "per": "day"}}`), `line 1, column 69: max is not an integer`},
		{one(`{"requests": {"max": 1e3, "per": "day"}}`), `max is not an integer`},
		{one(`{"requests": {"max": "1", "per": "day"}}`), `expected max (an integer)`},
		{one(`{"requests": {"max": 01, "per": "day"}}`), `invalid number: a leading zero`},
		{one(`{"requests": {"max": 99999999999999999999, "per": "day"}}`), `max is out of range`},
		{one(`{"requests": {"max": 1, "per": "day", "burst": 2}}`), `unknown field in a limit (fields: max, per, timezone)`},
		{one(`{"requests": null}`), `expected a limit (an object)`},
		{one(`{"in_flight": {"max": 1}}`), `expected in_flight (an integer)`},
		{one(`[]`), `expected limits (an object)`},
		{`{"groups": {"g": null}, "consumers": []}`, `expected a group (an object)`},
		{`{"groups": {"g": {"limit": {}}}, "consumers": []}`, `unknown field in a group (fields: limits, member_limits)`},
		{`{"groups": [], "consumers": []}`, `expected groups (an object)`},
		{`{"groups": {}, "groups": {}, "consumers": []}`, `"groups" given twice`},
		{`{"consumer": []}`, `unknown field in the document (fields: groups, consumers)`},
	} {
		_, err := Parse([]byte(tt.doc))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s\nerror %v\nwant  %s", tt.doc, err, tt.want)
			continue
		}
		assertNoKeyMaterial(t, err.Error(), tt.doc)
		buildAgrees(t, []byte(tt.doc), err)
	}
}

// TestLimitsAccepted: the edges a document may go to.
func TestLimitsAccepted(t *testing.T) {
	for _, doc := range []string{
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 0, "per": "day"}, "in_flight": 0}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 9007199254740991, "per": "1s"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": -0, "per": "day", "timezone": "UTC"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"a.B-9_": {"max": 1, "per": "year", "timezone": "America/Havana"}}}]}`,
		`{"consumers": [{"username": "a", "limits": null, "keys": [{"key": "k", "limits": {}}]}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1, "per": "day", "timezone": null}}}]}`,
		`{"consumers": [{"username": "a", "groups": ["g"]}], "groups": {"g": {"member_limits": {"r": {"max": 1, "per": "2h45m"}}}}}`,
		`{"groups": {"unused": {"limits": {"in_flight": 3}}, "é": {}}, "consumers": []}`,
		`{"groups": null, "consumers": []}`,
	} {
		if _, err := Parse([]byte(doc)); err != nil {
			t.Errorf("%s: %v", doc, err)
		}
		d, err := DecodeDocument([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if _, err := Build(d); err != nil {
			t.Errorf("Build of %s: %v", doc, err)
		}
		if _, err := d.Marshal(); err != nil {
			t.Errorf("Marshal of %s: %v", doc, err)
		}
	}
	// max 0 closes a meter; a zero in_flight lets no request be under way.
	s := mustParse(t, `{"consumers": [{"username": "a", "limits": {"r": {"max": 0, "per": "day"}, "in_flight": 0}}]}`)
	if l, ok := s.ConsumerAt(0).Limits().Get("r"); !ok || l.Max != 0 {
		t.Errorf("max 0: %v %v", l, ok)
	}
}

// TestLimitsFromGo: Build refuses what no JSON can say (in_flight with a
// window), and Marshal will not write it.
func TestLimitsFromGo(t *testing.T) {
	d := &Document{Consumers: []ConsumerEntry{{Username: "a", Limits: LimitsEntry{InFlight: {Max: 1, Per: "day"}}}}}
	if _, err := Build(d); err == nil || !strings.Contains(err.Error(), `consumer "a": limits: in_flight has a per or a timezone`) {
		t.Errorf("Build: %v", err)
	}
	if _, err := d.Marshal(); err == nil {
		t.Error("Marshal wrote in_flight with a window")
	}
	if err := CheckMeterName(InFlight); err == nil {
		t.Error("in_flight is a meter")
	}
	for _, n := range []string{"requests", "gpu_seconds", "a.b-c", strings.Repeat("x", 64)} {
		if err := CheckMeterName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	for _, n := range []string{"", "a b", "é", strings.Repeat("x", 65)} {
		if err := CheckMeterName(n); err == nil {
			t.Errorf("%q is a meter name", n)
		}
	}
}

// TestLimitsSideTables: a document without limits has no side tables,
// records keep their sizes, the limits of a large document are sized
// exactly, and meter names are stored once.
func TestLimitsSideTables(t *testing.T) {
	s := testSet(t)
	if s.lim != nil {
		t.Error("a document without limits has tables of limits")
	}
	if n := unsafe.Sizeof(extraRec{}); n != 20 {
		t.Errorf("extraRec is %d bytes, want 20", n)
	}
	if n := unsafe.Sizeof(limitRec{}); n != 32 {
		t.Errorf("limitRec is %d bytes, want 32", n)
	}
	var b strings.Builder
	b.WriteString(`{"groups": {"t": {"member_limits": {"requests": {"max": 5, "per": "day"}}}}, "consumers": [`)
	for i := range 1000 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"username": "u%d", "groups": ["t"], "limits": {"requests": {"max": %d, "per": "month", "timezone": "Europe/Berlin"}}, "keys": [{"key": "k%d", "limits": {"requests": {"max": 1, "per": "second"}}}]}`, i, i, i)
	}
	b.WriteString("]}")
	s = mustParse(t, b.String())
	if l := s.lim; len(l.limits) != 2001 || cap(l.limits) != 2001 || len(l.credLimits) != 1000 || cap(l.credLimits) != 1000 {
		t.Errorf("limits %d/%d, credential limits %d/%d", len(l.limits), cap(l.limits), len(l.credLimits), cap(l.credLimits))
	}
	if strings.Count(s.arena, "requests") != 1 {
		t.Errorf("the arena holds the meter's name %d times", strings.Count(s.arena, "requests"))
	}
	if len(s.lim.calendars) != 3 {
		t.Errorf("%d calendars, want 3 (day, month in Berlin, second)", len(s.lim.calendars))
	}
}

// BenchmarkEachLimit is the cost per request of finding the limits that
// apply, and their windows: a key with its own limit, its consumer's,
// two tiers and a team pool, in UTC and in Europe/Berlin.
func BenchmarkEachLimit(b *testing.B) {
	s := mustParse(b, limitsDoc)
	for _, tt := range []struct{ name, key string }{{"five_limits", "alice"}, {"no_limits", "bob"}} {
		cr, _ := s.Lookup(digestOf(keyMark + "-" + tt.key))
		b.Run(tt.name, func(b *testing.B) {
			now := time.Now()
			var sink int64
			b.ReportAllocs()
			for b.Loop() {
				if !cr.HasLimits() {
					continue
				}
				cr.EachLimit(func(_ limits.ScopeKind, scope, meter string, l Limit) bool {
					start, _ := l.Window.Bounds(now)
					sink += l.Max + start.Unix()
					return true
				})
			}
			_ = sink
		})
	}
}

// BenchmarkLookupLimits is BenchmarkLookup over a document where every
// consumer has limits: the lookup costs the same.
func BenchmarkLookupLimits(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	sb.WriteString(`{"groups": {"t": {"member_limits": {"requests": {"max": 5, "per": "day"}}}}, "consumers": [`)
	const n = 100000
	for i := range n {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `{"username": "u%d", "groups": ["t"], "limits": {"tokens": {"max": %d, "per": "month"}}, "keys": [{"key": "k%d", "limits": {"requests": {"max": 1, "per": "second"}}}]}`, i, i, i)
	}
	sb.WriteString("]}")
	s := mustParse(b, sb.String())
	digests := make([]Digest, 1024)
	for i := range digests {
		digests[i] = *digestOf(fmt.Sprintf("k%d", r.IntN(n)))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		cr, ok := s.Lookup(&digests[i%len(digests)])
		if !ok || !cr.HasLimits() {
			b.Fatal("wrong lookup result")
		}
	}
}

func TestParseLimits(t *testing.T) {
	l, err := ParseLimits([]byte(`{"requests": {"max": 5, "per": "90m"}, "in_flight": 2, "t": {"max": 1, "per": "day", "timezone": "Europe/Berlin"}}`), "x")
	if err != nil {
		t.Fatal(err)
	}
	want := LimitsEntry{"requests": {Max: 5, Per: "1h30m"}, InFlight: {Max: 2}, "t": {Max: 1, Per: "day", Timezone: "Europe/Berlin"}}
	if fmt.Sprint(l) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", l, want)
	}
	for _, empty := range []string{"", " ", "null", "{}"} {
		if l, err := ParseLimits([]byte(empty), "x"); err != nil || l != nil {
			t.Errorf("%q: %v, %v", empty, l, err)
		}
	}
	for in, want := range map[string]string{
		`{"r": {"max": 1, "per": "day"}} x`:       `group "g": limits: line 1, column 33: unexpected data after the limits`,
		`{"r": {"max": -1, "per": "day"}}`:        `group "g": limits: meter "r" has a negative max`,
		`{"r": {"max": 1, "per": "day", "x": 1}}`: `group "g": limits: line 1, column 32: unknown field in a limit`,
		`[]`: `group "g": limits: line 1, column 1: expected limits (an object)`,
	} {
		if _, err := ParseLimits([]byte(in), `group "g": limits`); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v, want %s", in, err, want)
		}
	}
}
