package consumers

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// authzDoc has a consumer with every authorization field, one with none, and
// ones with a single kind each.
const authzDoc = `{"consumers": [
  {"username": "gold", "tags": ["partner", "eu west", "é"],
   "groups": ["gold", "partner", "équipe-日本"],
   "labels": {"plan": "gold", "backend": "10.0.0.7:8080", "b": "", "Zz.9_-": "x y\u00e9"},
   "keys": [
     {"id": "g-live", "key": "` + keyMark + `-gold"},
     {"id": "g-off", "key": "` + keyMark + `-gold-off", "disabled": true, "canary": false},
     {"id": "g-canary", "key": "` + keyMark + `-gold-canary", "canary": true, "disabled": null}
   ]},
  {"username": "plain", "keys": [{"key": "` + keyMark + `-plain"}]},
  {"username": "off", "disabled": true, "keys": [{"key": "` + keyMark + `-off", "disabled": false}]},
  {"username": "nulls", "groups": null, "labels": null, "disabled": null, "tags": []},
  {"username": "empties", "groups": [], "labels": {}, "disabled": false},
  {"username": "one-label", "labels": {"plan": "free"}},
  {"username": "one-group", "groups": ["g"]}
]}`

func TestAuthzFields(t *testing.T) {
	s := mustParse(t, authzDoc)
	tests := []struct {
		username     string
		groups       []string
		labels       map[string]string
		tagsJoined   string
		disabled     bool
		labelOrder   []string
		notInGroups  []string
		notHasLabels []string
	}{
		{username: "gold", groups: []string{"gold", "partner", "équipe-日本"},
			labels:     map[string]string{"plan": "gold", "backend": "10.0.0.7:8080", "b": "", "Zz.9_-": "x yé"},
			labelOrder: []string{"Zz.9_-", "b", "backend", "plan"},
			tagsJoined: "partner, eu west, é",
			// Substrings, prefixes and joins of the header are no group.
			notInGroups:  []string{"", "gol", "old", "gold, partner", "gold,", " partner", "Gold", "partner, équipe-日本"},
			notHasLabels: []string{"", "Plan", "plan ", "back", "zz.9_-", "c"}},
		{username: "plain", notInGroups: []string{"", "gold"}, notHasLabels: []string{"plan"}},
		{username: "off", disabled: true, notInGroups: []string{"gold"}},
		{username: "nulls"},
		{username: "empties"},
		{username: "one-label", labels: map[string]string{"plan": "free"}, labelOrder: []string{"plan"}, notHasLabels: []string{"a", "z"}},
		{username: "one-group", groups: []string{"g"}, notInGroups: []string{"gg", ""}},
	}
	for _, w := range tests {
		t.Run(w.username, func(t *testing.T) {
			c, ok := s.FindConsumer(w.username)
			if !ok {
				t.Fatal("not found")
			}
			if got := c.Groups(); !slices.Equal(got, w.groups) {
				t.Errorf("Groups() = %q, want %q", got, w.groups)
			}
			if got, want := c.GroupsHeader(), strings.Join(w.groups, ", "); got != want {
				t.Errorf("GroupsHeader() = %q, want %q", got, want)
			}
			if c.HasGroups() != (len(w.groups) > 0) {
				t.Errorf("HasGroups() = %v", c.HasGroups())
			}
			for _, g := range w.groups {
				if !c.InGroup(g) {
					t.Errorf("InGroup(%q) = false", g)
				}
			}
			for _, g := range w.notInGroups {
				if c.InGroup(g) {
					t.Errorf("InGroup(%q) = true", g)
				}
			}
			if got := c.Labels(); !maps.Equal(got, w.labels) || (got == nil) != (w.labels == nil) {
				t.Errorf("Labels() = %q, want %q", got, w.labels)
			}
			for name, want := range w.labels {
				if got, ok := c.Label(name); !ok || got != want {
					t.Errorf("Label(%q) = %q, %v; want %q", name, got, ok, want)
				}
			}
			for _, name := range w.notHasLabels {
				if got, ok := c.Label(name); ok {
					t.Errorf("Label(%q) = %q, true; want none", name, got)
				}
			}
			var order []string
			for name, value := range c.AllLabels() {
				order = append(order, name)
				if value != w.labels[name] {
					t.Errorf("AllLabels yields %q = %q, want %q", name, value, w.labels[name])
				}
			}
			if !slices.Equal(order, w.labelOrder) {
				t.Errorf("AllLabels order = %q, want %q", order, w.labelOrder)
			}
			if got := c.TagsJoined(); got != w.tagsJoined {
				t.Errorf("TagsJoined() = %q, want %q", got, w.tagsJoined)
			}
			if c.Disabled() != w.disabled {
				t.Errorf("Disabled() = %v", c.Disabled())
			}
		})
	}

	creds := []struct {
		key              string
		disabled, canary bool
	}{
		{keyMark + "-gold", false, false},
		{keyMark + "-gold-off", true, false},
		{keyMark + "-gold-canary", false, true},
		{keyMark + "-plain", false, false},
		// The consumer is disabled, the credential is not: each flag is its own.
		{keyMark + "-off", false, false},
	}
	for _, w := range creds {
		cr, ok := s.Lookup(digestOf(w.key))
		if !ok {
			t.Fatalf("a key of the document is not found")
		}
		if cr.Disabled() != w.disabled || cr.Canary() != w.canary {
			t.Errorf("credential %q: Disabled() = %v, Canary() = %v; want %v, %v", cr.ID(), cr.Disabled(), cr.Canary(), w.disabled, w.canary)
		}
	}
	// A disabled consumer is still found; callers check Disabled.
	if c, ok := s.FindConsumer("off"); !ok || !c.Disabled() {
		t.Errorf("FindConsumer(off) = %v, %v", ok, c.Disabled())
	}
	// Stopping AllLabels early stops it.
	gold, _ := s.FindConsumer("gold")
	n := 0
	for range gold.AllLabels() {
		n++
		break
	}
	if n != 1 {
		t.Errorf("AllLabels went on after a break: %d", n)
	}
	// Groups is a copy.
	g := gold.Groups()
	g[0] = "changed"
	if gold.InGroup("changed") || !gold.InGroup("gold") {
		t.Error("changing the slice Groups returned changed the set")
	}
}

