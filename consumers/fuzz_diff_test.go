package consumers

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// FuzzParseDiff holds the hand-written parser to the document's description
// and to a second opinion. The reference decodes the document into its
// description (Document) with a strict, well-kept JSON decoder
// (encoding/json/v2's mirror) and the string rules that the JSON form adds
// (stringRules), then applies the rules of a consumers document written out
// plainly. Parse must accept exactly the documents the reference accepts,
// and build the same consumers: usernames, ids, custom ids, tags, groups,
// labels, whether it is disabled, and per credential its id, key digest,
// consumer, expiry and flags. Build, given the decoded description, must
// agree with both (checkBuild), so the parser and the description cannot
// drift apart.
//
// The decoder refuses unknown and duplicate member names (after unescaping;
// names match case-sensitively), invalid UTF-8, anything but white space
// after the document, and a number or boolean where a string is wanted.
// One leniency is shared on purpose: an escaped lone UTF-16 surrogate
// ("\ud800") decodes to U+FFFD, as encoding/json and Parse do; the strict
// decoder alone would refuse it.
func FuzzParseDiff(f *testing.F) {
	f.Add([]byte(`{"consumers": [{"username": "a", "id": "b", "custom_id": null, "tags": ["x", "y"],
		"keys": [{"key": "k1"}, {"id": "b-ci", "hash": "sha256:` + strings.Repeat("aB", 32) + `", "expires_at": "1970-01-01T00:00:00Z"}]}]}`))
	f.Add([]byte(`{"consumers": [{"username": "a\ud800", "keys": [{"key": "k", "expires_at": "9999-12-31T23:59:59+01:00"}]}]}`))
	f.Add([]byte(`{"consumers": [{"username": "a", "keys": null, "tags": null}], "\u0063onsumers": []}`))
	f.Add(realisticDocument(3))
	f.Add(rolledDocument(8))
	// Edges of the rules: each refused or accepted by both.
	for _, doc := range []string{
		`{"Consumers": []}`,
		`{"consumers": [{"username": "a", "tags": [null]}]}`,
		`{"consumers": [{"username": "a", "tags": ["t,u"]}]}`,
		`{"consumers": [{"username": "a", "tags": ["t u", "\u00e9"]}]}`,
		`{"consumers": [{"username": "a", "tags": ["t\u2003"]}]}`,
		`{"consumers": [{"username": "a", "tags": [""]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k"}]}, {"username": "b", "keys": [{"hash": "sha256:` +
			strings.ToUpper(hex.EncodeToString(func() []byte { d := sha256.Sum256([]byte("k")); return d[:] }())) + `"}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "` + strings.Repeat("k", MaxKeyLength) + `"}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "` + strings.Repeat("k", MaxKeyLength+1) + `"}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "expires_at": "1500-01-01T00:00:00Z"}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "created_at": "2026-01-02T03:04:05+01:00"}, {"key": "k2"}, {"key": "k3", "created_at": "1970-01-01T00:00:00Z"}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k"}, {"key": "k2", "created_at": "1500-01-01T00:00:00Z"}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "created_at": "yesterday"}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "created_at": ""}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "created_at": null}]}]}`,
		`{"consumers": [{"username": "a"}, {"username": "b", "id": "a"}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k1"}, {"id": "a#1", "key": "k2"}]}]}`,
		// Groups, labels and flags.
		`{"consumers": [{"username": "a", "groups": ["g", "h\u00e9", "` + strings.Repeat("é", MaxGroupNameChars) + `"],
			"labels": {"plan": "gold", "b.-_9": "", "x": "\u00e9 v"}, "disabled": true,
			"keys": [{"key": "k", "disabled": true, "canary": true}, {"key": "k2", "disabled": false, "canary": null}]},
			{"username": "b", "groups": null, "labels": null, "disabled": null}, {"username": "c", "groups": [], "labels": {}}]}`,
		`{"consumers": [{"username": "a", "groups": ["` + strings.Repeat("é", MaxGroupNameChars+1) + `"]}]}`,
		`{"consumers": [{"username": "a", "groups": ["g", "\u0067"]}]}`,
		`{"consumers": [{"username": "a", "groups": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "a"]}]}`,
		`{"consumers": [{"username": "a", "groups": ["g h"]}]}`,
		`{"consumers": [{"username": "a", "groups": ["g,h"]}]}`,
		`{"consumers": [{"username": "a", "groups": ["g\u0085"]}]}`,
		`{"consumers": [{"username": "a", "groups": ["g\u00a0"]}]}`,
		`{"consumers": [{"username": "a", "groups": ["g\u007f"]}]}`,
		`{"consumers": [{"username": "a", "groups": [""]}]}`,
		`{"consumers": [{"username": "a", "labels": {"` + strings.Repeat("n", MaxLabelNameLength) + `": "` + strings.Repeat("v", MaxLabelValueBytes) + `"}}]}`,
		`{"consumers": [{"username": "a", "labels": {"` + strings.Repeat("n", MaxLabelNameLength+1) + `": "v"}}]}`,
		`{"consumers": [{"username": "a", "labels": {"n": "` + strings.Repeat("v", MaxLabelValueBytes+1) + `"}}]}`,
		`{"consumers": [{"username": "a", "labels": {"p": "a", "\u0070": "b"}}]}`,
		`{"consumers": [{"username": "a", "labels": {"": "a"}}]}`,
		`{"consumers": [{"username": "a", "labels": {"a b": "a"}}]}`,
		`{"consumers": [{"username": "a", "labels": {"a": "\u009f"}}]}`,
		`{"consumers": [{"username": "a", "labels": {"a": "\t"}}]}`,
		`{"consumers": [{"username": "a", "labels": {"a": null}}]}`,
		`{"consumers": [{"username": "a", "disabled": "true"}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "canary": 1}]}]}`,
		// Previous secrets.
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": [{"hash": "` + hashOf("k0") + `", "expires_at": "2030-01-01T00:00:00Z"},
			{"hash": "` + hashOf("k00") + `", "expires_at": "1970-01-01T00:00:00Z"}]}, {"key": "k2", "previous": null},
			{"key": "k3", "previous": []}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"id": "c", "key": "k", "expires_at": "2026-01-01T00:00:00Z", "created_at": "2025-01-01T00:00:00Z", "disabled": true,
			"previous": [{"expires_at": "2027-01-01T00:00:00+02:00", "hash": "` + strings.ToUpper(hashOf("k0")[7:]) + `"}]}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": [{"hash": "` + hashOf("k0") + `", "expires_at": "9999-12-31T23:59:59Z"}]}]},
			{"username": "b", "keys": [{"hash": "` + hashOf("k0") + `"}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": [{"hash": "` + hashOf("k") + `", "expires_at": "2030-01-01T00:00:00Z"}]}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": [{"hash": "` + hashOf("k0") + `", "expires_at": "2030-01-01T00:00:00Z"},
			{"hash": "` + hashOf("k0") + `", "expires_at": "2031-01-01T00:00:00Z"}]}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "canary": true, "previous": [{"hash": "` + hashOf("k0") + `", "expires_at": "2030-01-01T00:00:00Z"}]}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "canary": true, "previous": []}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": [{"hash": "` + hashOf("k0") + `"}]}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": [{"hash": "` + hashOf("k0") + `", "expires_at": null}]}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": [{"hash": "` + hashOf("k0") + `", "expires_at": ""}]}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": [{"hash": "` + hashOf("k0") + `", "expires_at": "soon"}]}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": [{"hash": "", "expires_at": "2030-01-01T00:00:00Z"}]}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": [{"hash": null, "expires_at": "2030-01-01T00:00:00Z"}]}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": [{"hash": "sha256:12", "expires_at": "2030-01-01T00:00:00Z"}]}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": [{"key": "k0", "expires_at": "2030-01-01T00:00:00Z"}]}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": [null]}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "previous": {}}]}]}`,
		`{"consumers": [{"username": "a", "keys": [null]}]}`,
		`{"consumers": [null]}`,
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		decoded, want, whyRefused := refParse(doc)
		set, err := Parse(doc)
		switch {
		case err != nil && whyRefused == "":
			t.Fatalf("Parse refused a document the reference accepts: %v", err)
		case err == nil && whyRefused != "":
			t.Fatalf("Parse accepted a document the reference refuses: %s", whyRefused)
		case err == nil:
			compareSet(t, set, want)
		}
		if decoded != nil {
			checkBuild(t, decoded, want, whyRefused, err)
		}
	})
}

