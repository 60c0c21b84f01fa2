package integration

// The consumer matcher (README: The consumer matcher): every form in the
// Caddyfile and JSON, mistakes refused, and where in a site it sees the
// consumer. The README's recipes with it run in readme_test.go.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	// The rate limiter the README composes with, in this test binary only.
	_ "github.com/mholt/caddy-ratelimit"
)

// The keys of matcherConsumers besides the standard ones.
const (
	keyCarol = "carol-secret-0005"
	keyDave  = "dave-secret-0006"
)

// matcherConsumers has a consumer for every test of the consumer matcher:
// alice (two keys) is gold and a writer with her own backend, bob and
// carol are free (carol a writer with her own backend), dave has neither
// groups nor labels, guest is the anonymous consumer.
const matcherConsumers = `{"consumers": [
  {"username": "alice", "id": "a11ce", "custom_id": "cust-1", "groups": ["gold", "writers"],
   "labels": {"plan": "gold", "region": "eu", "backend": "{{.Up2}}"},
   "keys": [{"id": "alice-key", "key": "alice-secret-0001"}, {"id": "alice-special", "key": "sp ace+plus/slash=eq&amp%25"}]},
  {"username": "bob", "groups": ["free"], "labels": {"plan": "free"},
   "keys": [{"id": "bob-key", "key": "bob-secret-0002"}]},
  {"username": "carol", "groups": ["free", "writers"], "labels": {"plan": "free", "backend": "{{.Up2}}"},
   "keys": [{"id": "carol-key", "key": "carol-secret-0005"}]},
  {"username": "dave", "keys": [{"id": "dave-key", "key": "dave-secret-0006"}]},
  {"username": "guest", "id": "anon-1", "groups": ["visitors"]}
]}`

// newMatcherEnv is an env with matcherConsumers and a second upstream,
// {{.Up2}}; its module log lines must not hold the keys of carol and dave
// either.
func newMatcherEnv(t *testing.T) (*env, *upstream) {
	t.Helper()
	e := newEnv(t)
	up2 := newUpstream(t)
	e.vars["Up2"] = up2.addr()
	e.writeConsumers(e.render(matcherConsumers))
	t.Cleanup(func() {
		for _, l := range e.moduleLogLines("caddy.log") {
			if strings.Contains(l, keyCarol) || strings.Contains(l, keyDave) {
				t.Errorf("a log line of the module holds a key: %s", l)
			}
		}
	})
	return e, up2
}

// caller is a way to call: a consumer's key, none (the anonymous
// consumer), or a CORS preflight key_auth lets through without a consumer.
type caller struct {
	name string
	hdr  []string
}

var callers = []caller{
	{"alice", []string{"apikey", keyAlice}},
	{"alice", []string{"apikey", keySpecial}}, // her other key: the same consumer
	{"bob", []string{"apikey", keyBob}},
	{"carol", []string{"apikey", keyCarol}},
	{"dave", []string{"apikey", keyDave}},
	{"guest", nil},
	{"guest", []string{"apikey", keyWrong}},
	{"nobody", []string{"Origin", "http://app.example", "Access-Control-Request-Method", "GET"}},
}

func (c caller) do(t *testing.T, url string, extra ...string) *response {
	t.Helper()
	method := http.MethodGet
	if c.name == "nobody" {
		method = http.MethodOptions
	}
	return do(t, req(method, url, nil, append(slices.Clone(c.hdr), extra...)...))
}

// matcherForm is one matcher in each of the three syntaxes ("" where a
// syntax cannot say it) and who it matches.
type matcherForm struct {
	name      string
	caddyfile string // the lines of a named matcher's block
	json      string // a match set
	cel       string
	want      string // among alice bob carol dave guest nobody
}