// TestAuthzLimits accepts the longest names and values the rules allow.
func TestAuthzLimits(t *testing.T) {
	group128 := strings.Repeat("日", MaxGroupNameChars) // 128 characters, 384 bytes
	name64 := strings.Repeat("n", MaxLabelNameLength)
	value1k := strings.Repeat("v", MaxLabelValueBytes-2) + "é" // 1024 bytes
	s := mustParse(t, `{"consumers": [{"username": "a", "groups": ["`+group128+`", "x"], "labels": {"`+name64+`": "`+value1k+`"}}]}`)
	c := s.ConsumerAt(0)
	if !c.InGroup(group128) || c.GroupsHeader() != group128+", x" {
		t.Errorf("GroupsHeader() = %q", c.GroupsHeader())
	}
	if v, ok := c.Label(name64); !ok || v != value1k {
		t.Errorf("Label(64 characters) = %d bytes, %v", len(v), ok)
	}
	// Many groups and labels take the sorting path; all are found.
	var groups, labels []string
	for i := range 40 {
		groups = append(groups, `"g`+strings.Repeat("x", i)+`"`)
		labels = append(labels, `"l`+strings.Repeat("x", 39-i)+`": "v`+strings.Repeat("x", i)+`"`)
	}
	s = mustParse(t, `{"consumers": [{"username": "many", "groups": [`+strings.Join(groups, ",")+`], "labels": {`+strings.Join(labels, ",")+`}}]}`)
	c = s.ConsumerAt(0)
	for i := range 40 {
		if !c.InGroup("g" + strings.Repeat("x", i)) {
			t.Errorf("group #%d not found", i+1)
		}
		if v, ok := c.Label("l" + strings.Repeat("x", 39-i)); !ok || v != "v"+strings.Repeat("x", i) {
			t.Errorf("label #%d = %q, %v", i+1, v, ok)
		}
	}
	if len(c.Groups()) != 40 || len(c.Labels()) != 40 {
		t.Errorf("%d groups, %d labels; want 40 of each", len(c.Groups()), len(c.Labels()))
	}
}

