package integration

// Kong's ACL inside key_auth (allow, deny, hide_groups_header), the
// X-Consumer-Groups header, the groups, labels and tags placeholders, and
// disabled consumers and keys (README: Authorization).

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// aclDoc is a consumers document with groups, labels, tags and disabled
// parts; %s and %s are the two backends of the labels.
const aclDoc = `{"consumers": [
  {"username": "gold", "groups": ["gold", "partner"], "tags": ["eu", "vip"],
   "labels": {"plan": "gold", "backend": "%s"},
   "keys": [{"id": "gold-k", "key": "gold-key-0001"}, {"id": "gold-off", "key": "gold-off-0002", "disabled": true}]},
  {"username": "free", "groups": ["free"], "labels": {"plan": "free", "backend": "%s"},
   "keys": [{"id": "free-k", "key": "free-key-0003"}]},
  {"username": "plain", "keys": [{"id": "plain-k", "key": "plain-key-0004"}]},
  {"username": "gone", "disabled": true, "groups": ["gold"], "keys": [{"id": "gone-k", "key": "gone-key-0005"}]},
  {"username": "guest"},
  {"username": "vip-guest", "groups": ["gold"]},
  {"username": "free-guest", "groups": ["free"]},
  {"username": "off-guest", "disabled": true}
]}`

const (
	keyGold    = "gold-key-0001"
	keyGoldOff = "gold-off-0002"
	keyFree    = "free-key-0003"
	keyPlain   = "plain-key-0004"
	keyGone    = "gone-key-0005"
	msgRefused = "You cannot consume this service"
)

// newACLEnv writes aclDoc with backends up and up2.
func newACLEnv(t *testing.T) (*env, *upstream) {
	t.Helper()
	e := newEnv(t)
	up2 := newUpstream(t)
	e.writeConsumers(fmt.Sprintf(aclDoc, e.up.addr(), up2.addr()))
	return e, up2
}

// aclRoute is a `handle` block of one key_auth with the given options
// in front of the upstream.
func aclRoute(path, options string) string {
	return fmt.Sprintf("\thandle %s/* {\n\t\tkey_auth {\n\t\t\tconsumers file {{.Consumers}}\n%s\t\t}\n\t\treverse_proxy {{.Up}}\n\t}\n", path, options)
}

// Kong's acl matrix: allow and deny, an authenticated or an anonymous
// consumer, in a listed group, in another group, or in none.
func TestACLMatrix(t *testing.T) {
	e, _ := newACLEnv(t)
	routes := aclRoute("/allow", "\t\t\tallow gold staff\n") + aclRoute("/deny", "\t\t\tdeny free blocked\n")
	for _, anon := range []string{"vip-guest", "free-guest", "guest"} {
		routes += aclRoute("/allow-anon/"+anon, "\t\t\tallow gold staff\n\t\t\tanonymous "+anon+"\n")
		routes += aclRoute("/deny-anon/"+anon, "\t\t\tdeny free blocked\n\t\t\tanonymous "+anon+"\n")
	}
	e.load("{{.Global}}\n{{.Site}} {\n"+routes+"}\n", "caddyfile")

	const pass, forbidden, unauthorized = 200, 403, 401
	for _, tc := range []struct {
		name, path, key string
		want            int
		who             string // username that went on
		groups          string // X-Consumer-Groups it had ("" for none)
	}{
		{"allow, authenticated, in group", "/allow", keyGold, pass, "gold", "gold, partner"},
		{"allow, authenticated, not in group", "/allow", keyFree, forbidden, "", ""},
		{"allow, authenticated, no groups", "/allow", keyPlain, forbidden, "", ""},
		{"allow, anonymous, in group", "/allow-anon/vip-guest", "", pass, "vip-guest", "gold"},
		{"allow, anonymous, not in group", "/allow-anon/free-guest", "", forbidden, "", ""},
		{"allow, anonymous, no groups", "/allow-anon/guest", "", unauthorized, "", ""},
		{"allow, anonymous after an unknown key, no groups", "/allow-anon/guest", keyWrong, unauthorized, "", ""},
		{"deny, authenticated, in group", "/deny", keyFree, forbidden, "", ""},
		{"deny, authenticated, not in group", "/deny", keyGold, pass, "gold", "gold, partner"},
		{"deny, authenticated, no groups", "/deny", keyPlain, pass, "plain", ""},
		{"deny, anonymous, in group", "/deny-anon/free-guest", "", forbidden, "", ""},
		{"deny, anonymous, not in group", "/deny-anon/vip-guest", "", pass, "vip-guest", "gold"},
		{"deny, anonymous, no groups", "/deny-anon/guest", "", pass, "guest", ""},
		// A key the list refuses is refused; it does not fall back to the
		// anonymous consumer, which the list would let on.
		{"allow, refused key, anonymous allowed", "/allow-anon/vip-guest", keyFree, forbidden, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.key != "" {
				hdr = []string{"apikey", tc.key}
			}
			r := get(t, site+tc.path+"/x", hdr...)
			switch tc.want {
			case forbidden:
				wantFailure(t, r, http.StatusForbidden, msgRefused, "")
			case unauthorized:
				// Kong's acl answers kong.response.error(401): Unauthorized,
				// the body of an unknown key, with the challenge.
				want401(t, r, msgInvalid)
			default:
				got := r.echo(t)
				if u := got.Header.Get("X-Consumer-Username"); u != tc.who {
					t.Errorf("went on as %q, want %q", u, tc.who)
				}
				if g := strings.Join(got.Header["X-Consumer-Groups"], "|"); g != tc.groups {
					t.Errorf("X-Consumer-Groups %q, want %q", g, tc.groups)
				}
			}
		})
	}
}

