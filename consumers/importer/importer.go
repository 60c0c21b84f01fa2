// Package importer turns another gateway's consumers into a consumers
// document: Kong's (decK and DB-less declarative files) and Apache APISIX's
// (standalone apisix.yaml or apisix.json, and the Admin API's consumer
// list). What has no equivalent is reported, one line per item, and the
// key-auth plugin's configurations come back as equivalent key_auth
// Caddyfile blocks. It imports nothing of Caddy.
package importer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// Options tune an import.
type Options struct {
	// Plain keeps keys in plain text; by default they are written as their
	// sha256: hashes.
	Plain bool
	// AsOf is when Kong wrote the file: Kong's ttl (seconds left) counts
	// from it. Required for a file with a ttl.
	AsOf time.Time
	// LookupEnv resolves APISIX's $env:// references; default
	// os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// Result is an imported document and what the import could not carry over.
type Result struct {
	Doc *consumers.Document
	// Notes lists what was not migrated, one item per line.
	Notes []string
	// Blocks are the key-auth plugin configurations found, each as a
	// Caddyfile key_auth block headed by a comment naming where it was.
	Blocks []string

	matchers int // named matchers written so far
	// fromAuthorization: a key-auth of the file reads keys from the
	// Authorization header, so a key stored as "Bearer <key>" is one
	// key_auth strips the scheme from.
	fromAuthorization bool
}

func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// isJSON tells a JSON file from a YAML one: JSON starts with '{' or '['
// (after white space).
func isJSON(data []byte) bool {
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	return len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[')
}

// decodeGeneric reads a JSON or YAML file into maps, slices and scalars.
func decodeGeneric(data []byte) (v any, jsonFile bool, err error) {
	if isJSON(data) {
		if err := json.Unmarshal(bytes.TrimLeft(data, " \t\r\n\ufeff"), &v); err != nil {
			return nil, true, fmt.Errorf("reading JSON: %w", err)
		}
		return v, true, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, false, fmt.Errorf("reading YAML: %w", err)
	}
	if err := stringKeys(&doc); err != nil {
		return nil, false, fmt.Errorf("reading YAML: %w", err)
	}
	if err := doc.Decode(&v); err != nil {
		return nil, false, fmt.Errorf("reading YAML: %w", err)
	}
	return v, false, nil
}

// stringKeys refuses a mapping key that is not a string, anywhere, with
// its line and column: JSON, which both gateways' formats are, has no
// other keys, and an unquoted 200: or true: is easily written. A merge key
// (<<) is YAML's own and fine.
func stringKeys(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind == yaml.AliasNode && k.Alias != nil {
				k = k.Alias
			}
			if k.Kind == yaml.ScalarNode && (k.Tag == "!!str" || k.Tag == "!!merge") {
				continue
			}
			kind := strings.TrimPrefix(k.ShortTag(), "!!")
			switch k.Kind {
			case yaml.MappingNode, yaml.SequenceNode:
				kind = "a mapping or a list"
			}
			return fmt.Errorf("line %d, column %d: a mapping key that is not a string (%s): quote it", k.Line, k.Column, kind)
		}
	}
	for _, c := range n.Content {
		if err := stringKeys(c); err != nil {
			return err
		}
	}
	return nil
}

// retype turns a decoded file into v through JSON, so one set of json tags
// and one set of type rules serve both formats.
func retype(generic any, jsonFile bool, v any) error {
	format := "YAML"
	if jsonFile {
		format = "JSON"
	}
	b, err := json.Marshal(generic)
	if err != nil {
		return fmt.Errorf("reading %s: %w", format, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("reading %s: %w", format, err)
	}
	return nil
}

// unrendered is a key that looks like a template variable a shell or a
// template engine was meant to replace before the gateway read the file:
// the whole key $NAME, or ${NAME} (with a shell default) or ${{...}}
// anywhere in it.
var unrendered = regexp.MustCompile(`^\$[A-Za-z_][A-Za-z0-9_]*$|\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[-=?+][^}]*)?\}|\$\{\{.*\}\}`)

// warnUnrendered notes a key that looks unrendered, naming where it is and
// never the key, which is the variable's text.
func (r *Result) warnUnrendered(key, where string) {
	if unrendered.MatchString(key) {
		r.note("%s: the key looks like an unrendered template variable ($NAME or ${NAME}): imported as written; if it is one, render the file (as the gateway's deployment does) and import again", where)
	}
}

// withoutScheme is a key as key_auth must store it. Kong and APISIX compare
// the whole header value, so clients that send "Authorization: Bearer
// <token>" have their key stored with the scheme; key_auth takes the key
// after the scheme (consumers.StripBearer), so the stored key must lose it.
func (r *Result) withoutScheme(key, where string) string {
	rest := consumers.StripBearer(key)
	switch {
	case len(rest) == len(key):
		return key
	case rest == "":
		// Only the scheme: key_auth reads it in Authorization as no key at
		// all, and in any other header as the key it is.
		if r.fromAuthorization {
			r.note("%s: the key is only a Bearer scheme, which key_auth reads in Authorization as no key: imported as written, for clients that send it in another header", where)
		}
		return key
	case r.fromAuthorization:
		r.note("%s: the key is stored with its scheme (Bearer), as clients send it in Authorization: imported without it, as key_auth takes the key after the scheme", where)
		return rest
	default:
		r.note("%s: the key starts with a Bearer scheme, and no key-auth of the file reads Authorization: imported as written (if clients send it in Authorization, import it without the scheme)", where)
		return key
	}
}

// addKey adds a key to a consumer, hashed unless plain. A key that could
// never be sent as stored is refused here, as a load refuses it in plain
// text: once hashed, no load could tell.
func addKey(c *consumers.ConsumerEntry, id, key, expires, where string, plain bool) error {
	if err := consumers.ValidateKey(key); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	cred := consumers.CredentialEntry{ID: id, ExpiresAt: expires}
	if plain {
		cred.Key = key
	} else {
		cred.Hash = consumers.HashKey(key)
	}
	c.Keys = append(c.Keys, cred)
	return nil
}

// addGroup adds a group to a consumer, unless a consumers document could
// not hold its name: then the note names the consumer and the group, and
// the rest of the import goes on.
func (r *Result) addGroup(c *consumers.ConsumerEntry, g, kind string) {
	if err := consumers.CheckGroupName(g); err != nil {
		r.note("consumer %q: %s %q not migrated: %v", c.Username, kind, g, err)
		return
	}
	if !slices.Contains(c.Groups, g) {
		c.Groups = append(c.Groups, g)
	}
}

// str is a scalar of a decoded file as a string, for names and ids that a
// YAML file may leave unquoted (ids such as 1).
func str(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strings.TrimSuffix(fmt.Sprintf("%f", v), ".000000")
	default:
		return fmt.Sprint(v)
	}
}

