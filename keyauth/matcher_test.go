package keyauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

func TestMatchConsumerCaddyfile(t *testing.T) {
	tests := []struct {
		name, input string
		want        string // the JSON
	}{
		{"group", "consumer group gold", `{"group":["gold"]}`},
		{"groups", "consumer group gold partner", `{"group":["gold","partner"]}`},
		{"username", "consumer username alice bob", `{"username":["alice","bob"]}`},
		{"id", "consumer id a11ce", `{"id":["a11ce"]}`},
		{"custom_id", "consumer custom_id cust-1 cust-2", `{"custom_id":["cust-1","cust-2"]}`},
		{"label", "consumer label plan free trial", `{"label":{"plan":["free","trial"]}}`},
		{"label empty value", `consumer label plan ""`, `{"label":{"plan":[""]}}`},
		{"anonymous", "consumer anonymous", `{"anonymous":true}`},
		{"anonymous true", "consumer anonymous true", `{"anonymous":true}`},
		{"anonymous false", "consumer anonymous false", `{"anonymous":false}`},
		{"quoted group", `consumer group "g{x}"`, `{"group":["g{x}"]}`},
		// Lines of different kinds share one condition; a kind that
		// repeats starts another, AND-ed.
		{"kinds AND-ed", "consumer group gold\nconsumer label plan pro\nconsumer anonymous false",
			`{"group":["gold"],"label":{"plan":["pro"]},"anonymous":false}`},
		{"two labels", "consumer label plan pro\nconsumer label region eu",
			`{"label":{"plan":["pro"],"region":["eu"]}}`},
		{"group twice", "consumer group gold\nconsumer group eu", `[{"group":["gold"]},{"group":["eu"]}]`},
		{"label twice", "consumer label plan pro\nconsumer username alice\nconsumer label plan gold",
			`[{"username":["alice"],"label":{"plan":["pro"]}},{"label":{"plan":["gold"]}}]`},
		{"three of a kind", "consumer group a\nconsumer group b\nconsumer username u\nconsumer group c",
			`[{"group":["a"],"username":["u"]},{"group":["b"]},{"group":["c"]}]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m MatchConsumer
			if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
				t.Fatal(err)
			}
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			// The JSON reads back as the same matcher.
			var back MatchConsumer
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if again, _ := json.Marshal(back); string(again) != tc.want {
				t.Errorf("round trip: %s", again)
			}
		})
	}
}

func TestMatchConsumerCaddyfileErrors(t *testing.T) {
	long := strings.Repeat("g", consumers.MaxGroupNameChars+1)
	tests := []struct {
		name, input, want string
		line              int
	}{
		{"no test", "consumer", "expected group, username, id, custom_id, label or anonymous", 1},
		{"no test on a later line", "consumer group g\nconsumer", "expected group, username, id, custom_id, label or anonymous", 2},
		{"unknown test", "consumer groups gold", `unknown test "groups"`, 1},
		{"group without value", "consumer group", "group needs at least one value", 1},
		{"username without value", "consumer username", "username needs at least one value", 1},
		{"id without value", "consumer id", "id needs at least one value", 1},
		{"custom_id without value", "consumer custom_id", "custom_id needs at least one value", 1},
		{"empty username", `consumer username alice ""`, "username lists an empty value", 1},
		{"empty id", `consumer id ""`, "id lists an empty value", 1},
		{"empty group", `consumer group ""`, "group name is empty", 1},
		{"group with comma", "consumer group gold,silver", `group name "gold,silver" holds white space, a comma`, 1},
		{"group with space", `consumer group "gold silver"`, "holds white space", 1},
		{"group too long", "consumer group " + long, "longer than 128 characters", 1},
		{"label without name", "consumer label", "label needs a name and at least one value", 1},
		{"label without value", "consumer label plan", "label plan needs at least one value", 1},
		{"label bad name", "consumer label pl/an free", `label name "pl/an" is not 1 to 64`, 1},
		{"label value too long", "consumer label plan " + strings.Repeat("v", consumers.MaxLabelValueBytes+1), `label "plan": label value is longer than 1024 bytes`, 1},
		{"label value control", "consumer label plan \"a\tb\"", "control character", 1},
		{"anonymous bad", "consumer anonymous yes", `anonymous takes true or false, not "yes"`, 1},
		{"anonymous extra", "consumer anonymous true false", "wrong argument count", 1},
		{"anonymous twice", "consumer anonymous\nconsumer anonymous false", "anonymous given twice", 2},
		{"block", "consumer group gold {\n\tx\n}", "blocks are not supported", 1},
		{"error on line 3", "consumer group a\nconsumer label plan pro\nconsumer label", "label needs a name", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m MatchConsumer
			err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil {
				t.Fatalf("no error; got %+v", m)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			if at := "Testfile:" + string(rune('0'+tc.line)); !strings.Contains(err.Error(), at) {
				t.Errorf("error %q does not say %s", err, at)
			}
		})
	}
}

func TestMatchConsumerJSONErrors(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"empty object", `{}`, "no test"},
		{"empty array", `[]`, "consumer matcher has no condition"},
		{"unknown field", `{"groups": ["gold"]}`, `unknown field "groups"`},
		{"unknown field in array", `[{"group": ["a"]}, {"user": ["x"]}]`, `unknown field "user"`},
		{"empty list", `{"group": []}`, "group lists no group"},
		{"empty username list", `{"username": []}`, "username lists no value"},
		{"empty label object", `{"label": {}}`, "label names no label"},
		{"label without values", `{"label": {"plan": []}}`, `label "plan" lists no value`},
		{"bad label name", `{"label": {"a b": ["x"]}}`, `label name "a b"`},
		{"bad group", `{"group": ["a,b"]}`, `group name "a,b"`},
		{"second condition", `[{"group": ["a"]}, {"custom_id": [""]}]`, "condition #2: custom_id lists an empty value"},
		{"anonymous not a bool", `{"anonymous": "true"}`, "cannot unmarshal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m MatchConsumer
			err := json.Unmarshal([]byte(tc.json), &m)
			if err == nil {
				err = m.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// matchConsumers has consumers for every test of the matcher.
const matchConsumers = `{"consumers": [
  {"username": "alice", "id": "alice-id", "custom_id": "cust-a", "groups": ["gold", "writers"],
   "labels": {"plan": "pro", "region": "eu"}, "keys": [{"id": "a1", "key": "alice-key"}]},
  {"username": "bob", "groups": ["free"], "labels": {"plan": "free"},
   "keys": [{"id": "b1", "key": "bob-key"}]},
  {"username": "carol", "keys": [{"id": "c1", "key": "carol-key"}]},
  {"username": "guest", "groups": ["visitors"]}
]}`

// identified runs a real key_auth handler over a request with the key (none
// when ""), and returns the request as the next handler sees it.
func identified(t testing.TB, h *Handler, key string) *http.Request {
	t.Helper()
	r, _ := fieldRequest(http.MethodGet, "/", nil)
	if key != "" {
		r.Header.Set("apikey", key)
	}
	var seen *http.Request
	err := h.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
		seen = r
		return nil
	}))
	if err != nil || seen == nil {
		t.Fatalf("key_auth did not let the request on: %v", err)
	}
	return seen
}

func matchHandler(t testing.TB) *Handler {
	t.Helper()
	set, err := consumers.Parse([]byte(matchConsumers))
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{Anonymous: "guest"}
	h.configure(zap.NewNop())
	h.src = sources.StaticStore(set)
	return h
}

func TestMatchConsumerMatches(t *testing.T) {
	h := matchHandler(t)
	who := map[string]string{"alice": "alice-key", "bob": "bob-key", "carol": "carol-key", "guest": ""}
	tests := []struct {
		caddyfile string
		want      string // the consumers that match, in the order of who's keys
	}{
		{"consumer group gold", "alice"},
		{"consumer group free gold", "alice bob"},
		{"consumer group visitors", "guest"},
		{"consumer group nobody", ""},
		{"consumer username bob carol", "bob carol"},
		{"consumer id alice-id", "alice"},
		{"consumer id alice", ""},  // the id, not the username
		{"consumer id bob", "bob"}, // the id defaults to the username
		{"consumer custom_id cust-a", "alice"},
		{"consumer label plan free pro", "alice bob"},
		{"consumer label region eu", "alice"},
		{`consumer label region ""`, ""}, // no label is not an empty one
		{"consumer anonymous", "guest"},
		{"consumer anonymous false", "alice bob carol"},
		{"consumer group gold\nconsumer label plan free", ""},
		{"consumer group gold free\nconsumer label plan free", "bob"},
		{"consumer group gold\nconsumer group writers", "alice"},
		{"consumer group gold\nconsumer group free", ""},
		{"consumer label plan pro\nconsumer label region eu", "alice"},
		{"consumer group visitors\nconsumer anonymous false", ""},
		// Long lists are looked up in sets.
		{"consumer group g1 g2 g3 g4 g5 g6 g7 g8 g9 writers", "alice"},
		{"consumer username u1 u2 u3 u4 u5 u6 u7 u8 u9 carol guest", "carol guest"},
	}
	reqs := map[string]*http.Request{}
	for name, key := range who {
		reqs[name] = identified(t, h, key)
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.caddyfile, "\n", "; "), func(t *testing.T) {
			var m MatchConsumer
			if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.caddyfile)); err != nil {
				t.Fatal(err)
			}
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			if err := m.Provision(caddy.Context{}); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, name := range []string{"alice", "bob", "carol", "guest"} {
				ok, err := m.MatchWithError(reqs[name])
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					got = append(got, name)
				}
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("matched %q, want %q", g, tc.want)
			}
		})
	}
}

// A request no key_auth identified matches nothing: none ran, or another
// auth handler identified it after key_auth.
func TestMatchConsumerWithoutConsumer(t *testing.T) {
	m := MatchConsumer{{Anonymous: ptr(false)}}
	r, _ := fieldRequest(http.MethodGet, "/", nil)
	if ok, err := m.MatchWithError(r); ok || err != nil {
		t.Errorf("a request no key_auth saw matched: %v %v", ok, err)
	}
	bare := httptest.NewRequest(http.MethodGet, "/", nil) // no replacer at all
	if ok, err := m.MatchWithError(bare); ok || err != nil {
		t.Errorf("a request without a replacer matched: %v %v", ok, err)
	}
	seen := identified(t, matchHandler(t), "alice-key")
	if ok, _ := m.MatchWithError(seen); !ok {
		t.Fatal("alice does not match anonymous false")
	}
	repl := seen.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("http.auth.user.id", "basic-user") // as basic_auth does after key_auth
	if ok, _ := m.MatchWithError(seen); ok {
		t.Error("a request basic_auth identified last still matched key_auth's consumer")
	}
}

func TestMatchConsumerAllocs(t *testing.T) {
	h := matchHandler(t)
	r := identified(t, h, "alice-key")
	m := MatchConsumer{{Group: []string{"free", "writers"}, Label: map[string][]string{"plan": {"pro"}}, Anonymous: ptr(false)}}
	m.provision()
	if n := testing.AllocsPerRun(100, func() {
		if ok, _ := m.MatchWithError(r); !ok {
			t.Fatal("no match")
		}
	}); n != 0 {
		t.Errorf("%v allocations per match", n)
	}
}

func BenchmarkMatchConsumer(b *testing.B) {
	r := identified(b, matchHandler(b), "alice-key")
	m := MatchConsumer{{Group: []string{"free", "writers"}, Label: map[string][]string{"plan": {"pro"}}}}
	m.provision()
	for b.Loop() {
		m.MatchWithError(r)
	}
}

// The matcher inside a real CEL expression matcher, constant and with a
// placeholder resolved per request.
func TestMatchConsumerCEL(t *testing.T) {
	h := matchHandler(t)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	tests := []struct{ expr, want string }{
		{`consumer({'group': 'gold'})`, "alice"},
		{`consumer({'group': ['free', 'gold']})`, "alice bob"},
		{`consumer({'username': ['bob', 'carol']})`, "bob carol"},
		{`consumer({'id': 'alice-id'})`, "alice"},
		{`consumer({'custom_id': 'cust-a'})`, "alice"},
		{`consumer({'label.plan': 'free'})`, "bob"},
		{`consumer({'label.plan': ['free', 'pro'], 'label.region': 'eu'})`, "alice"},
		{`consumer({'anonymous': 'true'})`, "guest"},
		{`consumer({'anonymous': 'false', 'group': 'free'})`, "bob"},
		{`!consumer({'group': 'gold'})`, "bob carol guest"},
		{`consumer({'group': 'gold'}) || consumer({'username': 'carol'})`, "alice carol"},
		// A placeholder, resolved per request.
		{`consumer({'label.plan': {test.plan}})`, "bob"},
		{`{http.auth.user.id} == 'carol'`, "carol"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			m := &caddyhttp.MatchExpression{Expr: tc.expr}
			if err := m.Provision(ctx); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, who := range []struct{ name, key string }{{"alice", "alice-key"}, {"bob", "bob-key"}, {"carol", "carol-key"}, {"guest", ""}} {
				r := identified(t, h, who.key)
				r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set("test.plan", "free")
				ok, err := m.MatchWithError(r)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					got = append(got, who.name)
				}
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("matched %q, want %q", g, tc.want)
			}
		})
	}
}

func TestMatchConsumerCELErrors(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	tests := []struct{ expr, want string }{
		{`consumer({'groups': 'gold'})`, `unknown key "groups"`},
		{`consumer({'anonymous': 'yes'})`, "anonymous takes 'true' or 'false'"},
		{`consumer({'group': 'a,b'})`, `group name "a,b"`},
		{`consumer({'label.a b': 'x'})`, `label name "a b"`},
		{`consumer({})`, "no test"},
		{`consumer('gold')`, "matcher requires a map literal argument"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			m := &caddyhttp.MatchExpression{Expr: tc.expr}
			err := m.Provision(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// A value holding a placeholder is resolved per request, in a Caddyfile
// line (and so in JSON) as in CEL. What it resolves to is client input: a
// value no consumer can hold matches nothing and is never an error; a
// resolved value is never resolved again.
func TestMatchConsumerPerRequest(t *testing.T) {
	h := matchHandler(t)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	type form struct{ line, cel string }
	forms := map[string]form{
		"group":         {"consumer group {test.v}", `consumer({'group': {test.v}})`},
		"group or gold": {"consumer group gold {test.v}", `consumer({'group': ['gold', {test.v}]})`},
		"prefixed":      {"consumer group g-{test.v}", `consumer({'group': 'g-' + {test.v}})`},
		"username":      {"consumer username {test.v}", `consumer({'username': {test.v}})`},
		"id":            {"consumer id {test.v}", `consumer({'id': {test.v}})`},
		"custom_id":     {"consumer custom_id {test.v}", `consumer({'custom_id': {test.v}})`},
		"label":         {"consumer label plan {test.v}", `consumer({'label.plan': {test.v}})`},
		"two labels":    {"consumer label plan pro\nconsumer label region {test.v}", `consumer({'label.plan': 'pro', 'label.region': {test.v}})`},
		"anonymous":     {"", `consumer({'anonymous': {test.v}})`},
	}
	tests := []struct {
		value string
		want  map[string]string // form -> who matches; a form not named matches nobody
	}{
		{"gold", map[string]string{"group": "alice", "group or gold": "alice"}},
		{"free", map[string]string{"group": "bob", "group or gold": "alice bob", "label": "bob"}},
		{"bob", map[string]string{"username": "bob", "id": "bob", "group or gold": "alice"}},
		{"cust-a", map[string]string{"custom_id": "alice", "group or gold": "alice"}},
		{"pro", map[string]string{"label": "alice", "group or gold": "alice"}},
		{"eu", map[string]string{"two labels": "alice", "group or gold": "alice"}},
		{"true", map[string]string{"anonymous": "guest", "group or gold": "alice"}},
		{"false", map[string]string{"anonymous": "alice bob carol", "group or gold": "alice"}},
		// Values no consumer can hold, or that nobody holds.
		{"", map[string]string{"group or gold": "alice"}}, // carol, guest: no custom_id, yet no match
		{"a b", map[string]string{"group or gold": "alice"}},
		{"gold, free", map[string]string{"group or gold": "alice"}},
		{"gold,free", map[string]string{"group or gold": "alice"}},
		{"a\tb", map[string]string{"group or gold": "alice"}},
		{"a\u00a0b", map[string]string{"group or gold": "alice"}},
		{"a\x00b", map[string]string{"group or gold": "alice"}},
		{strings.Repeat("g", consumers.MaxGroupNameChars+1), map[string]string{"group or gold": "alice"}},
		{strings.Repeat("v", consumers.MaxLabelValueBytes+1), map[string]string{"group or gold": "alice"}},
		{"{test.gold}", map[string]string{"group or gold": "alice"}}, // not resolved again
		{"True", map[string]string{"group or gold": "alice"}},
	}
	who := []struct{ name, key string }{{"alice", "alice-key"}, {"bob", "bob-key"}, {"carol", "carol-key"}, {"guest", ""}}
	reqs := map[string]*http.Request{}
	for _, w := range who {
		reqs[w.name] = identified(t, h, w.key)
		repl := reqs[w.name].Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		repl.Set("test.gold", "gold")
	}
	for name, f := range forms {
		var matchers []struct {
			syntax string
			m      caddyhttp.RequestMatcherWithError
		}
		if f.line != "" {
			var m MatchConsumer
			if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(f.line)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if err := m.Provision(caddy.Context{}); err != nil {
				t.Fatal(err)
			}
			if err := m.Validate(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			matchers = append(matchers, struct {
				syntax string
				m      caddyhttp.RequestMatcherWithError
			}{"line", m})
		}
		e := &caddyhttp.MatchExpression{Expr: f.cel}
		if err := e.Provision(ctx); err != nil {
			t.Fatalf("%s: %v", f.cel, err)
		}
		matchers = append(matchers, struct {
			syntax string
			m      caddyhttp.RequestMatcherWithError
		}{"cel", e})
		for _, tc := range tests {
			for _, m := range matchers {
				var got []string
				for _, w := range who {
					r := reqs[w.name]
					r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set("test.v", tc.value)
					ok, err := m.m.MatchWithError(r)
					if err != nil {
						t.Errorf("%s %s, value %q: error %v", m.syntax, name, tc.value, err)
					}
					if ok {
						got = append(got, w.name)
					}
				}
				if g := strings.Join(got, " "); g != tc.want[name] {
					t.Errorf("%s %s, value %q: matched %q, want %q", m.syntax, name, tc.value, g, tc.want[name])
				}
			}
		}
	}
}

// A value holding a placeholder is checked at load outside its
// placeholders; in CEL, the literal keys and values of a map holding
// placeholders are checked at load, and a key may not be a placeholder.
func TestMatchConsumerPlaceholderErrors(t *testing.T) {
	for _, tc := range []struct{ input, want string }{
		{`consumer group "a {test.v}"`, `"a {test.v}" outside its placeholders: group name "a " holds white space`},
		{`consumer group {test.v},b`, `outside its placeholders: group name ",b"`},
		{"consumer group " + strings.Repeat("g", consumers.MaxGroupNameChars+1) + "{test.v}", "longer than 128 characters"},
		{"consumer label plan \"\t{test.v}\"", `label "plan": "\t{test.v}" outside its placeholders: label value has a control character`},
		{"consumer label {test.v} x", `label name "{test.v}" is not`},
	} {
		var m MatchConsumer
		err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Testfile:1") {
			t.Errorf("%s: error %v, want one containing %q and the line", tc.input, err, tc.want)
		}
	}
	var m MatchConsumer
	err := json.Unmarshal([]byte(`{"group": ["x{test.v} y"]}`), &m)
	if err == nil {
		err = m.Validate()
	}
	if err == nil || !strings.Contains(err.Error(), `"x{test.v} y" outside its placeholders`) {
		t.Errorf("JSON: error %v", err)
	}

	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for _, tc := range []struct{ expr, want string }{
		{`consumer({'groups': {test.v}})`, `unknown key "groups"`},
		{`consumer({'group': ['a,b', {test.v}]})`, `group name "a,b"`},
		{`consumer({'group': {test.v}, 'username': ''})`, "username lists an empty value"},
		{`consumer({'group': {test.v}, 'label.a b': 'x'})`, `label name "a b"`},
		{`consumer({'group': {test.v}, 'label.plan': ['x', 'a` + "\\t" + `b']})`, "control character"},
		{`consumer({'group': {test.v}, 'anonymous': 'maybe'})`, "anonymous takes 'true' or 'false'"},
		{`consumer({{test.k}: 'gold'})`, "a key must be a literal string"},
		{`consumer({'label.' + {test.k}: 'gold'})`, "a key must be a literal string"},
		{`consumer({'group': {test.v}, 'group': 'gold'})`, `key "group" given twice`},
	} {
		m := &caddyhttp.MatchExpression{Expr: tc.expr}
		err := m.Provision(ctx)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.expr, err, tc.want)
		}
	}
}

// A literal matcher allocates nothing; one resolving a placeholder, what
// resolving it takes.
func BenchmarkMatchConsumerPlaceholder(b *testing.B) {
	r := identified(b, matchHandler(b), "alice-key")
	r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set("test.v", "writers")
	m := MatchConsumer{{Group: []string{"free", "{test.v}"}, Label: map[string][]string{"plan": {"pro"}}}}
	m.provision()
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := m.MatchWithError(r); !ok {
			b.Fatal("no match")
		}
	}
}

// BenchmarkMatchConsumerPlaceholderNoMatch is a request whose placeholder
// resolves to what no consumer can hold (a group name with white space):
// it costs a comparison, not a rule check building an error.
func BenchmarkMatchConsumerPlaceholderNoMatch(b *testing.B) {
	r := identified(b, matchHandler(b), "alice-key")
	r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set("test.v", "no such group")
	m := MatchConsumer{{Group: []string{"free", "{test.v}"}}}
	m.provision()
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := m.MatchWithError(r); ok {
			b.Fatal("a match")
		}
	}
}

// Whatever a placeholder resolves to, the matcher, in a line or in CEL,
// never errs, and a value no consumer can hold matches nobody.
func FuzzMatchConsumerPerRequest(f *testing.F) {
	for _, s := range []string{"", "gold", "a b", "gold, free", "\x00", "{test.v}", "\\{x}", "true", strings.Repeat("g", 200)} {
		f.Add(s)
	}
	h := matchHandler(f)
	r := identified(f, h, "alice-key")
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	var line MatchConsumer
	if err := line.UnmarshalCaddyfile(caddyfile.NewTestDispenser("consumer group {test.v}\nconsumer custom_id {test.v} cust-a\nconsumer label region {test.v} eu")); err != nil {
		f.Fatal(err)
	}
	line.provision()
	cel := &caddyhttp.MatchExpression{Expr: `consumer({'group': [{test.v}], 'custom_id': [{test.v}, 'cust-a'], 'label.region': [{test.v}, 'eu'], 'anonymous': {test.w}})`}
	if err := cel.Provision(ctx); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v string) {
		repl.Set("test.v", v)
		repl.Set("test.w", v)
		holdable := consumers.CheckGroupName(v) == nil
		for name, m := range map[string]caddyhttp.RequestMatcherWithError{"line": line, "cel": cel} {
			ok, err := m.MatchWithError(r)
			if err != nil {
				t.Fatalf("%s: %q: error %v", name, v, err)
			}
			want := v == "gold" || v == "writers"
			if name == "cel" {
				want = false // anonymous is never a group name
			}
			if ok != want {
				t.Errorf("%s: %q (holdable %v) matched %v", name, v, holdable, ok)
			}
		}
	})
}
