package importer

import (
	"strings"
	"testing"
)

// Issue 16, item 7: the small ones.

// A consumer group is named by its name, in both notes.
func TestKongConsumerGroupByName(t *testing.T) {
	r, err := Kong([]byte(`_format_version: "3.0"
consumer_groups:
- id: 5e1d1c1e-0000-4000-8000-00000000a001
  name: gold-tier
  consumers: [{username: a}]
consumers:
- username: a
  groups: [{id: 5e1d1c1e-0000-4000-8000-00000000a001, name: gold-tier}]
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, r.Notes, `consumer group "gold-tier" not migrated (its plugin`, `consumer "a": membership of consumer group "gold-tier" not migrated`)
	noKeys(t, r.Notes, "5e1d1c1e")
}

// A mapping key that is not a string fails the import with its place.
func TestNonStringKeys(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		from func([]byte, Options) (*Result, error)
		want string
	}{
		{"_format_version: \"3.0\"\nconsumers:\n- username: a\n  tags: [x]\n  200: ok\n", Kong, "line 5, column 3: a mapping key that is not a string (int)"},
		{"consumers:\n  - username: a\n    labels:\n      true: yes\n#END\n", APISIX, "line 4, column 7: a mapping key that is not a string (bool)"},
		{"routes:\n  - id: 1\n    upstream:\n      nodes:\n        ? [a, b]\n        : 1\nconsumers: []\n#END\n", APISIX, "line 5, column 11: a mapping key that is not a string (a mapping or a list)"},
	} {
		_, err := tc.from([]byte(tc.doc), Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
	if _, err := Kong([]byte("# nothing\n"), Options{}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty file: %v", err)
	}
	// Aliases and merge keys are YAML's own.
	r, err := Kong([]byte("_format_version: \"3.0\"\nx: &name username\nbase: &base {custom_id: c1}\nconsumers:\n- *name : a\n  <<: *base\n"), Options{})
	if err != nil || r.Doc.Consumers[0].Username != "a" || r.Doc.Consumers[0].CustomID != "c1" {
		t.Errorf("%v %+v", err, r)
	}
}

// apisix.yaml without #END, which APISIX would not load, gets a note.
func TestAPISIXNoEndFlag(t *testing.T) {
	doc := "consumers:\n  - username: a\n    plugins:\n      key-auth:\n        key: no-end-key-1\n"
	r, err := APISIX([]byte(doc), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, r.Notes, "the file does not end with the line #END")
	r, err = APISIX([]byte(doc+"#END  \n"), Options{})
	if err != nil || len(r.Notes) != 0 {
		t.Errorf("%v %q", err, r.Notes)
	}
}

// decK's _info.select_tags are the consumers' tags too.
func TestDeckSelectTags(t *testing.T) {
	r, err := Kong([]byte(`_format_version: "3.0"
_info:
  select_tags: [team-payments, managed-by-deck]
consumers:
- username: a
  tags: [partner, team-payments]
- username: b
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Doc.Consumers; strings.Join(got[0].Tags, ",") != "partner,team-payments,managed-by-deck" || strings.Join(got[1].Tags, ",") != "team-payments,managed-by-deck" {
		t.Errorf("tags: %+v", got)
	}
}

// A block for a route without a name or id says which route.
func TestUnnamedRouteBlocks(t *testing.T) {
	r, err := Kong([]byte(`_format_version: "3.0"
services:
- name: s
  routes:
  - paths: [/a]
  - paths: [/b, /c]
    methods: [GET]
    plugins: [{name: key-auth}]
routes:
- hosts: [api.example.com]
  plugins: [{name: key-auth}]
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	blockOf(t, r, `route #2 (paths /b /c, methods GET) of service "s"`)
	blockOf(t, r, `route #1 (hosts api.example.com)`)
	r, err = APISIX([]byte("routes:\n  - uris: [/x, /y]\n    host: api.example.com\n    plugins:\n      key-auth: {}\nconsumers: []\n#END\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	blockOf(t, r, `route #1 (uris /x /y, host api.example.com)`)
}

// A label name or group APISIX or Kong holds and a consumers document
// cannot is reported for its consumer; the rest is imported.
func TestNamesDocumentsCannotHold(t *testing.T) {
	r, err := APISIX([]byte(`consumers:
  - username: a
    group_id: "gold tier"
    labels:
      app.kubernetes.io/name: billing
      plan: pro
    plugins:
      key-auth: {key: label-key-1}
#END
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, r.Notes, `consumer "a": label "app.kubernetes.io/name" not migrated`, `consumer "a": group_id "gold tier" not migrated`)
	if c := r.Doc.Consumers[0]; len(c.Labels) != 1 || c.Labels["plan"] != "pro" || len(c.Keys) != 1 || c.Groups != nil {
		t.Errorf("%+v", c)
	}
	r, err = Kong([]byte(`{"_format_version": "3.0", "consumers": [{"username": "b", "acls": [{"group": "night shift"}, {"group": "day"}],
  "keyauth_credentials": [{"key": "group-key-2"}]}]}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, r.Notes, `consumer "b": ACL group "night shift" not migrated`)
	if c := r.Doc.Consumers[0]; strings.Join(c.Groups, ",") != "day" || len(c.Keys) != 1 {
		t.Errorf("%+v", c)
	}
	if _, err := r.Doc.Marshal(); err != nil {
		t.Error(err)
	}
}