// stringRules are what the JSON form of a document says that its Go
// description (Document) cannot: a member that is given may not be an empty
// string where that would mean "absent", and an element of tags or groups or
// a label's value may not be null (a member's null is its absence). The
// reference applies them while it decodes.
func stringRules(why *string) json.Options {
	return json.WithUnmarshalers(json.JoinUnmarshalers(json.UnmarshalFromFunc(func(dec *jsontext.Decoder, s *string) error {
		// The pointer ends at the last token read: the member's name, or
		// the array itself or the element before.
		var at []string
		for tok := range dec.StackPointer().Tokens() {
			at = append(at, tok)
		}
		null := dec.PeekKind() == 'n'
		switch {
		case len(at) >= 3 && len(at) <= 4 && (at[2] == "tags" || at[2] == "groups" || at[2] == "labels"):
			if null && *why == "" {
				*why = "a null element of " + at[2]
			}
		case len(at) == 3 && at[2] == "id", len(at) == 5 && at[2] == "keys" && slices.Contains([]string{"id", "key", "hash", "expires_at", "created_at"}, at[4]),
			len(at) == 7 && at[2] == "keys" && at[4] == "previous" && (at[6] == "hash" || at[6] == "expires_at"):
			if !null && *why == "" {
				v, err := dec.ReadValue()
				if err != nil {
					return err
				}
				if string(v) == `""` {
					*why = "an empty " + at[len(at)-1] + " given"
				}
				return json.Unmarshal(v, s)
			}
		}
		return errors.ErrUnsupported // decoded as usual
	}), nullElement[ConsumerEntry](why, "consumers"), nullElement[CredentialEntry](why, "keys"),
		nullElement[PreviousSecret](why, "previous")))
}