func TestAuthzRefused(t *testing.T) {
	k := keyMark + "-refused"
	one := func(fields string) string {
		return `{"consumers": [{"username": "bob", ` + fields + `, "keys": [{"id": "bob-1", "key": "` + k + `"}]}]}`
	}
	cred := func(fields string) string {
		return `{"consumers": [{"username": "bob", "keys": [{"id": "bob-1", "key": "` + k + `", ` + fields + `}]}]}`
	}
	many := func(dupAt int) string { // ten groups, the last a copy of #dupAt
		var g []string
		for i := range 9 {
			g = append(g, `"g`+string(rune('a'+i))+`"`)
		}
		return one(`"groups": [` + strings.Join(g, ", ") + `, "g` + string(rune('a'+dupAt)) + `"]`)
	}
	tests := []struct {
		name      string
		doc       string
		line, col int // of a syntax error; 0 for a rule
		want      string
		notWant   []string
	}{
		// Groups.
		{name: "empty group", doc: one(`"groups": ["gold", ""]`), want: `consumer "bob": group #2 is empty`},
		{name: "group of 129 characters", doc: one(`"groups": ["` + strings.Repeat("é", MaxGroupNameChars+1) + `"]`),
			want: `consumer "bob": group #1 is longer than 128 characters`, notWant: []string{"éé"}},
		{name: "group with a space", doc: one(`"groups": ["gold tier"]`), want: `consumer "bob": group "gold tier" holds white space, a comma or a control character`},
		{name: "group with a tab", doc: one(`"groups": ["gold\ttier"]`), want: `group "gold\ttier" holds white space`},
		{name: "group with a comma", doc: one(`"groups": ["gold,tier"]`), want: `group "gold,tier" holds white space, a comma`},
		{name: "group with a no-break space", doc: one(`"groups": ["gold\u00a0tier"]`), want: `holds white space`},
		{name: "group with an ideographic space", doc: one(`"groups": ["gold\u3000"]`), want: `holds white space`},
		{name: "group with NUL", doc: one(`"groups": ["gold\u0000"]`), want: `group "gold\x00" holds`},
		{name: "group with DEL", doc: one(`"groups": ["gold` + "\x7f" + `"]`), want: `control character`},
		{name: "group with a C1 control", doc: one(`"groups": ["gold\u0085"]`), want: `control character`},
		{name: "group twice", doc: one(`"groups": ["gold", "partner", "gold"]`), want: `consumer "bob" lists group "gold" twice`},
		{name: "group twice, once escaped", doc: one(`"groups": ["gold", "g\u006fld"]`), want: `consumer "bob" lists group "gold" twice`},
		{name: "group twice in a long list", doc: many(3), want: `consumer "bob" lists group "gd" twice`},
		{name: "group twice in a long list, first and last", doc: many(0), want: `consumer "bob" lists group "ga" twice`},
		{name: "groups a string", doc: one(`"groups": "gold"`), line: 1, col: 46, want: "expected groups (an array)"},
		{name: "a null group", doc: one(`"groups": [null]`), line: 1, col: 47, want: "expected a group (a string)"},
		{name: "a number as a group", doc: one(`"groups": [1]`), line: 1, col: 47, want: "expected a group (a string)"},
		{name: "groups twice", doc: one(`"groups": [], "groups": []`), line: 1, col: 50, want: "field groups given twice in consumer #1"},

		// Tags: each must read back the same from the Redis layout's
		// comma-separated field.
		{name: "tag with a comma", doc: one(`"tags": ["staff", "team,ops"]`), want: `consumer "bob": tag "team,ops" holds a comma (tags are comma-separated in Redis)`},
		{name: "tag with a comma and a space", doc: one(`"tags": ["eu, west"]`), want: `tag "eu, west" holds a comma`},
		{name: "empty tag", doc: one(`"tags": ["a", ""]`), want: `consumer "bob": tag #2 is empty`},
		{name: "tag with a leading space", doc: one(`"tags": [" ops"]`), want: `consumer "bob": tag " ops" starts or ends with white space`},
		{name: "tag with a trailing tab", doc: one(`"tags": ["ops\t"]`), want: `tag "ops\t" starts or ends with white space`},
		{name: "tag with a trailing no-break space", doc: one(`"tags": ["ops\u00a0"]`), want: `starts or ends with white space`},
		{name: "tag ending in an escaped newline", doc: one(`"tags": ["\"\\\/\b\f\n\r\t"]`), want: `starts or ends with white space`},

		// Labels.
		{name: "empty label name", doc: one(`"labels": {"": "x"}`), want: `consumer "bob": the name of label #1 is not 1 to 64 letters, digits, '_', '-' or '.'`},
		{name: "label name of 65", doc: one(`"labels": {"a": "x", "` + strings.Repeat("n", 65) + `": "x"}`), want: `the name of label #2 is not 1 to 64`},
		{name: "label name with a space", doc: one(`"labels": {"my plan": "x"}`), want: `consumer "bob": label name "my plan" is not 1 to 64 letters`},
		{name: "label name with a colon", doc: one(`"labels": {"a:b": "x"}`), want: `label name "a:b" is not`},
		{name: "label name not ASCII", doc: one(`"labels": {"é": "x"}`), want: `label name "é" is not`},
		{name: "label value of 1025 bytes", doc: one(`"labels": {"plan": "` + keyMark + strings.Repeat("v", MaxLabelValueBytes+1-len(keyMark)) + `"}`),
			want: `consumer "bob": label "plan" has a value longer than 1024 bytes`, notWant: []string{"vvv"}},
		{name: "label value of 1025 bytes once unescaped", doc: one(`"labels": {"plan": "x` + strings.Repeat(`\u00e9`, MaxLabelValueBytes/2) + `"}`),
			want: `label "plan" has a value longer than 1024 bytes`},
		{name: "label value with a newline", doc: one(`"labels": {"plan": "` + keyMark + `\n"}`), want: `consumer "bob": label "plan" has a control character in its value`},
		{name: "label value with NUL", doc: one(`"labels": {"plan": "a\u0000"}`), want: `label "plan" has a control character`},
		{name: "label value with DEL", doc: one(`"labels": {"plan": "a` + "\x7f" + `"}`), want: `label "plan" has a control character`},
		{name: "label value with a C1 control", doc: one(`"labels": {"plan": "a\u009b"}`), want: `label "plan" has a control character`},
		{name: "label twice", doc: one(`"labels": {"plan": "gold", "backend": "x", "plan": "free"}`), want: `consumer "bob" has label "plan" twice`},
		{name: "label twice, once escaped", doc: one(`"labels": {"plan": "gold", "pl\u0061n": "free"}`), want: `consumer "bob" has label "plan" twice`},
		{name: "labels an array", doc: one(`"labels": ["plan"]`), line: 1, col: 46, want: "expected labels (an object)"},
		{name: "a null label value", doc: one(`"labels": {"plan": null}`), line: 1, col: 55, want: "expected a label value (a string)"},
		{name: "a number as a label value", doc: one(`"labels": {"plan": 3}`), line: 1, col: 55, want: "expected a label value (a string)"},
		{name: "labels twice", doc: one(`"labels": {}, "labels": {}`), line: 1, col: 50, want: "field labels given twice in consumer #1"},

		// Flags.
		{name: "disabled a string", doc: one(`"disabled": "true"`), line: 1, col: 48, want: "expected disabled (true or false)"},
		{name: "disabled a number", doc: one(`"disabled": 1`), line: 1, col: 48, want: "expected disabled (true or false)"},
		{name: "disabled misspelt", doc: one(`"disabled": tru`), line: 1, col: 48, want: "expected disabled (true or false)"},
		{name: "disabled run on", doc: one(`"disabled": truex`), line: 1, col: 52, want: "expected ',' or '}' in consumer #1"},
		{name: "disabled twice", doc: one(`"disabled": false, "disabled": true`), line: 1, col: 55, want: "field disabled given twice in consumer #1"},
		{name: "disabled at the end", doc: `{"consumers": [{"username": "bob", "disabled": `, line: 1, col: 48,
			want: "unexpected end of document, expected disabled (true or false)"},
		{name: "credential disabled a string", doc: cred(`"disabled": "yes"`), line: 1, col: 98, want: "expected disabled (true or false)"},
		{name: "credential canary a number", doc: cred(`"canary": 0`), line: 1, col: 96, want: "expected canary (true or false)"},
		{name: "credential canary twice", doc: cred(`"canary": true, "canary": true`), line: 1, col: 102, want: "field canary given twice in key #1 of consumer #1"},
		{name: "canary on a consumer", doc: one(`"canary": true`), line: 1, col: 36, want: "unknown field in consumer #1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse accepted the document\ndocument: %s", tt.doc)
			}
			buildAgrees(t, []byte(tt.doc), err)
			msg := err.Error()
			var se *SyntaxError
			if tt.line > 0 {
				if !errors.As(err, &se) || se.Line != tt.line || se.Column != tt.col {
					t.Errorf("error %q: want a syntax error at line %d, column %d", msg, tt.line, tt.col)
				}
			} else if errors.As(err, &se) || !strings.HasPrefix(msg, "line 1: ") {
				t.Errorf("error %q: want a rule's error on the consumer's line", msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not contain %q", msg, tt.want)
			}
			for _, w := range tt.notWant {
				if strings.Contains(msg, w) {
					t.Errorf("error %q contains %q", msg, w)
				}
			}
			assertNoKeyMaterial(t, msg, tt.doc)
		})
	}
}

