package integration

// Issue 16, item 1: an import carries Kong's acl and APISIX's
// consumer-restriction, and the printed blocks, loaded into a real Caddy,
// refuse whom the source refused.

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// printedBlocks are the Caddyfile blocks an import printed on standard
// error, each pointed at the consumers file path.
func printedBlocks(t *testing.T, stderr, path string) []string {
	t.Helper()
	var blocks []string
	for _, part := range strings.Split(stderr, "\n\n") {
		if i := strings.Index(part, "# key-auth on "); i >= 0 {
			b := part[i:]
			blocks = append(blocks, strings.Replace(b, "consumers file consumers.json", "consumers file "+path, 1)+"\n")
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("no block printed:\n%s", stderr)
	}
	return blocks
}

func TestImportACLServes(t *testing.T) {
	for _, tc := range []struct {
		name, from, doc  string
		allowed, refused []string // keys
		message          string
	}{
		{"kong acl allow", "kong", `_format_version: "3.0"
services:
- name: orders-api
  url: http://orders.internal
  routes:
  - name: orders
    paths: [/orders]
    plugins:
    - name: key-auth
    - name: acl
      config:
        allow: [gold]
consumers:
- username: alice
  keyauth_credentials: [{key: alice-import-acl-1}]
  acls: [{group: gold}]
- username: bob
  keyauth_credentials: [{key: bob-import-acl-2}]
`, []string{"alice-import-acl-1"}, []string{"bob-import-acl-2"}, "You cannot consume this service"},
		{"apisix consumer-restriction", "apisix", `routes:
  - id: 1
    uri: /orders/*
    plugins:
      key-auth: {}
      consumer-restriction:
        whitelist: [jack]
consumers:
  - username: jack
    plugins:
      key-auth: {key: jack-import-acl-3}
  - username: tom
    plugins:
      key-auth: {key: tom-import-acl-4}
#END
`, []string{"jack-import-acl-3"}, []string{"tom-import-acl-4"}, "The consumer_name is forbidden."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			src := filepath.Join(e.dir, "source")
			if err := os.WriteFile(src, []byte(tc.doc), 0o600); err != nil {
				t.Fatal(err)
			}
			out, errOut := mustCLI(t, e.dir, "", nil, "import", "--from", tc.from, src)
			e.writeConsumers(out)
			blocks := printedBlocks(t, errOut, e.consumers)
			if len(blocks) != 1 {
				t.Fatalf("blocks: %q", blocks)
			}
			e.load("{{.Global}}\n{{.Site}} {\n"+blocks[0]+"\treverse_proxy {{.Up}}\n}\n", "caddyfile")
			for _, k := range tc.allowed {
				if r := get(t, site, "apikey", k); r.status != http.StatusOK || !r.fromUpstream() {
					t.Errorf("an allowed consumer got %d %s", r.status, r.body)
				}
			}
			for _, k := range tc.refused {
				r := get(t, site, "apikey", k)
				wantFailure(t, r, http.StatusForbidden, tc.message, "")
			}
			want401(t, get(t, site, "apikey", "not-an-imported-key"), msgInvalid)
		})
	}
}
