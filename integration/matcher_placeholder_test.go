package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// A placeholder in the consumer matcher is client input: a value no
// consumer can hold (missing, empty, white space, a comma, a control
// character, too long, a placeholder of its own) makes the matcher not
// match; it never fails the request with a 500, and nothing it does puts a
// request's key, or the request, into Caddy's logs.

// phForm is one matcher reading the X-Want header, in a Caddyfile line or
// in CEL, and who it matches for a valid value ("" where it cannot say it).
type phForm struct {
	name string
	line string // a consumer matcher line, or ""
	cel  string // an expression, or ""
}

const want = "{http.request.header.X-Want}"

var phForms = []phForm{
	{"group", "consumer group " + want, "consumer({'group': " + want + "})"},
	{"group_or_gold", "consumer group gold " + want, "consumer({'group': ['gold', " + want + "]})"},
	{"username", "consumer username " + want, "consumer({'username': " + want + "})"},
	{"id", "consumer id " + want, "consumer({'id': " + want + "})"},
	{"custom_id", "consumer custom_id " + want, "consumer({'custom_id': " + want + "})"},
	{"label", "consumer label plan " + want, "consumer({'label.plan': " + want + "})"},
	{"anonymous", "", "consumer({'anonymous': " + want + "})"},
	{"label_and_group", "consumer label plan " + want + "\n\t\tconsumer group free", "consumer({'label.plan': " + want + ", 'group': 'free'})"},
}

// phSite is a site whose matchers each add their name to X-M when they
// match; the answer is that list. The key goes in X-Api-Key or in the
// query, neither of which Caddy redacts; the access log filters them out
// as the README shows.
func phSite() string {
	var b strings.Builder
	b.WriteString(`{{.Global}}
:{{.Port}} {
	log {
		output file {{.Dir}}/access.log
		format filter {
			wrap json
			request>headers>X-Api-Key delete
			request>uri query {
				delete apikey
			}
		}
	}
	key_auth {
		key_names x-api-key apikey
		anonymous guest
		consumers file {{.Consumers}}
	}
`)
	for _, f := range phForms {
		if f.line != "" {
			fmt.Fprintf(&b, "\t@line_%s {\n\t\t%s\n\t}\n\trequest_header @line_%s +X-M line_%s\n", f.name, f.line, f.name, f.name)
		}
		fmt.Fprintf(&b, "\t@cel_%s expression `%s`\n\trequest_header @cel_%s +X-M cel_%s\n", f.name, f.cel, f.name, f.name)
	}
	b.WriteString("\trespond \"{http.request.header.X-M}\" 200\n}\n")
	return b.String()
}

// phCallers: alice's key in a custom header, bob's in the query, dave's in
// the header again (no groups, labels or custom_id), and the anonymous
// guest.
var phCallers = []struct{ name, header, query string }{
	{"alice", "alice-secret-0001", ""},
	{"bob", "", "bob-secret-0002"},
	{"dave", keyDave, ""},
	{"guest", "", ""},
}

// phAsk sends the request of caller c with X-Want (none when absent) and
// returns the status and the sorted names of the matchers that matched
// (line_<form> and cel_<form>).
func phAsk(t *testing.T, who string, value *string, extra ...string) (int, []string) {
	t.Helper()
	i := slices.IndexFunc(phCallers, func(c struct{ name, header, query string }) bool { return c.name == who })
	c := phCallers[i]
	u := site + "/"
	if c.query != "" {
		u += "?apikey=" + url.QueryEscape(c.query)
	}
	var hdr []string
	if c.header != "" {
		hdr = append(hdr, "X-Api-Key", c.header)
	}
	if value != nil {
		hdr = append(hdr, "X-Want", *value)
	}
	r := do(t, req(http.MethodGet, u, nil, append(hdr, extra...)...))
	var got []string
	for m := range strings.SplitSeq(strings.TrimSpace(string(r.body)), ",") {
		if m != "" {
			got = append(got, m)
		}
	}
	slices.Sort(got)
	return r.status, got
}

func ptrTo(s string) *string { return &s }

// both is the line_ and cel_ names of forms, sorted; a form without a line
// has only its cel_ name.
func both(forms ...string) []string {
	var out []string
	for _, f := range forms {
		i := slices.IndexFunc(phForms, func(p phForm) bool { return p.name == f })
		if phForms[i].line != "" {
			out = append(out, "line_"+f)
		}
		out = append(out, "cel_"+f)
	}
	slices.Sort(out)
	return out
}