// nullElement refuses a null element of an array of objects (consumers,
// keys, previous), which the JSON form cannot mean: the description would
// decode it as an empty object, Parse refuses it as no object at all.
func nullElement[T any](why *string, array string) *json.Unmarshalers {
	return json.UnmarshalFromFunc(func(dec *jsontext.Decoder, _ *T) error {
		if dec.PeekKind() == 'n' && *why == "" {
			*why = "a null element of " + array
		}
		return errors.ErrUnsupported
	})
}

// refDecode decodes a document into its description, strictly: unknown and
// duplicate members are refused, as are the string rules.
func refDecode(doc []byte) (*Document, string) {
	if !utf8.Valid(doc) {
		return nil, "invalid UTF-8"
	}
	decode := func(v any, opts ...json.Options) error {
		return json.Unmarshal(doc, v, append(opts, json.RejectUnknownMembers(true))...)
	}
	var (
		d   Document
		why string
	)
	err := decode(&d, stringRules(&why))
	if err != nil && strings.Contains(err.Error(), "surrogate") {
		// The shared leniency; the raw bytes are valid UTF-8 (checked above).
		d, why = Document{}, ""
		err = decode(&d, stringRules(&why), jsontext.AllowInvalidUTF8(true))
	}
	if err != nil {
		return nil, "decoder: " + err.Error()
	}
	if why != "" {
		return nil, why
	}
	var top struct {
		Consumers jsontext.Value `json:"consumers"`
	}
	if err := json.Unmarshal(doc, &top, jsontext.AllowInvalidUTF8(true)); err != nil || top.Consumers.Kind() != '[' {
		return nil, `"consumers" missing or null`
	}
	return &d, ""
}

