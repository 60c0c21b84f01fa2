package integration

// The README's "Limits and groups", run as written: its document loads,
// each key is charged the limits the README lists, and its refused variant
// fails `caddy key-auth check` with the error the README shows.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/limits"
	"github.com/keyauth/caddy-keyauth/keyauth"
)

// readmeSection is the README's section under heading (a "### " line), up
// to the next heading of its level or above.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start := strings.Index(s, "\n"+heading+"\n")
	if start < 0 {
		t.Fatalf("README.md has no %q", heading)
	}
	s = s[start+1+len(heading):]
	if end := regexp.MustCompile(`\n#{2,3} `).FindStringIndex(s); end != nil {
		s = s[:end[0]]
	}
	return s
}

func fenced(t *testing.T, section, lang string) []string {
	t.Helper()
	var out []string
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(section, -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatalf("no %s block in the section", lang)
	}
	return out
}

func TestReadmeLimits(t *testing.T) {
	section := readmeSection(t, "### Limits and groups")
	doc := fenced(t, section, "json")[0]
	set, err := consumers.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("the README's document is refused: %v", err)
	}

	// The text block: per key, the limits it is charged, in EachLimit's
	// order.
	var got strings.Builder
	_, nk := set.Len()
	for i := range nk {
		cr := set.CredentialAt(i)
		label := fmt.Sprintf("%-14s", cr.ID()+":")
		n := 0
		cr.EachLimit(func(k limits.ScopeKind, scope, meter string, l consumers.Limit) bool {
			if n > 0 {
				label = strings.Repeat(" ", 14)
			}
			n++
			fmt.Fprintf(&got, "%s%s %s: %s %d", label, k, scope, meter, l.Max)
			if !l.Window.IsZero() {
				fmt.Fprintf(&got, " per %s", l.Window)
			}
			got.WriteString("\n")
			return true
		})
		if n == 0 {
			fmt.Fprintf(&got, "%snone\n", label)
		}
	}
	if want := fenced(t, section, "text")[0]; got.String() != want {
		t.Errorf("the README says a request is charged\n%s\nEachLimit yields\n%s", want, got.String())
	}

	// The console block: check on the document with alice's tokens per
	// months.
	console := fenced(t, section, "console")[0]
	lines := strings.Split(strings.TrimSpace(console), "\n")
	if lines[0] != "$ caddy key-auth check consumers.json" {
		t.Fatalf("the console block runs %q", lines[0])
	}
	bad := strings.Replace(doc, `{"tokens": {"max": 2000000, "per": "month"}}`, `{"tokens": {"max": 2000000, "per": "months"}}`, 1)
	if bad == doc {
		t.Fatal("alice's tokens limit is not in the README's document")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "consumers.json"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := cli(t, dir, "", nil, "check", "consumers.json")
	if err == nil {
		t.Error("check accepted the refused document")
	}
	if want := strings.Join(lines[1:], "\n") + "\n"; out != want {
		t.Errorf("check says\n%s\nthe README\n%s", out, want)
	}
}

// The README's limits block, as written: its Caddyfile loads in a site (and
// charges), its JSON is the handler's limits object.
func TestReadmeLimitsBlock(t *testing.T) {
	section := readmeSection(t, "## Limits")
	e := newEnv(t)
	e.writeConsumers(limitsDoc(`{"requests": {"max": 5, "per": "day"}, "tokens": {"max": 100000, "per": "day"}}`, "", ""))
	block := fenced(t, section, "caddyfile")[0]
	block = strings.Replace(block, "consumers file consumers.json", "consumers file {{.Consumers}}", 1)
	block = strings.Replace(block, "store local ", "store local "+limitsTable(t)+" ", 1)
	e.load("{{.Global}}\n{{.Site}} {\n"+block+"\trespond ok\n}\n", "caddyfile")
	r := get(t, siteURL(0)+"/", "apikey", keyLim1)
	if r.status != 200 || !strings.Contains(r.header.Get("RateLimit-Policy"), `"requests-consumer";q=5`) {
		t.Errorf("the README's limits block: %d RateLimit-Policy %q", r.status, r.header.Get("RateLimit-Policy"))
	}

	js := fenced(t, section, "json")[0]
	var obj struct {
		Limits json.RawMessage `json:"limits"`
	}
	if err := json.Unmarshal([]byte("{"+js+"}"), &obj); err != nil {
		t.Fatalf("the README's limits JSON: %v\n%s", err, js)
	}
	var l keyauth.Limits
	if err := caddy.StrictUnmarshalJSON(obj.Limits, &l); err != nil {
		t.Fatalf("the README's limits JSON: %v", err)
	}
	if err := (&keyauth.Handler{Limits: &l}).Validate(); err != nil {
		t.Errorf("the README's limits JSON: %v", err)
	}
}

// The README's recipe for a self-hosted LLM API, run as written: its
// document and its Caddyfile (its keys, host, paths and upstream aside), in
// front of an upstream that answers as Ollama does.
func TestReadmeLLMRecipe(t *testing.T) {
	section := readmeSection(t, "### A self-hosted LLM API with per-key token budgets and in-flight caps")
	doc := fenced(t, section, "json")[0]
	for _, k := range []string{"readme-ci-bot-key", "readme-alice-key"} {
		doc = strings.Replace(doc, `"key": "..."`, `"key": "`+k+`"`, 1)
	}
	e := newEnv(t)
	e.writeConsumers(doc)
	up := llmUpstream(t)
	e.vars["LLM"] = up.addr()
	cfg := fenced(t, section, "caddyfile")[0]
	for _, r := range [][2]string{
		{"llm.example.com {", "{{.Site}} {"},
		{"/etc/caddy/consumers.json", "{{.Consumers}}"},
		{"127.0.0.1:11434", "{{.LLM}}"},
		{"store local", "store local " + limitsTable(t)},
	} {
		if !strings.Contains(cfg, r[0]) {
			t.Fatalf("the recipe has no %q:\n%s", r[0], cfg)
		}
		cfg = strings.Replace(cfg, r[0], r[1], 1)
	}
	e.load("{{.Global}}\n"+cfg, "caddyfile")

	chat := func(key string) *response {
		return do(t, req(http.MethodPost, siteURL(0)+"/api/chat", strings.NewReader(`{"model": "llama3.2", "messages": []}`),
			"Authorization", "Bearer "+key, "Content-Type", "application/json"))
	}
	r := chat("readme-alice-key")
	if r.status != 200 || !strings.Contains(string(r.body), `"done": true`) {
		t.Fatalf("alice: %d %s", r.status, r.body)
	}
	for _, p := range []string{`"requests-consumer";q=600;w=60`, `"tokens-group";q=50000000`, `"in_flight-consumer";q=4;qu="concurrent-requests"`} {
		if !strings.Contains(r.header.Get("RateLimit-Policy"), p) {
			t.Errorf("alice's RateLimit-Policy %q lacks %s", r.header.Get("RateLimit-Policy"), p)
		}
	}
	r = chat("readme-ci-bot-key")
	if r.status != 200 || !strings.Contains(r.header.Get("RateLimit-Policy"), `"tokens-consumer";q=200000`) {
		t.Errorf("ci-bot: %d RateLimit-Policy %q", r.status, r.header.Get("RateLimit-Policy"))
	}
	if r := chat("not-a-key"); r.status != 401 {
		t.Errorf("no key: %d", r.status)
	}
}