// A client's X-Consumer-Groups, in any spelling and through Connection,
// never reaches the upstream; hide_groups_header sends none at all.
func TestACLGroupsHeaderSpoofing(t *testing.T) {
	e, _ := newACLEnv(t)
	// Site 2 keeps underscored names (and so drops their dash spellings
	// itself); site 1 keeps dash spellings only.
	e.vars["GlobalExtra"] = "\tservers :" + strconv.Itoa(sitePort[1]) + " {\n\t\texpected_underscore_headers X_*\n\t}\n"
	routes := aclRoute("/shown", "\t\t\tanonymous guest\n") +
		aclRoute("/hidden", "\t\t\thide_groups_header\n\t\t\tanonymous vip-guest\n") +
		aclRoute("/preflight", "\t\t\trun_on_preflight false\n")
	e.load("{{.Global}}\n{{.Site}} {\n"+routes+"}\n{{.Site2}} {\n"+routes+"}\n", "caddyfile")
	sites := []struct {
		base, probe string
		spoofs      []string
	}{
		{site, "X-Other-Thing", []string{"X-Consumer-Groups", "admin", "x-consumer-groups", "root", "X-CONSUMER-GROUPS", "admin"}},
		// Go folds the case of an underscored name too, and Caddy drops such
		// a header sent twice: one spelling per request.
		{site2, "X_Other_Thing", []string{"x_CONSUMER_groups", "admin"}},
	}
	for _, tc := range []struct {
		name, path, method, key string
		want                    string // X-Consumer-Groups the upstream got; "" for none
	}{
		{"groups shown", "/shown", http.MethodGet, keyGold, "gold, partner"},
		{"no groups", "/shown", http.MethodGet, keyPlain, ""},
		{"anonymous without groups", "/shown", http.MethodGet, "", ""},
		{"hidden", "/hidden", http.MethodGet, keyGold, ""},
		{"hidden, anonymous with groups", "/hidden", http.MethodGet, "", ""},
		{"preflight let through", "/preflight", http.MethodOptions, keyGold, ""},
	} {
		for _, st := range sites {
			t.Run(tc.name+" "+st.probe, func(t *testing.T) {
				hdr := append([]string{st.probe, "kept"}, st.spoofs...)
				if tc.key != "" {
					hdr = append(hdr, "apikey", tc.key)
				}
				if tc.method == http.MethodOptions {
					hdr = append(hdr, "Origin", "https://app.example", "Access-Control-Request-Method", "GET")
				}
				got := do(t, req(tc.method, st.base+tc.path+"/x", nil, hdr...)).echo(t)
				var seen []string
				probed := false
				for name, v := range got.Header {
					switch strings.NewReplacer("_", "-").Replace(strings.ToLower(name)) {
					case "x-consumer-groups":
						seen = append(seen, name+": "+strings.Join(v, "|"))
					case "x-other-thing":
						probed = strings.Join(v, "") == "kept"
					}
				}
				want := ""
				if tc.want != "" {
					want = "X-Consumer-Groups: " + tc.want
				}
				if strings.Join(seen, "; ") != want {
					t.Errorf("upstream got %q, want %q", seen, want)
				}
				if !probed {
					t.Errorf("%s did not reach the upstream: the server did not keep that spelling, so the test sees nothing", st.probe)
				}
			})
		}
	}

	// Connection: X-Consumer-Groups would have a proxy drop the real one.
	got := get(t, site+"/shown/x", "apikey", keyGold, "Connection", "X-Consumer-Groups, x_consumer_groups").echo(t)
	if g := got.Header.Get("X-Consumer-Groups"); g != "gold, partner" {
		t.Errorf("X-Consumer-Groups %q after a Connection naming it, want gold, partner", g)
	}
}

