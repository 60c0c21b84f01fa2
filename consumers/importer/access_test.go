package importer

import (
	"strings"
	"testing"
)

// blockOf returns the one block whose header names where, failing unless
// there is exactly one.
func blockOf(t *testing.T, r *Result, where string) string {
	t.Helper()
	var found []string
	for _, b := range r.Blocks {
		if strings.HasPrefix(b, "# key-auth on "+where+", as key_auth:\n") {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d blocks on %s:\n%s", len(found), where, strings.Join(r.Blocks, "\n"))
	}
	return found[0]
}

func wantIn(t *testing.T, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("missing %q in:\n%s", w, text)
		}
	}
}

func wantNotIn(t *testing.T, text string, bad ...string) {
	t.Helper()
	for _, w := range bad {
		if strings.Contains(text, w) {
			t.Errorf("unexpected %q in:\n%s", w, text)
		}
	}
}

const kongACLDoc = `_format_version: "3.0"
consumers:
- username: alice
  keyauth_credentials: [{key: alice-acl-key-1}]
  acls: [{group: gold}, {group: "night shift"}]
  groups: [{name: premium}]
- username: bob
  keyauth_credentials: [{key: bob-acl-key-2}]
services:
- name: orders-api
  url: http://orders.internal
  plugins:
  - name: acl
    config: {deny: [banned], hide_groups_header: true}
  routes:
  - name: orders
    paths: [/orders]
    plugins:
    - name: key-auth
    - name: acl
      config: {allow: [gold]}
  - name: invoices
    paths: [/invoices]
    plugins:
    - name: key-auth
      config: {key_names: [apikey]}
  - paths: [/reports]
    plugins:
    - name: acl
      config: {whitelist: [gold, "night shift"]}
- name: legacy
  url: http://legacy.internal
  plugins:
  - name: key-auth
  - name: acl
    config: {blacklist: ["night shift", premium], include_consumer_groups: true}
- name: open
  url: http://open.internal
  plugins:
  - name: acl
    config: {allow: ["night shift"]}
  - name: acl-off
routes:
- name: stray
  paths: [/stray]
  plugins:
  - name: acl
    enabled: false
    config: {allow: [gold]}
plugins:
- name: key-auth
  route: open-route
- name: acl
  route: open-route
  config: {}
`

