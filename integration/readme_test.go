package integration

// The README's examples, run as written: the curl examples, the JSON
// examples, and the recipes of the consumer matcher and the ACL.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/keyauth/caddy-keyauth/keyauth"
)

// The README's curl examples, run against Caddyfile.example with its ports
// moved to this process's free ports: each answer must be the one the README shows,
// where "..." stands for anything.
func TestReadmeExamples(t *testing.T) {
	root := repoRoot(t)
	example, err := os.ReadFile(filepath.Join(root, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, ports := exampleConfig(t, string(example), filepath.Join(root, "examples"))
	e := newEnv(t)
	e.load(strings.ReplaceAll(cfg, "{{", "{{`{{`}}"), "caddyfile")

	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The Management API's examples change the consumers, in order: they
	// run on their own (readme_manage_test.go).
	rest, _ := cutReadmeSection(t, string(readme), "Management API")
	examples := curlExamples(rest)
	if len(examples) < 5 {
		t.Fatalf("found %d curl examples in README.md", len(examples))
	}
	for _, ex := range examples {
		t.Run(ex.cmd, func(t *testing.T) {
			r := ex.run(t, ports)
			got := strings.TrimRight(string(r.body), "\n")
			if ex.include {
				if ex.status != "" && r.status != statusCode(ex.status) {
					t.Errorf("status %d, README says %q", r.status, ex.status)
				}
				for _, h := range ex.headers {
					name, value, _ := strings.Cut(h, ": ")
					if !slices.Contains(r.header.Values(name), value) {
						t.Errorf("header %s: %q, README says %q", name, r.header.Values(name), value)
					}
				}
			}
			if !globMatch(ex.body, got) {
				t.Errorf("answer\n%s\nREADME says\n%s", got, ex.body)
			}
		})
	}
}

// exampleConfig is Caddyfile.example with its ports moved to this
// process's free ports and its consumers files read from dir; ports moves
// the ports of a URL the same way.
func exampleConfig(t *testing.T, example, dir string) (cfg string, ports *strings.Replacer) {
	t.Helper()
	port := func(i int) string { return ":" + strconv.Itoa(sitePort[i]) }
	ports = strings.NewReplacer("localhost:2019", adminAddr, ":8080", port(0), ":8081", port(1), ":8082", port(2), ":8083", port(3))
	cfg = ports.Replace(example)
	cfg = strings.Replace(cfg, "admin "+adminAddr, "admin "+adminAddr+"\n\tpersist_config off", 1)
	cfg = strings.ReplaceAll(cfg, "examples/consumers.json", filepath.Join(dir, "consumers.json"))
	cfg = strings.ReplaceAll(cfg, "examples/admins.json", filepath.Join(dir, "admins.json"))
	if !strings.Contains(cfg, "localhost"+port(0)) || !strings.Contains(cfg, "localhost"+port(3)) || strings.Contains(cfg, "localhost:2019") {
		t.Fatalf("Caddyfile.example is not the one this test knows:\n%s", cfg)
	}
	return cfg, ports
}

// cutReadmeSection cuts the README's section "## title", to the next "## ",
// out of it: the rest and the section.
func cutReadmeSection(t *testing.T, readme, title string) (rest, section string) {
	t.Helper()
	start := strings.Index(readme, "\n## "+title+"\n")
	if start < 0 {
		t.Fatalf("README.md has no section %q", title)
	}
	end := strings.Index(readme[start+4:], "\n## ")
	if end < 0 {
		return readme[:start], readme[start:]
	}
	end += start + 4
	return readme[:start] + readme[end:], readme[start:end]
}

// curlExample is a `$ curl ...` line of the README and the answer shown
// after it.
type curlExample struct {
	cmd     string
	args    []string
	include bool     // -i: the answer starts with the status and headers
	status  string   // "HTTP/1.1 401 Unauthorized"
	headers []string // "Name: value"
	body    string
}

func curlExamples(readme string) []curlExample {
	var out []curlExample
	sc := bufio.NewScanner(strings.NewReader(readme))
	var cur *curlExample
	var lines []string
	flush := func() {
		if cur == nil {
			return
		}
		if cur.include && len(lines) > 0 {
			cur.status, lines = lines[0], lines[1:]
			for len(lines) > 1 && strings.Contains(lines[0], ": ") {
				cur.headers, lines = append(cur.headers, lines[0]), lines[1:]
			}
			if len(lines) > 1 && lines[0] == "..." {
				lines = lines[1:]
			}
		}
		cur.body = strings.Join(lines, "\n")
		out = append(out, *cur)
		cur, lines = nil, nil
	}
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "$ curl "):
			flush()
			cur = &curlExample{cmd: strings.TrimPrefix(l, "$ "), args: shellWords(strings.TrimPrefix(l, "$ curl "))}
			for _, a := range cur.args {
				if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.Contains(a, "i") {
					cur.include = true
				}
			}
		case cur != nil && (l == "" || strings.HasPrefix(l, "```") || strings.HasPrefix(l, "$")):
			flush()
		case cur != nil:
			lines = append(lines, l)
		}
	}
	flush()
	return out
}

