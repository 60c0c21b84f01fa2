package importer

import (
	"github.com/keyauth/caddy-keyauth/consumers"

	"strings"
	"testing"
	"time"
)

// One fixture of each format variant, written from the formats'
// documentation: decK with and without _format_version, Kong DB-less,
// `kong config db_export`, a dump of Kong's Admin API, APISIX's
// apisix.yaml (with #END) and apisix.json, APISIX's Admin API.

func TestKongDeckNoVersion(t *testing.T) {
	r, err := Kong(read(t, "kong-deck-noversion.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantDoc(t, r, []consumers.ConsumerEntry{
		{Username: "erin", CustomID: "emp-7", Tags: []string{"team-billing"}, Groups: []string{"gold"}, Keys: []consumers.CredentialEntry{h("erin-noversion-key-01")}},
		{Username: "frank", Tags: []string{"team-billing"}, Keys: []consumers.CredentialEntry{h("frank-noversion-key-02")}},
	})
	wantLines(t, r.Notes, "no _format_version: read as decK reads it, as 1.1")
	want := "# key-auth on route \"invoices\" of service \"billing-api\", as key_auth:\nkey_auth {\n\tkey_names x-api-key\n\tallow gold\n\thide_groups_header\n"
	if len(r.Blocks) != 1 || !strings.HasPrefix(r.Blocks[0], want) {
		t.Errorf("blocks: %q", r.Blocks)
	}
	noKeys(t, append(r.Notes, r.Blocks...), "noversion-key")
}

func TestKongDBExport(t *testing.T) {
	// The ttl is an instant: no --as-of needed.
	r, err := Kong(read(t, "kong-db-export.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	grace := withID(h("grace-export-key-01"), "2b3c4d5e-6f70-4a81-92a3-b4c5d6e7f801")
	grace.ExpiresAt = "2100-01-01T00:00:00Z"
	wantDoc(t, r, []consumers.ConsumerEntry{
		{Username: "grace", ID: "9a1e2d3c-4b5a-4c6d-8e7f-1a2b3c4d5e01", Tags: []string{"finance"}, Groups: []string{"report-admins"}, Keys: []consumers.CredentialEntry{grace}},
		{Username: "heidi", ID: "9a1e2d3c-4b5a-4c6d-8e7f-1a2b3c4d5e02", Keys: []consumers.CredentialEntry{withID(h("heidi-export-key-02"), "2b3c4d5e-6f70-4a81-92a3-b4c5d6e7f802")}},
	})
	if len(r.Notes) != 0 {
		t.Errorf("notes:\n%s", strings.Join(r.Notes, "\n"))
	}
	// The service's key-auth, and the route whose acl is narrower.
	if len(r.Blocks) != 2 {
		t.Fatalf("blocks: %q", r.Blocks)
	}
	wantNotIn(t, blockOf(t, r, `service "reports"`), "allow")
	wantIn(t, blockOf(t, r, `route "6b0c7c2a-2f1a-4e3c-9b1e-3e1f0c2d7a10" of service "reports" (inherited from service "reports")`),
		"\thide_credentials\n\tallow report-admins\n")
	noKeys(t, append(r.Notes, r.Blocks...), "export-key")
}

func TestKongAdminAPIDump(t *testing.T) {
	r, err := Kong(read(t, "kong-admin.json"), Options{AsOf: asOf})
	if err != nil {
		t.Fatal(err)
	}
	ivan := withID(h("ivan-admin-api-key-01"), "e5c1f2b3-4d5e-4f60-9b7c-8d9e0f1a2b01")
	ivan.ExpiresAt = asOf.Add(24 * time.Hour).Format(time.RFC3339) // seconds left
	wantDoc(t, r, []consumers.ConsumerEntry{
		{Username: "ivan", ID: "d4b0e1a2-3c4d-4e5f-8a6b-7c8d9e0f1a01", Keys: []consumers.CredentialEntry{ivan}},
		{Username: "judy", ID: "d4b0e1a2-3c4d-4e5f-8a6b-7c8d9e0f1a02", CustomID: "partner-9", Tags: []string{"partner"}, Groups: []string{"partners"},
			Keys: []consumers.CredentialEntry{withID(h("judy-admin-api-key-02"), "e5c1f2b3-4d5e-4f60-9b7c-8d9e0f1a2b02")}},
	})
	if len(r.Notes) != 0 {
		t.Errorf("notes:\n%s", strings.Join(r.Notes, "\n"))
	}
	wantIn(t, blockOf(t, r, `route "partners" of service "partners-api"`), "\tdeny suspended\n")
	noKeys(t, append(r.Notes, r.Blocks...), "admin-api-key")

	for _, tc := range []struct{ doc, want string }{
		{`{"consumers": {"data": [], "next": "/consumers?offset=abc"}}`, "consumers: the answer has a next page"},
		{`{"consumers": {"data": []}, "upstreams": {"data": []}}`, `holds "upstreams"`},
		{`{"consumers": {"data": []}, "key-auths": []}`, "key-auths: not an Admin API list answer"},
	} {
		if _, err := Kong([]byte(tc.doc), Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func TestAPISIXJSON(t *testing.T) {
	r, err := APISIX(read(t, "apisix.json"), Options{LookupEnv: env(map[string]string{"KATE_API_KEY": "kate-json-env-key"})})
	if err != nil {
		t.Fatal(err)
	}
	wantDoc(t, r, []consumers.ConsumerEntry{
		{Username: "kate", CustomID: "cust-21", Groups: []string{"gold"}, Keys: []consumers.CredentialEntry{h("kate-json-env-key")}},
		{Username: "leo", Keys: []consumers.CredentialEntry{h("leo-json-default-key")}},
	})
	wantLines(t, r.Notes, `consumer group "gold": plugin limit-count not migrated`)
	if len(r.Notes) != 1 {
		t.Errorf("notes:\n%s", strings.Join(r.Notes, "\n"))
	}
	b := blockOf(t, r, `route "orders" (uri /orders/*)`)
	wantIn(t, b, "\tkey_names X-API-Key\n", " not consumer group gold\n", "`{\"message\":\"The consumer_group_id is forbidden.\"}` 403\n")
	noKeys(t, append(r.Notes, r.Blocks...), "json-env-key", "json-default-key")
	if _, err := APISIX(read(t, "apisix.json"), Options{LookupEnv: env(nil)}); err == nil || !strings.Contains(err.Error(), "KATE_API_KEY is not set") {
		t.Errorf("error %v", err)
	}
}
