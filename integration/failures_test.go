package integration

// Failure responses (README: Request handling, rule 8): JSON bodies, the
// challenge, the realm, and handle_errors.

import (
	"net/http"
	"strings"
	"testing"
)

// failing are requests that fail each way key_auth can fail a request with
// 401, against a site with the default options.
var failing = []struct {
	name    string
	hdr     []string
	path    string
	message string
}{
	{"no key", nil, "/f", msgNoKey},
	{"empty key", []string{"apikey", ""}, "/f", msgNoKey},
	{"duplicate header", []string{"apikey", keyAlice, "apikey", keyBob}, "/f", msgDuplicate},
	{"duplicate query", nil, "/f?apikey=" + keyAlice + "&apikey=" + keyAlice, msgDuplicate},
	{"unknown key", []string{"apikey", keyWrong}, "/f", msgInvalid},
	{"expired key", []string{"apikey", keyExpired}, "/f", msgInvalid},
	{"hash given as the key", []string{"apikey", "sha256:64708caec1a9013e7e2ea53b462e4cbca55c79f7e8cdcf61da944f2a05effebb"}, "/f", msgInvalid},
	{"key with a different case", []string{"apikey", strings.ToUpper(keyAlice)}, "/f", msgInvalid},
	{"key with a suffix", []string{"apikey", keyAlice + "x"}, "/f", msgInvalid},
	{"key too long", []string{"apikey", strings.Repeat("k", 5000)}, "/f", msgInvalid},
}

// Request handling, rule 8: failures are JSON, with the challenge, with or
// without a realm.
func TestFailureResponses(t *testing.T) {
	e := newEnv(t)
	e.sites(
		keyAuthSite("{{.Site}}"),
		keyAuthSite("{{.Site2}}", "realm x"),
		keyAuthSite("{{.Site3}}", `realm "my \"API\""`),
	)
	for _, s := range []struct{ base, challenge string }{
		{site, `Key`},
		{site2, `Key realm="x"`},
		{site3, `Key realm="my \"API\""`},
	} {
		for _, f := range failing {
			t.Run(s.base[len("http://"):]+" "+f.name, func(t *testing.T) {
				r := get(t, s.base+f.path, f.hdr...)
				wantFailure(t, r, http.StatusUnauthorized, f.message, s.challenge)
			})
		}
	}
	if n := e.up.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d requests", n)
	}
	// The keys that are right still work, plain and hashed.
	wantIdentity(t, get(t, site2+"/ok", "apikey", keyAlice), idAlice)
	wantIdentity(t, get(t, site3+"/ok", "apikey", keyBob), idBob)
}

// Request handling, rule 8: with handle_errors, failures go to the site's
// handle_errors routes with {http.error.status_code} and
// {http.error.message}.
func TestHandleErrors(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		handle_errors
		realm r
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
	handle_errors {
		respond "handled {http.error.status_code}: {http.error.message}" {http.error.status_code}
	}
}
{{.Site2}} {
	key_auth {
		handle_errors true
		anonymous nobody
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
	handle_errors {
		respond "handled {http.error.status_code}: {http.error.message}"
	}
}
{{.Site3}} {
	key_auth {
		handle_errors
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	for _, f := range failing {
		t.Run(f.name, func(t *testing.T) {
			r := get(t, site+f.path, f.hdr...)
			if r.status != http.StatusUnauthorized || string(r.body) != "handled 401: "+f.message {
				t.Errorf("got %d %q, want 401 %q", r.status, r.body, "handled 401: "+f.message)
			}
			if wa := r.header.Values("Www-Authenticate"); len(wa) != 1 || wa[0] != `Key realm="r"` {
				t.Errorf("WWW-Authenticate %q", wa)
			}
			// The anonymous consumer that does not exist.
			r = get(t, site2+f.path, f.hdr...)
			want := "handled 500: anonymous consumer nobody is configured but doesn't exist"
			if string(r.body) != want {
				t.Errorf("got %d %q, want %q", r.status, r.body, want)
			}
			// Without handle_errors routes, Caddy answers with the status alone.
			r = get(t, site3+f.path, f.hdr...)
			if r.status != http.StatusUnauthorized || len(r.body) != 0 || r.fromUpstream() {
				t.Errorf("got %s, want an empty 401", r)
			}
			if wa := r.header.Values("Www-Authenticate"); len(wa) != 1 || wa[0] != "Key" {
				t.Errorf("WWW-Authenticate %q", wa)
			}
		})
	}
	wantIdentity(t, get(t, site+"/", "apikey", keyAlice), idAlice)
	// A rejected request is no ERROR line, even through handle_errors.
	for _, l := range e.logLines("caddy.log") {
		if strings.Contains(l, `"level":"error"`) && strings.Contains(l, "401") {
			t.Errorf("a rejected request logged at ERROR: %s", l)
		}
	}
}

// An unknown key is Kong 3.7+'s 401 Unauthorized; the other
// messages are unchanged.
func TestUnknownKeyMessage(t *testing.T) {
	e := newSmallEnv(t)
	e.site()
	want401(t, get(t, site+"/", "apikey", "nobody-s-key"), "Unauthorized")
	want401(t, get(t, site+"/"), "No API key found in request")
	want401(t, get(t, site+"/?apikey=a&apikey=b"), "Duplicate API key found")
	wantIdentity(t, get(t, site+"/", "apikey", smallKey), smallAlice)
}