// The placeholders {http.auth.user.groups}, {http.auth.user.tags} and
// {http.auth.user.labels.<name>} reach the upstream through header_up, and
// are empty, not literal, for a request without a consumer.
func TestACLPlaceholders(t *testing.T) {
	e, _ := newACLEnv(t)
	const show = "groups=[{http.auth.user.groups}] tags=[{http.auth.user.tags}] plan=[{http.auth.user.labels.plan}] none=[{http.auth.user.labels.none}]"
	e.load(`{{.Global}}
{{.Site}} {
	handle /up/* {
		key_auth {
			consumers file {{.Consumers}}
			anonymous free-guest
			hide_groups_header
		}
		reverse_proxy {{.Up}} {
			header_up X-Groups "{http.auth.user.groups}"
			header_up X-Tags "{http.auth.user.tags}"
			header_up X-Plan "{http.auth.user.labels.plan}"
		}
	}
	handle /preflight/* {
		key_auth {
			consumers file {{.Consumers}}
			run_on_preflight false
		}
		respond "`+show+`"
	}
	handle /errors/* {
		key_auth {
			consumers file {{.Consumers}}
			handle_errors
		}
	}
	handle_errors {
		respond "`+show+`" 401
	}
}
`, "caddyfile")
	for _, tc := range []struct {
		name, key          string
		groups, tags, plan string
	}{
		{"gold", keyGold, "gold, partner", "eu, vip", "gold"},
		{"free", keyFree, "free", "", "free"},
		{"plain", keyPlain, "", "", ""},
		{"anonymous", "", "free", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.key != "" {
				hdr = []string{"apikey", tc.key}
			}
			got := get(t, site+"/up/x", hdr...).echo(t)
			for _, h := range []struct{ name, want string }{{"X-Groups", tc.groups}, {"X-Tags", tc.tags}, {"X-Plan", tc.plan}} {
				if v := got.Header.Get(h.name); v != h.want {
					t.Errorf("%s %q, want %q", h.name, v, h.want)
				}
			}
			if got.has("X-Consumer-Groups") {
				t.Errorf("X-Consumer-Groups sent under hide_groups_header: %q", got.Header["X-Consumer-Groups"])
			}
		})
	}
	// respond replaces only known placeholders: a literal name would show.
	const empty = "groups=[] tags=[] plan=[] none=[]"
	r := do(t, req(http.MethodOptions, site+"/preflight/x", nil, "apikey", keyGold, "Origin", "https://app.example", "Access-Control-Request-Method", "GET"))
	if r.status != http.StatusOK || string(r.body) != empty {
		t.Errorf("preflight let through: %d %q, want %q", r.status, r.body, empty)
	}
	r = get(t, site+"/errors/x", "apikey", keyWrong)
	if r.status != http.StatusUnauthorized || string(r.body) != empty {
		t.Errorf("failure in handle_errors: %d %q, want %q", r.status, r.body, empty)
	}
}

