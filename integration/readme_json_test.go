package integration

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/keyauth/caddy-keyauth/keyauth"
)

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