func TestConsumerMatcherPlaceholder(t *testing.T) {
	e, _ := newMatcherEnv(t)
	e.load(phSite(), "caddyfile")

	// Valid values: the placeholder is resolved per request, in a line as
	// in CEL, and matches who holds the value.
	valid := []struct {
		who, value string
		want       []string
	}{
		{"alice", "gold", both("group", "group_or_gold", "label")},
		{"bob", "gold", nil},
		{"bob", "free", both("group", "group_or_gold", "label", "label_and_group")},
		{"guest", "visitors", both("group", "group_or_gold")},
		{"bob", "bob", both("username", "id")},
		{"alice", "a11ce", both("id", "group_or_gold")},
		{"alice", "cust-1", both("custom_id", "group_or_gold")},
		{"guest", "anon-1", both("id")},
		{"guest", "true", both("anonymous")},
		{"dave", "false", both("anonymous")},
		{"alice", "false", both("anonymous", "group_or_gold")},
	}
	for _, tc := range valid {
		status, got := phAsk(t, tc.who, &tc.value)
		if status != http.StatusOK || !slices.Equal(got, tc.want) {
			t.Errorf("%s with X-Want %q: %d %v, want 200 %v", tc.who, tc.value, status, got, tc.want)
		}
	}

	// Values no consumer can hold, or that nobody holds: nothing matches
	// but the literal gold of group_or_gold, and the answer is the route's
	// own 200, never a 500.
	values := map[string]*string{
		"missing":             nil,
		"empty":               ptrTo(""),
		"space":               ptrTo("a b"),
		"comma":               ptrTo("a,b"),
		"joined groups":       ptrTo("gold, free"),
		"tab":                 ptrTo("a\tb"),
		"no-break space":      ptrTo("a\u00a0b"),
		"next line":           ptrTo("a\u0085b"),
		"long group":          ptrTo(strings.Repeat("g", 129)),
		"long label value":    ptrTo(strings.Repeat("v", 1025)),
		"placeholder":         ptrTo("{http.request.header.X-Real}"), // never resolved a second time
		"env placeholder":     ptrTo("{env.HOME}"),
		"braces":              ptrTo("{"),
		"almost true":         ptrTo("True"),
		"a key of somebody's": ptrTo(keyCarol),
	}
	for name, v := range values {
		for _, c := range phCallers {
			status, got := phAsk(t, c.name, v, "X-Real", "gold")
			var wantM []string
			if c.name == "alice" {
				wantM = both("group_or_gold")
			}
			if status != http.StatusOK || !slices.Equal(got, wantM) {
				t.Errorf("%s, X-Want %s: %d %v, want 200 %v", c.name, name, status, got, wantM)
			}
		}
	}

	// No log line holds a key, and nothing logged the request as an error
	// (Caddy's error log writes the request's headers and query).
	keys := []string{"alice-secret-0001", "bob-secret-0002", keyDave}
	for _, l := range e.logLines("caddy.log") {
		for _, k := range keys {
			if strings.Contains(l, k) {
				t.Errorf("caddy.log holds a key: %s", l)
			}
		}
		var le logEntry
		if json.Unmarshal([]byte(l), &le) != nil {
			continue
		}
		if strings.HasPrefix(le.str("logger"), "http.log.error") || le.str("level") == "error" {
			t.Errorf("an error was logged: %.600s", l)
		}
		if _, ok := le["request"]; ok {
			t.Errorf("caddy.log holds a request: %.600s", l)
		}
	}
	sent := len(valid) + len(values)*len(phCallers)
	eventually(t, "an access log line per request", func() bool { return len(e.logLines("access.log")) >= sent })
	for _, l := range e.logLines("access.log") {
		for _, k := range keys {
			if strings.Contains(l, k) {
				t.Errorf("access.log holds a key: %s", l)
			}
		}
		var le logEntry
		if json.Unmarshal([]byte(l), &le) == nil {
			if s, _ := le["status"].(float64); s != http.StatusOK {
				t.Errorf("access.log status %v: %.300s", le["status"], l)
			}
		}
	}
}