var matcherForms = []matcherForm{
	{"group", "consumer group gold", `{"consumer": {"group": ["gold"]}}`, `consumer({'group': 'gold'})`, "alice"},
	{"groups", "consumer group gold free", `{"consumer": {"group": ["gold", "free"]}}`, `consumer({'group': ['gold', 'free']})`, "alice bob carol"},
	{"username", "consumer username bob dave", `{"consumer": {"username": ["bob", "dave"]}}`, `consumer({'username': ['bob', 'dave']})`, "bob dave"},
	{"id", "consumer id a11ce anon-1", `{"consumer": {"id": ["a11ce", "anon-1"]}}`, `consumer({'id': ['a11ce', 'anon-1']})`, "alice guest"},
	{"custom-id", "consumer custom_id cust-1", `{"consumer": {"custom_id": ["cust-1"]}}`, `consumer({'custom_id': 'cust-1'})`, "alice"},
	{"label", "consumer label plan free", `{"consumer": {"label": {"plan": ["free"]}}}`, `consumer({'label.plan': 'free'})`, "bob carol"},
	{"labels", "consumer label plan gold free\nconsumer label region eu", `{"consumer": {"label": {"plan": ["gold", "free"], "region": ["eu"]}}}`,
		`consumer({'label.plan': ['gold', 'free'], 'label.region': 'eu'})`, "alice"},
	{"anonymous", "consumer anonymous", `{"consumer": {"anonymous": true}}`, `consumer({'anonymous': 'true'})`, "guest"},
	{"keyed", "consumer anonymous false", `{"consumer": {"anonymous": false}}`, `consumer({'anonymous': 'false'})`, "alice bob carol dave"},
	{"both-groups", "consumer group free\nconsumer group writers", `{"consumer": [{"group": ["free"]}, {"group": ["writers"]}]}`,
		`consumer({'group': 'free'}) && consumer({'group': 'writers'})`, "carol"},
	{"mixed", "consumer group free writers\nconsumer label plan free\nconsumer anonymous false",
		`{"consumer": {"group": ["free", "writers"], "label": {"plan": ["free"]}, "anonymous": false}}`,
		`consumer({'group': ['free', 'writers'], 'label.plan': 'free', 'anonymous': 'false'})`, "bob carol"},
	{"not", "not consumer group gold", `{"not": [{"consumer": {"group": ["gold"]}}]}`, `!consumer({'group': 'gold'})`, "bob carol dave guest nobody"},
	{"with-method", "consumer group visitors\nmethod GET", `{"consumer": {"group": ["visitors"]}, "method": ["GET"]}`,
		`consumer({'group': 'visitors'}) && {http.request.method} == 'GET'`, "guest"},
	// A placeholder resolved per request: the plan the client asks for.
	{"placeholder", "", "", `consumer({'label.plan': {http.request.header.X-Want-Plan}})`, "bob carol"},
	{"user-id", "", "", `{http.auth.user.id} == 'dave'`, "dave"},
}

// Every form of the matcher, in a Caddyfile, in JSON and in CEL, against
// every kind of caller: request_header (ordered after key_auth) marks what
// matched, and the upstream reports the marks it got.
func TestConsumerMatcherForms(t *testing.T) {
	for _, syntax := range []string{"caddyfile", "json", "cel"} {
		t.Run(syntax, func(t *testing.T) {
			e, _ := newMatcherEnv(t)
			var forms []matcherForm
			for _, f := range matcherForms {
				if syntax == "caddyfile" && f.caddyfile != "" || syntax == "json" && f.json != "" || syntax == "cel" && f.cel != "" {
					forms = append(forms, f)
				}
			}
			cfg, adapter := matcherConfig(syntax, forms)
			e.load(cfg, adapter)
			matched := map[string]map[string]bool{} // form -> caller -> matched
			for _, f := range forms {
				matched[f.name] = map[string]bool{}
			}
			for _, c := range callers {
				r := c.do(t, site+"/", "X-Want-Plan", "free")
				ec := r.echo(t)
				for _, f := range forms {
					got := ec.Header.Get("X-M-"+f.name) == "1"
					if prev, seen := matched[f.name][c.name]; seen && prev != got {
						t.Errorf("%s: two requests of %s disagree", f.name, c.name)
					}
					matched[f.name][c.name] = got
				}
			}
			for _, f := range forms {
				var got []string
				for _, who := range []string{"alice", "bob", "carol", "dave", "guest", "nobody"} {
					if matched[f.name][who] {
						got = append(got, who)
					}
				}
				if g := strings.Join(got, " "); g != f.want {
					t.Errorf("%s matched %q, want %q", f.name, g, f.want)
				}
			}
		})
	}
}

func matcherConfig(syntax string, forms []matcherForm) (cfg, adapter string) {
	if syntax == "json" {
		routes := []string{`{"handle": [{"handler": "key_auth", "anonymous": "guest", "run_on_preflight": false,
			"consumers": {"source": "file", "path": "{{.Consumers}}"}}]}`}
		for _, f := range forms {
			routes = append(routes, fmt.Sprintf(`{"match": [%s], "handle": [{"handler": "headers", "request": {"set": {"X-M-%s": ["1"]}}}]}`, f.json, f.name))
		}
		routes = append(routes, `{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "{{.Up}}"}]}]}`)
		return `{
	"admin": {"listen": "{{.Admin}}", "config": {"persist": false}},
	"logging": {"logs": {"default": {"level": "DEBUG", "encoder": {"format": "json"},
		"writer": {"output": "file", "filename": "{{.Dir}}/caddy.log"}}}},
	"apps": {"http": {"http_port": {{.HTTPPort}}, "https_port": {{.HTTPSPort}}, "servers": {"srv0": {
		"listen": [":{{.Port}}"], "automatic_https": {"disable": true},
		"routes": [` + strings.Join(routes, ",\n") + `]
	}}}}
}`, "json"
	}
	var b strings.Builder
	b.WriteString("{{.Global}}\n:{{.Port}} {\n\tkey_auth {\n\t\tanonymous guest\n\t\trun_on_preflight false\n\t\tconsumers file {{.Consumers}}\n\t}\n")
	for _, f := range forms {
		fmt.Fprintf(&b, "\t@m_%s {\n", f.name)
		if syntax == "cel" {
			fmt.Fprintf(&b, "\t\texpression `%s`\n", f.cel)
		} else {
			for l := range strings.SplitSeq(f.caddyfile, "\n") {
				fmt.Fprintf(&b, "\t\t%s\n", l)
			}
		}
		fmt.Fprintf(&b, "\t}\n\trequest_header @m_%s X-M-%s 1\n", f.name, f.name)
	}
	b.WriteString("\treverse_proxy {{.Up}}\n}\n")
	return b.String(), "caddyfile"
}