// Kong's acl comes along: on the same route, inherited from the service or
// made narrower than the key-auth it runs with; what key_auth cannot name
// is refused by username, never let on.
func TestKongACL(t *testing.T) {
	r, err := Kong([]byte(kongACLDoc), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The route's own acl wins over its service's.
	orders := blockOf(t, r, `route "orders" of service "orders-api"`)
	wantIn(t, orders, "\tallow gold\n")
	wantNotIn(t, orders, "deny", "hide_groups_header", "respond")
	// The service's acl, for a route with a key-auth and no acl.
	invoices := blockOf(t, r, `route "invoices" of service "orders-api"`)
	wantIn(t, invoices, "\tdeny banned\n", "\thide_groups_header\n")
	// The old whitelist, on a route without key-auth under a service
	// without key-auth: the acl has no key-auth to run with.
	wantLines(t, r.Notes, `acl on route #3 (paths /reports) of service "orders-api": no key-auth runs there`)
	// blacklist with a group key_auth cannot hold, and consumer groups:
	// the members are refused by name.
	legacy := blockOf(t, r, `service "legacy"`)
	wantIn(t, legacy, "\tdeny premium\n", "@refused_1 consumer username alice\nrespond @refused_1 `{\"message\":\"You cannot consume this service\"}` 403\n")
	wantLines(t, r.Notes,
		`acl on service "legacy": denied group "night shift" cannot be a group here`,
		`acl on service "legacy" includes consumer groups: the members of consumer group "premium" are refused by username`,
		`consumer "alice": ACL group "night shift" not migrated`)
	// An acl that lists nothing refuses everyone.
	open := blockOf(t, r, `route "open-route"`)
	wantIn(t, open, "\nrespond `{\"message\":\"You cannot consume this service\"}` 403\n")
	wantLines(t, r.Notes, `acl on route "open-route" lists no group`, `acl on route "stray" is disabled in Kong`)
	noKeys(t, append(r.Notes, r.Blocks...), "acl-key")
	if _, err := r.Doc.Marshal(); err != nil {
		t.Fatal(err)
	}
}

// A global key-auth with an acl on one route gets a block for that route;
// an allow list of names key_auth cannot hold refuses everyone.
func TestKongACLNarrower(t *testing.T) {
	r, err := Kong([]byte(`{"_format_version": "3.0",
  "consumers": [{"username": "a", "keyauth_credentials": [{"key": "k-secret-1"}], "acls": [{"group": "x y"}]}],
  "routes": [{"name": "r1", "paths": ["/a"]}, {"id": "7", "paths": ["/b"]}],
  "plugins": [{"name": "key-auth"}, {"name": "acl", "route": "r1", "config": {"allow": ["x y"]}}]}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Blocks) != 2 {
		t.Fatalf("blocks: %q", r.Blocks)
	}
	wantNotIn(t, blockOf(t, r, "every route (global plugin)"), "allow", "respond")
	b := blockOf(t, r, `route "r1" (inherited from the global plugin)`)
	wantIn(t, b, "\nrespond `{\"message\":\"You cannot consume this service\"}` 403\n")
	wantLines(t, r.Notes, `acl on route "r1": allowed group "x y" cannot be a group here`)
}

const apisixRulesDoc = `routes:
  - id: r1
    uri: /orders/*
    service_id: s1
    plugins:
      key-auth: {}
      consumer-restriction:
        whitelist: [jack, "mary ann"]
  - id: r2
    uri: /admin/*
    plugins:
      key-auth: {}
      consumer-restriction:
        type: consumer_group_id
        blacklist: [free]
        rejected_code: 401
        rejected_msg: go away
  - id: r3
    uri: /reports/*
    service_id: s1
    plugins:
      consumer-restriction:
        allowed_by_methods:
          - user: tom
            methods: [GET]
services:
  - id: s1
    plugins:
      key-auth: {}
consumers:
  - username: jack
    group_id: gold
    plugins:
      key-auth: {key: jack-rules-key-1}
  - username: tom
    group_id: free
    plugins:
      key-auth: {key: tom-rules-key-2}
      consumer-restriction:
        type: route_id
        whitelist: [r1, r3]
#END
`

// APISIX's consumer-restriction comes along as consumer matchers and a
// respond with APISIX's answer; a rule a block cannot decide refuses.
func TestAPISIXRestriction(t *testing.T) {
	r, err := APISIX([]byte(apisixRulesDoc), Options{})
	if err != nil {
		t.Fatal(err)
	}
	r1 := blockOf(t, r, `route "r1" (uri /orders/*)`)
	wantIn(t, r1, "@refused_", " not consumer username jack \"mary ann\"\n", "`{\"message\":\"The consumer_name is forbidden.\"}` 403\n")
	wantNotIn(t, r1, "consumer username tom") // tom may use r1
	r2 := blockOf(t, r, `route "r2" (uri /admin/*)`)
	wantIn(t, r2,
		" not consumer group free gold\n", "`{\"message\":\"The request is rejected, please check the consumer_group_id for this request\"}` 401\n",
		" consumer group free\n", "`{\"message\":\"go away\"}` 401\n",
		" consumer username tom\n", "`{\"message\":\"The route_id is forbidden.\"}` 403\n")
	// The service's key-auth: tom's rule by route cannot be decided for a
	// whole service, so the service's block refuses him.
	s1 := blockOf(t, r, `service "s1"`)
	wantIn(t, s1, " consumer username tom\n")
	wantLines(t, r.Notes, `consumer-restriction of consumer "tom", on service "s1": a rule by route_id`)
	// r3 inherits the service's key-auth and has its own rule: tom may only GET.
	r3 := blockOf(t, r, `route "r3" (uri /reports/*) (inherited from service "s1")`)
	wantIn(t, r3, "\tconsumer username tom\n\tnot method GET\n")
	noKeys(t, append(r.Notes, r.Blocks...), "rules-key")
}

// A consumer group's consumer-restriction goes with its members; a service's
// goes on a route whose key-auth comes from its plugin config; a disabled
// one is skipped.
func TestAPISIXRestrictionLayers(t *testing.T) {
	r, err := APISIX([]byte(`routes:
  - id: r1
    uri: /a/*
    service_id: s1
    plugin_config_id: pc1
plugin_configs:
  - id: pc1
    plugins:
      key-auth: {}
services:
  - id: s1
    plugins:
      consumer-restriction:
        blacklist: [mallory]
      key-auth:
        _meta: {disable: false}
consumer_groups:
  - id: interns
    plugins:
      consumer-restriction:
        type: route_id
        blacklist: [r1]
consumers:
  - username: ivy
    group_id: interns
    plugins:
      key-auth: {key: ivy-layer-key-1}
      consumer-restriction:
        _meta: {disable: true}
        whitelist: [nobody]
#END
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := blockOf(t, r, `route "r1" (uri /a/*) (inherited from its plugin config)`)
	wantIn(t, b, "@refused_", " consumer username mallory\n", " consumer username ivy\nrespond @refused_")
	wantNotIn(t, b, "nobody")
	wantNotIn(t, strings.Join(r.Notes, "\n"), "plugin consumer-restriction not migrated")
}
