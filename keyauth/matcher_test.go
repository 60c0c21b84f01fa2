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