// A Caddyfile mistake in the matcher is refused at load, naming file and
// line; so is one in JSON and in CEL.
func TestConsumerMatcherRefused(t *testing.T) {
	e, _ := newMatcherEnv(t)
	const bad = "{{.Global}}\n:{{.Port}} {\n\tkey_auth {\n\t\tconsumers file {{.Consumers}}\n\t}\n\t@m consumer group gold,silver\n\trespond @m 403\n}\n"
	before, _, _ := strings.Cut(e.render(bad), "@m consumer")
	line := fmt.Sprintf("Caddyfile:%d", strings.Count(before, "\n")+1)
	msg := e.loadError(bad, "caddyfile")
	if !strings.Contains(msg, `group name "gold,silver" holds white space, a comma`) || !strings.Contains(msg, line) {
		t.Errorf("error %q, want the group and %s", msg, line)
	}
	msg = e.loadError(`{"admin": {"listen": "{{.Admin}}", "config": {"persist": false}}, "apps": {"http": {"servers": {"s": {"listen": [":{{.Port}}"], "routes": [
		{"match": [{"consumer": {"groups": ["gold"]}}], "handle": [{"handler": "static_response"}]}]}}}}}`, "json")
	if !strings.Contains(msg, `unknown field "groups"`) {
		t.Errorf("error %q, want the unknown field", msg)
	}
	msg = e.loadError(`{"admin": {"listen": "{{.Admin}}", "config": {"persist": false}}, "apps": {"http": {"servers": {"s": {"listen": [":{{.Port}}"], "routes": [
		{"match": [{"consumer": {"label": {"plan": []}}}], "handle": [{"handler": "static_response"}]}]}}}}}`, "json")
	if !strings.Contains(msg, `label "plan" lists no value`) {
		t.Errorf("error %q, want the empty label", msg)
	}
	msg = e.loadError("{{.Global}}\n:{{.Port}} {\n\t@m expression `consumer({'anonymous': 'maybe'})`\n\trespond @m 403\n}\n", "caddyfile")
	if !strings.Contains(msg, "anonymous takes 'true' or 'false'") {
		t.Errorf("error %q, want the anonymous value", msg)
	}
}

// wantConsumer checks that the upstream was told the username who.
func wantConsumer(t *testing.T, r *response, who string) *echo {
	t.Helper()
	ec := r.echo(t)
	if got := ec.Header.Get("X-Consumer-Username"); got != who {
		t.Errorf("upstream was told consumer %q, want %q", got, who)
	}
	return ec
}

// The order the README states, read off the adapted config: key_auth runs
// before every directive that serves, and header (ordered before it) never
// sees a consumer while request_header and handle do.
func TestMatcherDirectiveOrder(t *testing.T) {
	const cfg = `:{{.Port}} {
	reverse_proxy localhost:9000
	reverse_proxy @staff localhost:9001
	respond @readonly_write 403
	handle @gold {
		reverse_proxy localhost:9002
	}
	request_header @gold X-Tier gold
	header @gold X-Tier gold
	@gold consumer group gold
	@staff consumer username alice bob
	@readonly_write {
		not consumer group writers
		method POST PUT PATCH DELETE
	}
	key_auth {
		consumers file consumers.json
	}
}
`
	e, up2 := newMatcherEnv(t)
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(e.render(cfg)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Handler string `json:"handler"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatal(err)
	}
	var chain []string
	for _, r := range c.Apps.HTTP.Servers["srv0"].Routes {
		for _, h := range r.Handle {
			chain = append(chain, h.Handler)
		}
	}
	want := "headers key_auth headers subroute static_response reverse_proxy reverse_proxy"
	if got := strings.Join(chain, " "); got != want {
		t.Errorf("handler chain\n%s\nwant\n%s", got, want)
	}

	// Run: header @gold never matches; request_header @gold and handle
	// @gold do.
	e.load("{{.Global}}\n"+strings.NewReplacer("consumers.json", "{{.Consumers}}", "localhost:9000", "{{.Up}}",
		"localhost:9001", "{{.Up}}", "localhost:9002", "{{.Up2}}").Replace(cfg), "caddyfile")
	r := get(t, site+"/", "apikey", keyAlice)
	if ec := wantConsumer(t, r, "alice"); ec.Header.Get("X-Tier") != "gold" {
		t.Errorf("request_header @gold did not match alice: %v", ec.Header)
	}
	if r.header.Get("X-Tier") != "" {
		t.Errorf("header @gold matched: the README says it runs before key_auth")
	}
	if up2.hits.Load() != 1 {
		t.Errorf("handle @gold did not send alice to its upstream")
	}
}