// TestAuthzNoAllocs holds the accessors the handler calls per request to no
// allocation.
func TestAuthzNoAllocs(t *testing.T) {
	s := mustParse(t, authzDoc)
	gold, _ := s.FindConsumer("gold")
	plain, _ := s.FindConsumer("plain")
	cr, _ := s.Lookup(digestOf(keyMark + "-gold"))
	var sink int
	allocs := testing.AllocsPerRun(100, func() {
		for _, c := range []Consumer{gold, plain} {
			if c.InGroup("partner") || c.InGroup("none") || c.HasGroups() || c.Disabled() {
				sink++
			}
			v, _ := c.Label("plan")
			sink += len(v) + len(c.GroupsHeader()) + len(c.TagsJoined())
		}
		if cr.Disabled() || cr.Canary() {
			sink++
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
	_ = sink
}

// TestRecordSizes holds the per-consumer and per-credential cost of the new
// fields to what the Performance section claims: 4 bytes per consumer, none
// per credential (its flags sit in what was padding).
func TestRecordSizes(t *testing.T) {
	if n := unsafe.Sizeof(consumerRec{}); n != 36 {
		t.Errorf("consumerRec is %d bytes, want 36", n)
	}
	if n := unsafe.Sizeof(credentialRec{}); n != 56 {
		t.Errorf("credentialRec is %d bytes, want 56", n)
	}
	// Consumers without groups, labels or disabled add no extras record.
	s := mustParse(t, `{"consumers": [{"username": "a", "tags": ["t"], "keys": [{"key": "`+keyMark+`", "canary": true}]}, {"username": "b"}]}`)
	if len(s.extras) != 0 || len(s.labels) != 0 {
		t.Errorf("%d extras and %d labels for consumers without them", len(s.extras), len(s.labels))
	}
}

// TestParseExactSizeAuthz extends TestParseExactSize to the side tables and
// the joined strings.
func TestParseExactSizeAuthz(t *testing.T) {
	doc := []byte(authzDoc)
	var b builder
	if err := (&parser{data: doc, b: &b}).document(); err != nil {
		t.Fatal(err)
	}
	s := mustParse(t, authzDoc)
	if len(s.arena) != b.nArena {
		t.Errorf("arena holds %d bytes, the first pass counted %d", len(s.arena), b.nArena)
	}
	if len(s.extras) != b.nExtras || cap(s.extras) != b.nExtras || len(s.labels) != b.nLabels || cap(s.labels) != b.nLabels {
		t.Errorf("extras %d/%d, labels %d/%d; counted %d and %d",
			len(s.extras), cap(s.extras), len(s.labels), cap(s.labels), b.nExtras, b.nLabels)
	}
	// gold, off (disabled only), one-label, one-group; not plain, nulls, empties.
	if len(s.extras) != 4 || len(s.labels) != 5 {
		t.Errorf("%d extras and %d labels, want 4 and 5", len(s.extras), len(s.labels))
	}
	if want := s.Bytes(); want <= len(s.arena) {
		t.Errorf("Bytes() = %d leaves out the records", want)
	}
}