// refWant is what a Set must hold for a consumer.
type refWant struct {
	username, id, customID string
	tags, groups           []string
	labels                 map[string]string
	disabled               bool
	credentials            []refWantCredential
}

type refWantCredential struct {
	id               string
	digest           Digest
	expires          *time.Time
	created          *time.Time
	disabled, canary bool
	previous         []refWantPrevious
}

// refWantPrevious is a previous secret: it finds its credential until the
// earlier of its own expiry and the credential's.
type refWantPrevious struct {
	digest  Digest
	expires time.Time
}

var refLabelName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// refGroupsAndLabels applies the rules of groups and labels, plainly.
func refGroupsAndLabels(c *ConsumerEntry, w *refWant) string {
	seen := map[string]bool{}
	for _, g := range c.Groups {
		switch {
		case g == "" || utf8.RuneCountInString(g) > 128:
			return "a group name empty or over 128 characters"
		case strings.ContainsFunc(g, func(r rune) bool { return unicode.IsSpace(r) || r == ',' || unicode.IsControl(r) }):
			return "white space, a comma or a control character in a group name"
		case seen[g]:
			return "a group listed twice"
		}
		seen[g] = true
		w.groups = append(w.groups, g)
	}
	for name, v := range c.Labels {
		switch {
		case !refLabelName.MatchString(name):
			return "a bad label name"
		case len(v) > 1024 || strings.ContainsFunc(v, unicode.IsControl):
			return "a label value too long or with a control character"
		}
		if w.labels == nil {
			w.labels = map[string]string{}
		}
		w.labels[name] = v
	}
	w.disabled = c.Disabled
	return ""
}

// refParse decodes a document into its description (refDecode) and applies
// the rules of the format, written out plainly; it returns the document and
// why it is refused, or "". The document is nil when decoding failed.
func refParse(doc []byte) (*Document, []refWant, string) {
	d, why := refDecode(doc)
	if why != "" {
		return nil, nil, why
	}
	var (
		out                     []refWant
		usernames, ids, credIDs = map[string]bool{}, map[string]bool{}, map[string]bool{}
		digests                 = map[Digest]bool{}
	)
	for ci := range d.Consumers {
		c := &d.Consumers[ci]
		w := refWant{username: c.Username, id: c.Username, customID: c.CustomID}
		if w.username == "" {
			return d, nil, fmt.Sprintf("consumer #%d has no username", ci+1)
		}
		if c.ID != "" {
			w.id = c.ID
		}
		if usernames[w.username] || ids[w.id] {
			return d, nil, fmt.Sprintf("consumer #%d: username or id taken", ci+1)
		}
		usernames[w.username], ids[w.id] = true, true
		for _, tag := range c.Tags {
			if tag == "" || strings.Contains(tag, ",") || strings.TrimSpace(tag) != tag {
				return d, nil, fmt.Sprintf("consumer #%d: a tag empty, with a comma or with white space at an edge", ci+1)
			}
		}
		w.tags = append(w.tags, c.Tags...)
		if why := refGroupsAndLabels(c, &w); why != "" {
			return d, nil, fmt.Sprintf("consumer #%d: %s", ci+1, why)
		}
		for ki := range c.Keys {
			wc, why := refCredentialOf(&c.Keys[ki], w.id, ki)
			if why != "" {
				return d, nil, fmt.Sprintf("key #%d of consumer #%d: %s", ki+1, ci+1, why)
			}
			if credIDs[wc.id] || digests[wc.digest] {
				return d, nil, fmt.Sprintf("key #%d of consumer #%d: credential id or key taken", ki+1, ci+1)
			}
			credIDs[wc.id], digests[wc.digest] = true, true
			for _, p := range wc.previous {
				if digests[p.digest] {
					return d, nil, fmt.Sprintf("key #%d of consumer #%d: a previous secret's key taken", ki+1, ci+1)
				}
				digests[p.digest] = true
			}
			w.credentials = append(w.credentials, wc)
		}
		out = append(out, w)
	}
	return d, out, ""
}