// run sends the example's request: the -X method (else GET, or POST with
// a body), the -H headers, the -d body and the URL, with its port moved.
func (ex curlExample) run(t *testing.T, ports *strings.Replacer) *response {
	t.Helper()
	var hdr []string
	var url, method string
	var body io.Reader
	for i := 0; i < len(ex.args); i++ {
		switch a := ex.args[i]; {
		case a == "-H" && i+1 < len(ex.args):
			name, value, _ := strings.Cut(ex.args[i+1], ":")
			hdr = append(hdr, name, strings.TrimSpace(value))
			i++
		case a == "-X" && i+1 < len(ex.args):
			method = ex.args[i+1]
			i++
		case (a == "-d" || a == "--data") && i+1 < len(ex.args):
			body = strings.NewReader(ex.args[i+1])
			// As curl sends -d.
			hdr = append(hdr, "Content-Type", "application/x-www-form-urlencoded")
			i++
		case strings.HasPrefix(a, "-"):
		default:
			url = a
		}
	}
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	switch {
	case method != "":
	case body != nil:
		method = http.MethodPost
	default:
		method = http.MethodGet
	}
	return do(t, req(method, ports.Replace(url), body, hdr...))
}

// shellWords splits a command line as a POSIX shell would for the simple
// quoting the README uses.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	in, inWord := byte(0), false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in != 0 && c == in:
			in = 0
		case in != 0:
			w.WriteByte(c)
		case c == '\'' || c == '"':
			in, inWord = c, true
		case c == ' ' || c == '\t':
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// globMatch matches s against pattern, where "..." stands for anything.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "...")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(`(?s)\A` + strings.Join(parts, ".*") + `\z`).MatchString(s)
}

func statusCode(statusLine string) int {
	f := strings.Fields(statusLine)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// The README's JSON examples decode as Caddy decodes a config (unknown
// fields refused, sizes as integers) into the handler and the source they
// name, and pass their Validate.
func TestReadmeJSONExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	var handlers, nsources int
	for _, b := range blocks {
		doc := strings.TrimSpace(b[1])
		var raw json.RawMessage
		switch {
		case strings.Contains(doc, `"handler": "key_auth"`):
			var fields map[string]json.RawMessage
			if err := json.Unmarshal([]byte(doc), &fields); err != nil {
				t.Errorf("handler example: %v\n%s", err, doc)
				continue
			}
			delete(fields, "handler") // the module's name, which Caddy reads
			cfg, _ := json.Marshal(fields)
			var h keyauth.Handler
			if err := caddy.StrictUnmarshalJSON(cfg, &h); err != nil {
				t.Errorf("handler example: %v\n%s", err, doc)
				continue
			}
			if err := h.Validate(); err != nil {
				t.Errorf("handler example: %v\n%s", err, doc)
			}
			handlers++
			raw = h.ConsumersRaw
		case strings.HasPrefix(doc, `"consumers": {`):
			var v struct {
				Consumers json.RawMessage `json:"consumers"`
			}
			if err := json.Unmarshal([]byte("{"+doc+"}"), &v); err != nil {
				t.Errorf("consumers example: %v\n%s", err, doc)
				continue
			}
			raw = v.Consumers
		default:
			continue
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			t.Fatal(err)
		}
		var name string
		_ = json.Unmarshal(fields["source"], &name)
		delete(fields, "source")
		cfg, _ := json.Marshal(fields)
		mod, err := caddy.GetModule("key_auth.sources." + name)
		if err != nil {
			t.Errorf("source %q: %v", name, err)
			continue
		}
		src := mod.New()
		if err := caddy.StrictUnmarshalJSON(cfg, src); err != nil {
			t.Errorf("source %s example: %v\n%s", name, err, doc)
			continue
		}
		if err := src.(caddy.Validator).Validate(); err != nil {
			t.Errorf("source %s example: %v\n%s", name, err, doc)
		}
		if _, ok := src.(keyauth.Source); !ok {
			t.Errorf("%s is not a source", name)
		}
		nsources++
	}
	if handlers < 1 || nsources < 2 {
		t.Errorf("found %d handler and %d source examples in README.md, want at least 1 and 2", handlers, nsources)
	}
}