// keyString is a key as the file gives it: a string, never a number that a
// YAML parser may have rewritten (012 and 1e3 are not the keys they look).
func keyString(v any, where string) (string, error) {
	switch v := v.(type) {
	case string:
		if v == "" {
			return "", fmt.Errorf("%s has an empty key", where)
		}
		return v, nil
	case nil:
		return "", fmt.Errorf("%s has no key", where)
	default:
		return "", fmt.Errorf("%s has a key that is not a string (quote it in the file)", where)
	}
}

// refusal is a request the printed block must refuse, for an access rule
// of the source that key_auth's allow and deny cannot carry: when every
// matcher line holds (no line: every request that key_auth let on).
type refusal struct {
	match   []string // Caddyfile matcher lines, AND-ed
	status  int
	message string // the source's answer, sent as {"message": ...}
}

// blockSpec is a key_auth block: where the source had it, the lines inside
// key_auth, and the refusals written after it.
type blockSpec struct {
	where    string
	lines    []string
	refusals []refusal
}

// addBlock renders a block into r.Blocks.
func (r *Result) addBlock(b blockSpec) {
	r.Blocks = append(r.Blocks, r.render(b))
}

// render writes a block. Each refusal becomes a named matcher and a
// respond after key_auth (respond runs after key_auth in Caddy's order, so
// the matcher sees the consumer); the matcher names are numbered across
// the whole import so that blocks pasted into one site never collide.
func (r *Result) render(bs blockSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# key-auth on %s, as key_auth:\n", bs.where)
	b.WriteString("key_auth {\n")
	for _, l := range bs.lines {
		b.WriteString("\t" + l + "\n")
	}
	b.WriteString("\tconsumers file consumers.json # the file this import wrote\n}\n")
	for _, f := range bs.refusals {
		body := respondBody(f.message)
		switch len(f.match) {
		case 0:
			fmt.Fprintf(&b, "respond %s %d\n", body, f.status)
		case 1:
			r.matchers++
			fmt.Fprintf(&b, "@refused_%d %s\nrespond @refused_%d %s %d\n", r.matchers, f.match[0], r.matchers, body, f.status)
		default:
			r.matchers++
			fmt.Fprintf(&b, "@refused_%d {\n", r.matchers)
			for _, m := range f.match {
				b.WriteString("\t" + m + "\n")
			}
			fmt.Fprintf(&b, "}\nrespond @refused_%d %s %d\n", r.matchers, body, f.status)
		}
	}
	return b.String()
}

// respondBody is a respond body {"message": msg}, quoted for the
// Caddyfile (Caddy sends a body that is a JSON object as
// application/json).
func respondBody(msg string) string {
	j, _ := json.Marshal(map[string]string{"message": msg})
	if !strings.Contains(string(j), "`") {
		return "`" + string(j) + "`"
	}
	q, _ := json.Marshal(string(j))
	return string(q)
}

// usernameMatch is a matcher line for these consumers, by username.
func usernameMatch(not bool, usernames []string) string {
	args := make([]string, len(usernames))
	for i, u := range usernames {
		args[i] = caddyfileArg(u)
	}
	line := "consumer username " + strings.Join(args, " ")
	if not {
		line = "not " + line
	}
	return line
}

// caddyfileArg quotes a Caddyfile argument when it needs it.
func caddyfileArg(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\"'`{}#") {
		b, _ := json.Marshal(s)
		return string(b)
	}
	return s
}

func lookupEnv(o Options) func(string) (string, bool) {
	if o.LookupEnv != nil {
		return o.LookupEnv
	}
	return os.LookupEnv
}