func refCredentialOf(k *CredentialEntry, consumerID string, i int) (refWantCredential, string) {
	w := refWantCredential{id: consumerID + "#" + strconv.Itoa(i+1)}
	if k.ID != "" {
		w.id = k.ID
	}
	switch {
	case (k.Key == "") == (k.Hash == ""):
		return w, "wants exactly one of key and hash"
	case len(k.Key) > MaxKeyLength:
		return w, "key too long"
	case k.Key != "" && unsendableKey(k.Key):
		return w, "key blank, edged with whitespace or holding a control character"
	case k.Key != "":
		w.digest = sha256.Sum256([]byte(k.Key))
	default:
		hexDigits, ok := strings.CutPrefix(k.Hash, "sha256:")
		raw, err := hex.DecodeString(hexDigits)
		if !ok || err != nil || len(raw) != len(w.digest) {
			return w, "malformed hash"
		}
		copy(w.digest[:], raw)
	}
	if k.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339, k.ExpiresAt)
		if err != nil {
			return w, "expires_at is not RFC 3339"
		}
		w.expires = &t
	}
	if k.CreatedAt != "" {
		t, err := time.Parse(time.RFC3339, k.CreatedAt)
		if err != nil {
			return w, "created_at is not RFC 3339"
		}
		w.created = &t
	}
	w.disabled, w.canary = k.Disabled, k.Canary
	if k.Canary && len(k.Previous) > 0 {
		return w, "a canary with previous secrets"
	}
	for _, p := range k.Previous {
		wp := refWantPrevious{}
		hexDigits, ok := strings.CutPrefix(p.Hash, "sha256:")
		raw, err := hex.DecodeString(hexDigits)
		if !ok || err != nil || len(raw) != len(wp.digest) {
			return w, "a previous secret's hash missing or malformed"
		}
		copy(wp.digest[:], raw)
		if wp.expires, err = time.Parse(time.RFC3339, p.ExpiresAt); err != nil {
			return w, "a previous secret's expires_at missing or not RFC 3339"
		}
		if w.expires != nil && w.expires.Before(wp.expires) {
			wp.expires = *w.expires
		}
		w.previous = append(w.previous, wp)
	}
	return w, ""
}

// checkBuild holds Build, the rules applied to the description, to Parse:
// it accepts the same documents, with the same errors, and builds the same
// Set.
func checkBuild(t *testing.T, d *Document, want []refWant, whyRefused string, parseErr error) {
	t.Helper()
	set, err := Build(d)
	switch {
	case err != nil && whyRefused == "":
		t.Fatalf("Build refused a document the reference accepts: %v", err)
	case err == nil && whyRefused != "":
		t.Fatalf("Build accepted a document the reference refuses: %s", whyRefused)
	case err == nil:
		compareSet(t, set, want)
		return
	}
	// Parse says where, by line; Build cannot. Labels are numbered in the
	// order of the document by one and by name by the other.
	_, parseMsg, _ := strings.Cut(parseErr.Error(), ": ")
	if parseMsg != err.Error() && !strings.Contains(parseMsg, "label") {
		t.Fatalf("Build's error %q, Parse's %q", err, parseErr)
	}
}