// authorizationBlocks are the Caddyfile blocks of the README's
// Authorization section.
func authorizationBlocks(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start := strings.Index(s, "\n## Authorization\n")
	if start < 0 {
		t.Fatal("README.md has no Authorization section")
	}
	s = s[start+1:]
	if end := strings.Index(s[3:], "\n## "); end >= 0 {
		s = s[:end+3]
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```caddyfile\n(.*?)```").FindAllStringSubmatch(s, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// readmeRecipe finds the README's recipe that contains marker and makes it a
// test config: its global options go into the test's, port 8080 becomes
// the test site's, consumers.json the test's file, localhost:9000 and 9001
// the two upstreams, and replace's pairs apply.
func readmeRecipe(t *testing.T, e *env, marker string, replace ...string) string {
	t.Helper()
	var recipe string
	for _, b := range authorizationBlocks(t) {
		if strings.Contains(b, marker) {
			if recipe != "" {
				t.Fatalf("two recipes in the README hold %q", marker)
			}
			recipe = b
		}
	}
	if recipe == "" {
		t.Fatalf("no recipe in the README's Authorization section holds %q", marker)
	}
	if g, rest, ok := strings.Cut(recipe, "\n}\n"); ok && strings.HasPrefix(g, "{\n") {
		e.vars["GlobalExtra"] = strings.TrimPrefix(g, "{\n") + "\n"
		recipe = rest
	}
	r := strings.NewReplacer(append([]string{
		":8080 {", ":{{.Port}} {",
		"consumers file consumers.json", "consumers file {{.Consumers}}",
		"localhost:9000", "{{.Up}}",
		"localhost:9001", "{{.Up2}}",
	}, replace...)...)
	out := r.Replace(recipe)
	for _, p := range []string{":8080", "localhost:900", "consumers.json"} {
		if strings.Contains(out, p) {
			t.Fatalf("the recipe holds %s, which this test does not know how to run:\n%s", p, recipe)
		}
	}
	return "{{.Global}}\n" + out
}

// The README's matcher reference and CEL examples, as written, load in a
// site block.
func TestReadmeMatcherSnippets(t *testing.T) {
	e, _ := newMatcherEnv(t)
	var snippets []string
	for _, b := range authorizationBlocks(t) {
		if strings.HasPrefix(b, "@") {
			snippets = append(snippets, b)
		}
	}
	if len(snippets) < 2 {
		t.Fatalf("found %d matcher snippets in the Authorization section", len(snippets))
	}
	for i, s := range snippets {
		var marks strings.Builder
		for _, m := range regexp.MustCompile(`(?m)^@(\w+)`).FindAllStringSubmatch(s, -1) {
			fmt.Fprintf(&marks, "\trequest_header @%s X-M-%s 1\n", m[1], m[1])
		}
		e.load(fmt.Sprintf("{{.Global}}\n:{{.Port}} {\n\tkey_auth {\n\t\tanonymous guest\n\t\tconsumers file {{.Consumers}}\n\t}\n%s\n%s\treverse_proxy {{.Up}}\n}\n# %d\n",
			s, marks.String(), i), "caddyfile")
		ec := wantConsumer(t, get(t, site+"/", "apikey", keyAlice), "alice")
		if i == 0 {
			// The reference: alice is gold, staff, a11ce, cust-1 and keyed.
			for _, name := range []string{"gold", "staff", "by_id", "by_cust", "keyed"} {
				if ec.Header.Get("X-M-"+name) != "1" {
					t.Errorf("@%s did not match alice", name)
				}
			}
			for _, name := range []string{"free", "anon"} {
				if ec.has("X-M-" + name) {
					t.Errorf("@%s matched alice", name)
				}
			}
		}
	}
}

// The README's JSON matchers decode as Caddy decodes them and pass Validate.
func TestReadmeMatcherJSON(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile("(?s)```json\n(\"match\".*?)```").FindAllStringSubmatch(string(readme), -1) {
		var set struct {
			Match []struct {
				Consumer json.RawMessage `json:"consumer"`
			} `json:"match"`
		}
		if err := caddy.StrictUnmarshalJSON([]byte("{"+m[1]+"}"), &set); err != nil || len(set.Match) != 1 {
			t.Errorf("%v\n%s", err, m[1])
			continue
		}
		var mc keyauth.MatchConsumer
		if err := caddy.StrictUnmarshalJSON(set.Match[0].Consumer, &mc); err != nil {
			t.Errorf("%v\n%s", err, m[1])
		} else if err := mc.Validate(); err != nil {
			t.Errorf("%v\n%s", err, m[1])
		}
		n++
	}
	if n < 2 {
		t.Errorf("found %d JSON matchers in the README", n)
	}
}

// The README's per-method recipe: respond @readonly_write 403 and
// reverse_proxy @staff work in a site block without route, because they
// come after key_auth.
func TestReadmePerMethodRecipe(t *testing.T) {
	e, up2 := newMatcherEnv(t)
	e.load(readmeRecipe(t, e, "@readonly_write {"), "caddyfile")
	post := func(key string) *response {
		return do(t, req(http.MethodPost, site+"/items", strings.NewReader("{}"), "apikey", key))
	}
	// Readers read; bob and alice are staff, who go to the second upstream.
	for _, c := range []struct {
		key, who string
		staff    bool
	}{{keyAlice, "alice", true}, {keyBob, "bob", true}, {keyCarol, "carol", false}, {keyDave, "dave", false}} {
		before := up2.hits.Load()
		wantConsumer(t, get(t, site+"/items", "apikey", c.key), c.who)
		if got := up2.hits.Load() - before; got != map[bool]int64{true: 1, false: 0}[c.staff] {
			t.Errorf("%s: the staff upstream got %d requests", c.who, got)
		}
	}
	// Writers write: alice (staff) to hers, carol to the default.
	before := up2.hits.Load()
	wantConsumer(t, post(keyAlice), "alice")
	wantConsumer(t, post(keyCarol), "carol")
	if got := up2.hits.Load() - before; got != 1 {
		t.Errorf("the staff upstream got %d of the writers' requests, want 1 (alice's)", got)
	}
	// The others may not: bob is staff, and the 403 comes first.
	hits := e.up.hits.Load() + up2.hits.Load()
	for _, key := range []string{keyBob, keyDave} {
		if r := post(key); r.status != http.StatusForbidden || r.fromUpstream() {
			t.Errorf("a POST of a non-writer: %s", r)
		}
	}
	if r := do(t, req(http.MethodDelete, site+"/items/1", nil, "apikey", keyDave)); r.status != http.StatusForbidden {
		t.Errorf("a DELETE of a non-writer: %s", r)
	}
	if got := e.up.hits.Load() + up2.hits.Load(); got != hits {
		t.Errorf("refused writes reached an upstream %d times", got-hits)
	}
	// Without a key there is no consumer to be a writer: key_auth's 401.
	want401(t, post(""), msgNoKey)
}

// The README's rate-limit recipe with caddy-ratelimit built in: a free
// consumer gets 429 after its limit while a gold one and another free one
// still pass, and the keys of one consumer share its count. The window is an
// hour, so no clock matters.
func TestReadmeRateLimitRecipe(t *testing.T) {
	e, _ := newMatcherEnv(t)
	cfg := readmeRecipe(t, e, "rate_limit @gold",
		"events 1000", "events 3", "events 60", "events 2", "window 1m", "window 1h")
	if !strings.Contains(e.vars["GlobalExtra"], "order rate_limit after key_auth") {
		t.Fatalf("the recipe does not order rate_limit after key_auth: %q", e.vars["GlobalExtra"])
	}
	e.load(cfg, "caddyfile")

	call := func(key string) *response { return get(t, site+"/", "apikey", key) }
	limited := func(who string, r *response) {
		t.Helper()
		if r.status != http.StatusTooManyRequests || r.fromUpstream() {
			t.Errorf("%s over the limit: %s", who, r)
		}
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s's 429 has no Retry-After", who)
		}
	}
	// bob (free): 2 pass, the third is refused.
	wantConsumer(t, call(keyBob), "bob")
	wantConsumer(t, call(keyBob), "bob")
	limited("bob", call(keyBob))
	// carol, also free, has her own count; so has dave (no groups).
	wantConsumer(t, call(keyCarol), "carol")
	wantConsumer(t, call(keyCarol), "carol")
	limited("carol", call(keyCarol))
	wantConsumer(t, call(keyDave), "dave")
	// alice (gold): 3 in all, across her two keys.
	wantConsumer(t, call(keyAlice), "alice")
	wantConsumer(t, call(keySpecial), "alice")
	wantConsumer(t, call(keyAlice), "alice")
	limited("alice", call(keySpecial))
	limited("bob", call(keyBob))
	wantConsumer(t, call(keyDave), "dave")
	limited("dave", call(keyDave))
	// An unknown key is key_auth's 401, before any count.
	want401(t, call(keyWrong), msgInvalid)
}

// The README's per-consumer backends: a label names the upstream, another
// goes to it as a header, and a consumer without the label goes to the
// default upstream.
func TestReadmeBackendsRecipe(t *testing.T) {
	e, up2 := newMatcherEnv(t)
	e.load(readmeRecipe(t, e, "{http.auth.user.labels.backend}"), "caddyfile")
	for _, c := range []struct {
		key, who, plan string
		own            bool
	}{{keyAlice, "alice", "gold", true}, {keyCarol, "carol", "free", true}, {keyBob, "bob", "", false}, {keyDave, "dave", "", false}} {
		before := up2.hits.Load()
		ec := wantConsumer(t, get(t, site+"/", "apikey", c.key, "X-Plan", "forged"), c.who)
		if got := up2.hits.Load() - before; got != map[bool]int64{true: 1, false: 0}[c.own] {
			t.Errorf("%s: its own upstream got %d requests", c.who, got)
		}
		if c.own && ec.Header.Get("X-Plan") != c.plan {
			t.Errorf("%s: X-Plan %q, want %q", c.who, ec.Header.Values("X-Plan"), c.plan)
		}
	}
}

// The README's ACL example: only gold and partner go on.
func TestReadmeACLRecipe(t *testing.T) {
	e, _ := newMatcherEnv(t)
	e.load(readmeRecipe(t, e, "allow gold partner"), "caddyfile")
	wantConsumer(t, get(t, site+"/", "apikey", keyAlice), "alice")
	for _, key := range []string{keyBob, keyDave} {
		wantFailure(t, get(t, site+"/", "apikey", key), http.StatusForbidden, "You cannot consume this service", "")
	}
}

// The README's key cookie (Security, Keys in cookies), as written but for
// its address, files and upstream: the __Host- cookie authenticates and
// goes no further, other cookies stay, and a cross-site POST does not
// spend it.
func TestReadmeCookieRecipe(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var recipe string
	for _, m := range regexp.MustCompile("(?s)\n  ```caddyfile\n(.*?)  ```").FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(m[1], "key_names __Host-apikey") {
			recipe = regexp.MustCompile("(?m)^  ").ReplaceAllString(m[1], "")
		}
	}
	if recipe == "" {
		t.Fatal("no recipe in the README names __Host-apikey")
	}
	out := strings.NewReplacer("app.example.com {", "{{.Site}} {",
		"/etc/caddy/consumers.json", "{{.Consumers}}", "localhost:8080", "{{.Up}}").Replace(recipe)
	for _, p := range []string{"example.com", "/etc/caddy", "localhost:8080"} {
		if strings.Contains(out, p) {
			t.Fatalf("the recipe holds %s, which this test does not know how to run:\n%s", p, recipe)
		}
	}
	e := newEnv(t)
	e.load("{{.Global}}\n"+out, "caddyfile")
	got := wantIdentity(t, get(t, site+"/", "Cookie", "theme=dark; __Host-apikey="+keyAlice), idAlice)
	if c := got.Header["Cookie"]; len(c) != 1 || c[0] != "theme=dark" {
		t.Errorf("upstream got Cookie %q", c)
	}
	want401(t, do(t, req(http.MethodPost, site+"/", strings.NewReader("{}"),
		"Cookie", "__Host-apikey="+keyAlice, "Sec-Fetch-Site", "cross-site")), msgNoKey)
}

// No merge left its conflict markers in the manual, nor in the files users
// copy from.
func TestReadmeNoConflictMarkers(t *testing.T) {
	for _, f := range []string{"../README.md", "../Caddyfile.example", "../bench/README.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range []string{"<<<<<<< ", "=======", ">>>>>>> "} {
				if strings.HasPrefix(line, m) && (m != "=======" || line == m) {
					t.Errorf("%s:%d: a merge conflict marker: %q", f, i+1, line)
				}
			}
		}
	}
}
