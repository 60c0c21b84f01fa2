package integration

// The README's Management API section, run as written: its curl examples,
// in order, against Caddyfile.example with copies of its consumers files,
// and its JSON example.

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	manageapi "github.com/keyauth/caddy-keyauth/keyauth/manage"
)

func TestReadmeManageExamples(t *testing.T) {
	needWriter(t, "file")
	root := repoRoot(t)
	example, err := os.ReadFile(filepath.Join(root, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	// The examples change the consumers: a copy of the files takes it.
	for _, f := range []string{"consumers.json", "admins.json"} {
		b, err := os.ReadFile(filepath.Join(root, "examples", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, ports := exampleConfig(t, string(example), e.dir)
	e.load(strings.ReplaceAll(cfg, "{{", "{{`{{`}}"), "caddyfile")

	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section := cutReadmeSection(t, string(readme), "Management API")
	examples := curlExamples(section)
	// Every endpoint has its example.
	for _, ep := range []string{"GET /keys/self", "GET /keys/consumers", "PUT /keys/consumers/", "PATCH /keys/consumers/",
		"DELETE /keys/consumers/", "POST /keys/consumers/tom/keys", "PATCH /keys/consumers/tom/keys/", "DELETE /keys/consumers/tom/keys/",
		"POST /keys/consumers/tom/keys/tom-key/roll"} {
		if !slices.ContainsFunc(examples, func(ex curlExample) bool { return strings.Contains(ex.request(), ep) }) {
			t.Errorf("no example of %s", ep)
		}
	}
	for _, ex := range examples {
		// In order, each after the one before: no subtests to skip.
		r := ex.run(t, ports)
		got := strings.TrimRight(string(r.body), "\n")
		if ex.include && r.status != statusCode(ex.status) {
			t.Errorf("%s: status %d, README says %q", ex.cmd, r.status, ex.status)
		}
		if !globMatch(ex.body, got) {
			t.Errorf("%s: answer\n%s\nREADME says\n%s", ex.cmd, got, ex.body)
		}
	}
	// The walkthrough left nothing of tom.
	b, _ := os.ReadFile(filepath.Join(e.dir, "consumers.json"))
	if strings.Contains(string(b), `"tom`) {
		t.Errorf("the consumers file after the examples:\n%s", b)
	}
}

// request is the example's method and path, for the list of endpoints.
func (ex curlExample) request() string {
	method, path := "GET", ""
	for i, a := range ex.args {
		switch {
		case a == "-X" && i+1 < len(ex.args):
			method = ex.args[i+1]
		case a == "-d" && method == "GET":
			method = "POST"
		case strings.Contains(a, "localhost:"):
			_, path, _ = strings.Cut(a, "localhost:")
			path = path[strings.IndexByte(path, '/'):]
		}
	}
	return method + " " + path
}

// The section's JSON example decodes as Caddy decodes a config and passes
// Validate.
func TestReadmeManageJSON(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		doc := strings.TrimSpace(m[1])
		if !strings.Contains(doc, `"handler": "key_auth_api"`) {
			continue
		}
		doc = strings.Replace(doc, `"handler": "key_auth_api",`, "", 1)
		var h manageapi.Handler
		if err := caddy.StrictUnmarshalJSON([]byte(doc), &h); err != nil {
			t.Errorf("%v\n%s", err, doc)
		} else if err := h.Validate(); err != nil {
			t.Errorf("%v\n%s", err, doc)
		}
		n++
	}
	if n != 1 {
		t.Errorf("found %d key_auth_api JSON examples in the README, want 1", n)
	}
}