// A label chooses the upstream: reverse_proxy {http.auth.user.labels.backend}
// sends each consumer to its own.
func TestACLLabelsRouteUpstreams(t *testing.T) {
	e, up2 := newACLEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		consumers file {{.Consumers}}
	}
	reverse_proxy {http.auth.user.labels.backend}
}
`, "caddyfile")
	for _, tc := range []struct {
		key  string
		who  string
		up   *upstream
		name string
	}{
		{keyGold, "gold", e.up, "first"}, {keyFree, "free", up2, "second"}, {keyGold, "gold", e.up, "first"},
	} {
		before1, before2 := e.up.hits.Load(), up2.hits.Load()
		got := get(t, site+"/x", "apikey", tc.key).echo(t)
		if u := got.Header.Get("X-Consumer-Username"); u != tc.who {
			t.Errorf("went on as %q, want %q", u, tc.who)
		}
		d1, d2 := e.up.hits.Load()-before1, up2.hits.Load()-before2
		want1, want2 := int64(0), int64(0)
		if tc.up == e.up {
			want1 = 1
		} else {
			want2 = 1
		}
		if d1 != want1 || d2 != want2 {
			t.Errorf("%s: upstream hits +%d, +%d; want the %s upstream only", tc.who, d1, d2, tc.name)
		}
	}
	// A consumer without the label has no upstream: Caddy's own 502.
	if r := get(t, site+"/x", "apikey", keyPlain); r.status != http.StatusBadGateway || r.fromUpstream() {
		t.Errorf("a consumer without a backend label: %s", r)
	}
}

// A disabled key or consumer is refused as an unknown key, or goes on as the
// anonymous consumer; a disabled anonymous consumer is a 500.
func TestACLDisabled(t *testing.T) {
	e, _ := newACLEnv(t)
	e.load("{{.Global}}\n{{.Site}} {\n"+
		aclRoute("/plain", "")+
		aclRoute("/anon", "\t\t\tanonymous guest\n")+
		aclRoute("/off-anon", "\t\t\tanonymous off-guest\n")+
		"}\n", "caddyfile")
	if got := get(t, site+"/plain/x", "apikey", keyGold).echo(t); got.Header.Get("X-Credential-Identifier") != "gold-k" {
		t.Errorf("the consumer's enabled key: %v", got.Header)
	}
	want401(t, get(t, site+"/plain/x", "apikey", keyGoldOff), msgInvalid)
	want401(t, get(t, site+"/plain/x", "apikey", keyGone), msgInvalid)
	for _, key := range []string{keyGoldOff, keyGone} {
		got := get(t, site+"/anon/x", "apikey", key).echo(t)
		if u, a := got.Header.Get("X-Consumer-Username"), got.Header.Get("X-Anonymous-Consumer"); u != "guest" || a != "true" {
			t.Errorf("a disabled key went on as %q (anonymous %q), want the anonymous guest", u, a)
		}
	}
	wantFailure(t, get(t, site+"/off-anon/x"), http.StatusInternalServerError, "anonymous consumer off-guest is configured but disabled", "")
	wantFailure(t, get(t, site+"/off-anon/x", "apikey", keyGone), http.StatusInternalServerError, "anonymous consumer off-guest is configured but disabled", "")
	// The enabled key still works next to the disabled anonymous consumer.
	get(t, site+"/off-anon/x", "apikey", keyGold).echo(t)
}

// allow and deny together are refused at load, naming both.
func TestACLRefused(t *testing.T) {
	e, _ := newACLEnv(t)
	msg := e.loadError("{{.Global}}\n{{.Site}} {\n"+aclRoute("/x", "\t\t\tallow gold\n\t\t\tdeny free\n")+"}\n", "caddyfile")
	if !strings.Contains(msg, "allow and deny cannot be used together") || !strings.Contains(msg, "Caddyfile:") {
		t.Errorf("refused with %q", msg)
	}
	msg = e.loadError(`{"apps": {"http": {"servers": {"s": {"listen": [":{{.Port}}"], "routes": [{"handle": [
		{"handler": "key_auth", "allow": ["gold"], "deny": ["free"], "consumers": {"source": "file", "path": "{{.Consumers}}"}}]}]}}}}}`, "json")
	if !strings.Contains(msg, "allow and deny cannot be used together") {
		t.Errorf("refused with %q", msg)
	}
	// The JSON names load too.
	e.load(`{"admin": {"listen": "{{.Admin}}", "config": {"persist": false}},
	"apps": {"http": {"servers": {"s": {"listen": [":{{.Port}}"], "routes": [{"handle": [
		{"handler": "key_auth", "allow": ["gold"], "hide_groups_header": true, "consumers": {"source": "file", "path": "{{.Consumers}}"}},
		{"handler": "reverse_proxy", "upstreams": [{"dial": "{{.Up}}"}]}]}]}}}}}`, "json")
	if got := get(t, site+"/x", "apikey", keyGold).echo(t); got.has("X-Consumer-Groups") || got.Header.Get("X-Consumer-Username") != "gold" {
		t.Errorf("JSON allow + hide_groups_header: %v", got.Header)
	}
	wantFailure(t, get(t, site+"/x", "apikey", keyFree), http.StatusForbidden, msgRefused, "")
}

// A rewritten consumers file moves a consumer between groups: the allow
// list follows within refresh, without a reload of the config.
func TestACLGroupsReload(t *testing.T) {
	e := newEnv(t)
	moverIn := func(group string) string {
		return fmt.Sprintf(`{"consumers": [{"username": "mover", "groups": [%q], "keys": [{"id": "m", "key": "mover-key-0006"}]}]}`, group)
	}
	e.writeConsumers(moverIn("free"))
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		allow gold
		consumers file {{.Consumers}} {
			refresh 100ms
		}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	wantFailure(t, get(t, site+"/x", "apikey", "mover-key-0006"), http.StatusForbidden, msgRefused, "")

	for _, step := range []struct {
		group string
		in    bool
	}{{"gold", true}, {"free", false}} {
		old := theSet(t, e)
		e.writeConsumers(moverIn(step.group))
		// The poller swaps in the new set; the next request sees it.
		eventually(t, "the consumers file to be loaded again", func() bool { return theSet(t, e) != old })
		r := get(t, site+"/x", "apikey", "mover-key-0006")
		if step.in {
			if g := r.echo(t).Header.Get("X-Consumer-Groups"); g != "gold" {
				t.Errorf("moved into gold: X-Consumer-Groups %q", g)
			}
		} else {
			wantFailure(t, r, http.StatusForbidden, msgRefused, "")
		}
	}
}

// theSet is the consumers set the test's file source serves.
func theSet(t *testing.T, e *env) *consumers.Set {
	t.Helper()
	st := storeAt(t, e.consumers)
	if st == nil {
		t.Fatal("no store for the consumers file")
	}
	return st.Set()
}