// compareSet checks, through the Set's methods alone, that it holds what the
// reference decoded. Keys are compared by digest, never printed.
func compareSet(t *testing.T, s *Set, want []refWant) {
	t.Helper()
	nKeys := 0
	for _, w := range want {
		nKeys += len(w.credentials)
	}
	if nc, nk := s.Len(); nc != len(want) || nk != nKeys {
		t.Fatalf("Set holds %d consumers and %d keys, the reference %d and %d", nc, nk, len(want), nKeys)
	}
	for i, w := range want {
		c := s.ConsumerAt(i)
		if c.Username() != w.username || c.ID() != w.id || c.CustomID() != w.customID || !slices.Equal(c.Tags(), w.tags) {
			t.Fatalf("consumer #%d: username, id, custom id, tags = %q %q %q %q, the reference %q %q %q %q", i+1,
				c.Username(), c.ID(), c.CustomID(), c.Tags(), w.username, w.id, w.customID, w.tags)
		}
		compareAuthz(t, c, w, i)
		for j, wc := range w.credentials {
			cr, ok := s.Lookup(&wc.digest)
			switch {
			case !ok:
				t.Fatalf("consumer #%d, key #%d: not found by its digest", i+1, j+1)
			case cr.Consumer().Index() != i || cr.ID() != wc.id:
				t.Fatalf("consumer #%d, key #%d: found as credential %q of consumer #%d, the reference says %q",
					i+1, j+1, cr.ID(), cr.Consumer().Index()+1, wc.id)
			case cr.Disabled() != wc.disabled || cr.Canary() != wc.canary:
				t.Fatalf("consumer #%d, key #%d: Disabled(), Canary() = %v, %v, the reference %v, %v",
					i+1, j+1, cr.Disabled(), cr.Canary(), wc.disabled, wc.canary)
			case cr.Expires() != (wc.expires != nil):
				t.Fatalf("consumer #%d, key #%d: Expires() = %v", i+1, j+1, cr.Expires())
			case wc.expires != nil:
				checkExpiry(t, cr, *wc.expires, fmt.Sprintf("consumer #%d, key #%d", i+1, j+1))
			}
			if at, ok := cr.CreatedAt(); ok != (wc.created != nil) || ok && at.Unix() != wc.created.Unix() {
				t.Fatalf("consumer #%d, key #%d: CreatedAt() = %v, %v, the reference %v", i+1, j+1, at, ok, wc.created)
			}
			if cr.Previous() {
				t.Fatalf("consumer #%d, key #%d: its key finds it as a previous secret", i+1, j+1)
			}
			comparePrevious(t, s, cr, wc, fmt.Sprintf("consumer #%d, key #%d", i+1, j+1))
		}
	}
}

// comparePrevious checks that each previous secret of a credential finds
// that very credential (its id, consumer, flags, created_at and Index, so
// per-credential state carries over), with the previous secret's expiry.
func comparePrevious(t *testing.T, s *Set, cr Credential, wc refWantCredential, what string) {
	t.Helper()
	for k, wp := range wc.previous {
		pr, ok := s.Lookup(&wp.digest)
		what := fmt.Sprintf("%s, previous secret #%d", what, k+1)
		switch {
		case !ok:
			t.Fatalf("%s: not found by its digest", what)
		case !pr.Previous() || pr.Index() != cr.Index() || pr.ID() != cr.ID() || pr.Consumer() != cr.Consumer():
			t.Fatalf("%s: found as credential %q (#%d, previous %v), want %q (#%d)", what, pr.ID(), pr.Index(), pr.Previous(), cr.ID(), cr.Index())
		case pr.Disabled() != cr.Disabled() || pr.Canary() != cr.Canary():
			t.Fatalf("%s: flags differ from its credential's", what)
		case !pr.Expires():
			t.Fatalf("%s: Expires() = false", what)
		}
		a, aok := pr.CreatedAt()
		if b, bok := cr.CreatedAt(); aok != bok || !a.Equal(b) {
			t.Fatalf("%s: CreatedAt() differs from its credential's", what)
		}
		checkExpiry(t, pr, wp.expires, what)
	}
}