// Every way key_auth and the consumer matcher can hand Caddy an error,
// which Caddy logs with the request as it arrived (headers but Authorization
// and Cookie, and the query): with the key in X-Api-Key or in the query, no
// line of Caddy's log at INFO or above holds it, and no error message does.
// The ways: a consumer() whose placeholders resolve to values no consumer
// can hold (site 1: it no longer errs); failures handed to handle_errors,
// 401 (site 2) and 500 (site 3, the anonymous consumer is missing); the same
// on a server without error routes (site 4: Caddy logged a 5xx at ERROR
// with the request; key_auth answers the status itself). Caddy's DEBUG
// error log of a failure its error routes handled holds the request (the
// README says so, beside the access log's filter): only at DEBUG.
func TestKeyNotInErrorLog(t *testing.T) {
	e, _ := newMatcherEnv(t)
	e.load(`{{.Global}}
:{{.Port}} {
	key_auth {
		key_names x-api-key apikey
		consumers file {{.Consumers}}
	}
	@bad expression `+"`consumer({'group': {http.request.header.X-Want}, 'anonymous': {http.request.header.X-Anon}})`"+`
	respond @bad "bad" 200
	respond "ok" 200
}
:{{.Port2}} {
	key_auth {
		key_names x-api-key apikey
		handle_errors
		consumers file {{.Consumers}}
	}
	respond "ok" 200
	handle_errors {
		respond "{err.status_code} {err.message}" {err.status_code}
	}
}
:{{.Port3}} {
	key_auth {
		key_names x-api-key apikey
		handle_errors
		anonymous ghost
		consumers file {{.Consumers}}
	}
	respond "ok" 200
	handle_errors {
		respond "{err.status_code}" {err.status_code}
	}
}
:{{.Port4}} {
	key_auth {
		key_names x-api-key apikey
		handle_errors
		anonymous ghost
		consumers file {{.Consumers}}
	}
	respond "ok" 200
}
`, "caddyfile")
	keys := []string{"alice-secret-0001", keyCarol, keyWrong}
	type call struct {
		base, header, query string
		extra               []string
		status              int
	}
	var calls []call
	for _, k := range keys {
		ok := http.StatusOK
		if k == keyWrong {
			ok = http.StatusUnauthorized
		}
		for _, v := range []string{"", "a b", "a,b", k} {
			calls = append(calls,
				call{site, k, "", []string{"X-Want", v, "X-Anon", v}, ok},
				call{site, "", k, []string{"X-Want", v}, ok})
		}
		calls = append(calls,
			call{site2, k, "", nil, ok}, call{site2, "", k, nil, ok},
			// the anonymous consumer is missing: 500 through handle_errors
			call{site3, k, "", nil, map[bool]int{true: http.StatusInternalServerError, false: ok}[k == keyWrong]},
			call{site3, "", k, nil, map[bool]int{true: http.StatusInternalServerError, false: ok}[k == keyWrong]},
			call{site4, k, "", nil, map[bool]int{true: http.StatusInternalServerError, false: ok}[k == keyWrong]},
			call{site4, "", k, nil, map[bool]int{true: http.StatusInternalServerError, false: ok}[k == keyWrong]})
	}
	for _, c := range calls {
		u := c.base + "/"
		if c.query != "" {
			u += "?apikey=" + url.QueryEscape(c.query)
		}
		hdr := slices.Clone(c.extra)
		if c.header != "" {
			hdr = append(hdr, "X-Api-Key", c.header)
		}
		if r := do(t, req(http.MethodGet, u, nil, hdr...)); r.status != c.status {
			t.Errorf("%s %v: %d %s, want %d", u, hdr, r.status, r.body, c.status)
		}
	}
	debugWithKey := 0
	for _, l := range e.logLines("caddy.log") {
		var le logEntry
		if json.Unmarshal([]byte(l), &le) != nil {
			continue
		}
		for _, k := range keys {
			if !strings.Contains(l, k) {
				continue
			}
			if le.str("level") != "debug" || !strings.HasPrefix(le.str("logger"), "http.log.error") {
				t.Errorf("a %s line holds a key: %.700s", le.str("level"), l)
			}
			if strings.Contains(le.str("msg"), k) || strings.Contains(le.str("error"), k) {
				t.Errorf("an error message holds a key: %.700s", l)
			}
			debugWithKey++
		}
	}
	if debugWithKey == 0 {
		t.Error("no DEBUG error line with the request: the test no longer sees Caddy's error log")
	}
}

// Beside placeholders, literal values and keys are still checked at load,
// with what and where.
func TestConsumerMatcherPlaceholderRefused(t *testing.T) {
	e, _ := newMatcherEnv(t)
	for _, tc := range []struct{ matcher, want string }{
		{"expression `consumer({'groups': {http.request.header.X-Want}})`", `unknown key "groups"`},
		{"expression `consumer({'group': ['gold silver', {http.request.header.X-Want}]})`", `group name "gold silver" holds white space`},
		{"expression `consumer({ {http.request.header.X-Kind}: 'gold'})`", "a key must be a literal string"},
		{`consumer group "team {header.X-Team}"`, `"team {http.request.header.X-Team}" outside its placeholders: group name "team " holds white space`},
		{"consumer label {header.X-Label} gold", `label name "{http.request.header.X-Label}" is not`},
	} {
		cfg := "{{.Global}}\n:{{.Port}} {\n\tkey_auth {\n\t\tconsumers file {{.Consumers}}\n\t}\n\t@m " + tc.matcher + "\n\trespond @m 403\n}\n"
		msg := e.loadError(cfg, "caddyfile")
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%s: error %q, want %q", tc.matcher, msg, tc.want)
		}
		if strings.HasPrefix(tc.matcher, "consumer ") && !strings.Contains(msg, "Caddyfile:") {
			t.Errorf("%s: error %q does not name the line", tc.matcher, msg)
		}
	}
}