// compareAuthz checks a consumer's groups, labels, joined tags and flag
// through every accessor.
func compareAuthz(t *testing.T, c Consumer, w refWant, i int) {
	t.Helper()
	if !slices.Equal(c.Groups(), w.groups) || c.GroupsHeader() != strings.Join(w.groups, ", ") || c.HasGroups() != (len(w.groups) > 0) {
		t.Fatalf("consumer #%d: groups %q, header %q, the reference %q", i+1, c.Groups(), c.GroupsHeader(), w.groups)
	}
	for _, g := range w.groups {
		if !c.InGroup(g) {
			t.Fatalf("consumer #%d: InGroup(%q) = false", i+1, g)
		}
	}
	if c.InGroup(c.GroupsHeader()) && len(w.groups) > 1 {
		t.Fatalf("consumer #%d: the joined header counts as a group", i+1)
	}
	if got := c.Labels(); !maps.Equal(got, w.labels) {
		t.Fatalf("consumer #%d: labels %q, the reference %q", i+1, got, w.labels)
	}
	names := slices.Sorted(maps.Keys(w.labels))
	var order []string
	for name, v := range c.AllLabels() {
		order = append(order, name)
		if got, ok := c.Label(name); !ok || got != v || v != w.labels[name] {
			t.Fatalf("consumer #%d: Label(%q) = %q, %v, the reference %q", i+1, name, got, ok, w.labels[name])
		}
	}
	if !slices.Equal(order, names) {
		t.Fatalf("consumer #%d: labels in the order %q, want %q", i+1, order, names)
	}
	if c.TagsJoined() != strings.Join(w.tags, ", ") {
		t.Fatalf("consumer #%d: TagsJoined() = %q, the reference %q", i+1, c.TagsJoined(), strings.Join(w.tags, ", "))
	}
	if c.Disabled() != w.disabled {
		t.Fatalf("consumer #%d: Disabled() = %v, the reference %v", i+1, c.Disabled(), w.disabled)
	}
}

// checkExpiry checks that a credential expires at the instant given, to the
// nanosecond, where a Set can tell: instants outside the years 1678 to 2262
// are held as the nearest one inside, and the epoch itself as a nanosecond
// before it (zero means never).
func checkExpiry(t *testing.T, cr Credential, at time.Time, what string) {
	t.Helper()
	lo, hi := time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)
	switch {
	case at.After(hi):
		at = hi
	case at.Before(lo):
		at = lo
	case at.Equal(time.Unix(0, 0)):
		at = time.Unix(0, -1)
	}
	if !cr.ExpiredAt(at) {
		t.Fatalf("%s: not expired at its expires_at %s", what, at.Format(time.RFC3339Nano))
	}
	if at.After(lo) && cr.ExpiredAt(at.Add(-time.Nanosecond)) {
		t.Fatalf("%s: expired a nanosecond before its expires_at %s", what, at.Format(time.RFC3339Nano))
	}
}

// unsendableKey is issue 8's rule, written out plainly: a key that is blank,
// begins or ends with white space, or holds a control character could
// never be sent as stored (header values are trimmed).
func unsendableKey(k string) bool {
	first, _ := utf8.DecodeRuneInString(k)
	last, _ := utf8.DecodeLastRuneInString(k)
	return unicode.IsSpace(first) || unicode.IsSpace(last) || strings.ContainsFunc(k, unicode.IsControl)
}

// rolledDocument is a document of n consumers whose credentials were
// rolled zero to three times, with previous secrets expiring before, at and
// after their credential, in several spellings.
func rolledDocument(n int) []byte {
	var doc Document
	expiries := []string{"", "2020-01-01T00:00:00Z", "2030-06-30T12:00:00+02:00", "2030-06-30T10:00:00Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z"}
	for i := range n {
		c := ConsumerEntry{Username: fmt.Sprintf("u%d", i)}
		for j := range i%3 + 1 {
			k := CredentialEntry{Key: fmt.Sprintf("%s-%d-%d", keyMark, i, j), ExpiresAt: expiries[(i+j)%len(expiries)]}
			if j%2 == 1 {
				k.ID, k.CreatedAt = fmt.Sprintf("c%d-%d", i, j), "2026-01-01T00:00:00Z"
			}
			for r := range (i + j) % 4 {
				exp := expiries[(i+j+r+1)%len(expiries)]
				if exp == "" {
					exp = "2031-01-01T00:00:00Z"
				}
				k.Previous = append(k.Previous, PreviousSecret{Hash: HashKey(fmt.Sprintf("%s-%d-%d-old%d", keyMark, i, j, r)), ExpiresAt: exp})
			}
			c.Keys = append(c.Keys, k)
		}
		doc.Consumers = append(doc.Consumers, c)
	}
	b, err := doc.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}
