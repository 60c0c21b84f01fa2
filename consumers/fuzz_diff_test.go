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

	"github.com/keyauth/caddy-keyauth/consumers/limits"
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
		// Groups and limits.
		`{"groups": {"free": {"member_limits": {"requests": {"max": 1000, "per": "day"}, "in_flight": 2}},
			"acme": {"limits": {"requests": {"max": 100000, "per": "month", "timezone": "Europe/Berlin"}}}, "empty": {}, "nulls": {"limits": null, "member_limits": null}},
			"consumers": [{"username": "a", "groups": ["gold", "free", "acme"], "limits": {"tokens": {"max": 2000000, "per": "month"}},
				"keys": [{"id": "a-ci", "key": "k", "limits": {"requests": {"max": 100, "per": "hour"}}}, {"key": "k2", "limits": null}]},
				{"username": "b", "groups": ["free"], "limits": {"requests": {"max": 5, "per": "90m", "timezone": null}, "in_flight": 0}, "keys": [{"key": "k3"}]}]}`,
		`{"consumers": [{"username": "a", "groups": ["t1", "t2"], "keys": [{"key": "k"}]}], "groups": {"t2": {"member_limits": {"r": {"max": 2, "per": "day"}, "in_flight": 1}}, "t1": {"member_limits": {"r": {"max": 1, "per": "week"}}, "limits": {"in_flight": 9}}}}`,
		`{"groups": null, "consumers": []}`,
		`{"groups": {}, "consumers": [], "groups": {}}`,
		`{"groups": {"g": null}, "consumers": []}`,
		`{"groups": {"g h": {}}, "consumers": []}`,
		`{"groups": {"": {}}, "consumers": []}`,
		`{"groups": {"g": {}, "\u0067": {}}, "consumers": []}`,
		`{"groups": {"g": {"limit": {}}}, "consumers": []}`,
		`{"groups": {"g": {"limits": []}}, "consumers": []}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": null, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": -1, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": -0, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1.0, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1e3, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 01, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": "1", "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 9007199254740991, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 9007199254740992, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 9223372036854775808, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": -9223372036854775808, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 99999999999999999999999, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1, "per": "days"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1, "per": ""}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1, "per": "999ms"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1, "per": "1s"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1, "per": "1h", "timezone": "Europe/Berlin"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1, "per": "day", "timezone": "Mars/Base"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1, "per": "day", "timezone": "Local"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1, "per": "day", "timezone": "UTC"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1, "per": "day", "timezone": ""}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1, "per": "day", "Max": 2}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": {"max": 1, "per": "day"}, "\u0072": {"max": 1, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r s": {"max": 1, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"": {"max": 1, "per": "day"}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"r": null}}]}`,
		`{"consumers": [{"username": "a", "limits": {"in_flight": null}}]}`,
		`{"consumers": [{"username": "a", "limits": {"in_flight": {"max": 1}}}]}`,
		`{"consumers": [{"username": "a", "limits": {"in_flight": -1}}]}`,
		`{"consumers": [{"username": "a", "limits": {"in_flight": 2.5}}]}`,
		`{"consumers": [{"username": "a", "limits": {"In_flight": 2}}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "limits": {"r": {"max": 1, "per": "fortnight"}}}]}]}`,
		`{"consumers": [{"username": "a", "keys": [{"key": "k", "limits": {"r": {"max": 1, "per": "day"}}}], "limits": {"r": {"max": -1, "per": "day"}}}]}`,
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
	return json.WithUnmarshalers(json.JoinUnmarshalers(
		json.UnmarshalFromFunc(func(dec *jsontext.Decoder, s *string) error {
			// The pointer ends at the last token read: the member's name, or
			// the array itself or the element before.
			var at []string
			for tok := range dec.StackPointer().Tokens() {
				at = append(at, tok)
			}
			if len(at) < 3 || at[0] != "consumers" {
				return errors.ErrUnsupported
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
		}),
		// A group of the document's groups is an object: null is refused.
		json.UnmarshalFromFunc(func(dec *jsontext.Decoder, g *GroupEntry) error {
			if dec.PeekKind() == 'n' && *why == "" {
				*why = "a null group"
			}
			return errors.ErrUnsupported
		}),
		json.UnmarshalFromFunc(func(dec *jsontext.Decoder, l *LimitsEntry) error {
			return refDecodeLimits(dec, l, why)
		}),
		nullElement[ConsumerEntry](why, "consumers"), nullElement[CredentialEntry](why, "keys"),
		nullElement[PreviousSecret](why, "previous"),
	))
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

// refDecodeLimits decodes a limits object plainly: in_flight an integer,
// every other member an object of max (required), per and timezone (not
// empty when given), nothing else; null is none.
func refDecodeLimits(dec *jsontext.Decoder, l *LimitsEntry, why *string) error {
	v, err := dec.ReadValue()
	if err != nil {
		return err
	}
	switch v.Kind() {
	case 'n':
		*l = nil
		return nil
	case '{':
	default:
		return errors.New("limits: not an object")
	}
	var members map[string]jsontext.Value
	if err := json.Unmarshal(v, &members); err != nil {
		return err
	}
	out := LimitsEntry{}
	for name, mv := range members {
		if name == "in_flight" {
			var n int64
			if mv.Kind() != '0' {
				return errors.New("in_flight: not a number")
			}
			if err := json.Unmarshal(mv, &n); err != nil {
				return err
			}
			out[name] = LimitEntry{Max: n}
			continue
		}
		if mv.Kind() != '{' {
			return errors.New("a limit that is not an object")
		}
		var e struct {
			Max      *int64  `json:"max"`
			Per      *string `json:"per"`
			Timezone *string `json:"timezone"`
		}
		if err := json.Unmarshal(mv, &e, json.RejectUnknownMembers(true)); err != nil {
			return err
		}
		le := LimitEntry{}
		switch {
		case e.Max == nil:
			if *why == "" {
				*why = "a limit without max"
			}
		case e.Per != nil && *e.Per == "", e.Timezone != nil && *e.Timezone == "":
			if *why == "" {
				*why = "an empty per or timezone given"
			}
		default:
			le.Max = *e.Max
		}
		if e.Per != nil {
			le.Per = *e.Per
		}
		if e.Timezone != nil {
			le.Timezone = *e.Timezone
		}
		out[name] = le
	}
	*l = out
	return nil
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

// refSet is what a Set must hold.
type refSet struct {
	consumers []refWant
	groups    map[string]GroupEntry
}

// refWant is what a Set must hold for a consumer.
type refWant struct {
	username, id, customID string
	tags, groups           []string
	labels                 map[string]string
	disabled               bool
	limits                 LimitsEntry
	credentials            []refWantCredential
}

type refWantCredential struct {
	id               string
	digest           Digest
	expires          *time.Time
	created          *time.Time
	disabled, canary bool
	previous         []refWantPrevious
	limits           LimitsEntry
}

// refWantPrevious is a previous secret: it finds its credential until the
// earlier of its own expiry and the credential's.
type refWantPrevious struct {
	digest  Digest
	expires time.Time
}

var refUnits = map[string]bool{"second": true, "minute": true, "hour": true, "day": true, "week": true, "month": true, "year": true}

// refLimits applies the rules of a limits object, plainly.
func refLimits(l LimitsEntry) string {
	for name, e := range l {
		if e.Max < 0 || e.Max > 1<<53-1 {
			return "a max or in_flight out of range"
		}
		if name == "in_flight" {
			if e.Per != "" || e.Timezone != "" {
				return "in_flight with a window"
			}
			continue
		}
		if !refLabelName.MatchString(name) {
			return "a bad meter name"
		}
		if refUnits[e.Per] {
			if e.Timezone == "Local" {
				return "the machine's timezone"
			}
			if _, err := time.LoadLocation(e.Timezone); err != nil {
				return "an unknown timezone"
			}
			continue
		}
		if d, err := time.ParseDuration(e.Per); err != nil || d < time.Second {
			return "a per that is no unit nor a duration of a second or more"
		}
		if e.Timezone != "" {
			return "a timezone on a duration"
		}
	}
	return ""
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
	if why := refLimits(c.Limits); why != "" {
		return "limits: " + why
	}
	w.limits = c.Limits
	return ""
}

// refParse decodes a document into its description (refDecode) and applies
// the rules of the format, written out plainly; it returns the document and
// why it is refused, or "". The document is nil when decoding failed.
func refParse(doc []byte) (*Document, refSet, string) {
	d, why := refDecode(doc)
	if why != "" {
		return nil, refSet{}, why
	}
	var (
		out                     refSet
		usernames, ids, credIDs = map[string]bool{}, map[string]bool{}, map[string]bool{}
		digests                 = map[Digest]bool{}
	)
	for ci := range d.Consumers {
		c := &d.Consumers[ci]
		w := refWant{username: c.Username, id: c.Username, customID: c.CustomID}
		if w.username == "" {
			return d, refSet{}, fmt.Sprintf("consumer #%d has no username", ci+1)
		}
		if c.ID != "" {
			w.id = c.ID
		}
		if usernames[w.username] || ids[w.id] {
			return d, refSet{}, fmt.Sprintf("consumer #%d: username or id taken", ci+1)
		}
		usernames[w.username], ids[w.id] = true, true
		for _, tag := range c.Tags {
			if tag == "" || strings.Contains(tag, ",") || strings.TrimSpace(tag) != tag {
				return d, refSet{}, fmt.Sprintf("consumer #%d: a tag empty, with a comma or with white space at an edge", ci+1)
			}
		}
		w.tags = append(w.tags, c.Tags...)
		if why := refGroupsAndLabels(c, &w); why != "" {
			return d, refSet{}, fmt.Sprintf("consumer #%d: %s", ci+1, why)
		}
		for ki := range c.Keys {
			wc, why := refCredentialOf(&c.Keys[ki], w.id, ki)
			if why != "" {
				return d, refSet{}, fmt.Sprintf("key #%d of consumer #%d: %s", ki+1, ci+1, why)
			}
			if credIDs[wc.id] || digests[wc.digest] {
				return d, refSet{}, fmt.Sprintf("key #%d of consumer #%d: credential id or key taken", ki+1, ci+1)
			}
			credIDs[wc.id], digests[wc.digest] = true, true
			for _, p := range wc.previous {
				if digests[p.digest] {
					return d, refSet{}, fmt.Sprintf("key #%d of consumer #%d: a previous secret's key taken", ki+1, ci+1)
				}
				digests[p.digest] = true
			}
			w.credentials = append(w.credentials, wc)
		}
		out.consumers = append(out.consumers, w)
	}
	for name, g := range d.Groups {
		switch {
		case name == "" || utf8.RuneCountInString(name) > 128:
			return d, refSet{}, "a group of groups named empty or over 128 characters"
		case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || r == ',' || unicode.IsControl(r) }):
			return d, refSet{}, "white space, a comma or a control character in the name of a group of groups"
		}
		for _, l := range []LimitsEntry{g.Limits, g.MemberLimits} {
			if why := refLimits(l); why != "" {
				return d, refSet{}, fmt.Sprintf("group %q: %s", name, why)
			}
		}
	}
	out.groups = d.Groups
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
	if why := refLimits(k.Limits); why != "" {
		return w, "limits: " + why
	}
	w.limits = k.Limits
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
func checkBuild(t *testing.T, d *Document, want refSet, whyRefused string, parseErr error) {
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
func compareSet(t *testing.T, s *Set, ref refSet) {
	t.Helper()
	want := ref.consumers
	nKeys := 0
	for _, w := range want {
		nKeys += len(w.credentials)
	}
	if nc, nk := s.Len(); nc != len(want) || nk != nKeys {
		t.Fatalf("Set holds %d consumers and %d keys, the reference %d and %d", nc, nk, len(want), nKeys)
	}
	compareGroups(t, s, ref.groups)
	for i, w := range want {
		c := s.ConsumerAt(i)
		compareLimits(t, c.Limits(), w.limits, fmt.Sprintf("consumer #%d", i+1))
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
			compareLimits(t, cr.Limits(), wc.limits, fmt.Sprintf("consumer #%d, key #%d", i+1, j+1))
			compareEachLimit(t, cr, w, wc, ref.groups, fmt.Sprintf("consumer #%d, key #%d", i+1, j+1))
		}
	}
}

// compareGroups checks the Set's groups against the document's.
func compareGroups(t *testing.T, s *Set, groups map[string]GroupEntry) {
	t.Helper()
	var names []string
	for g := range s.Groups() {
		names = append(names, g.Name())
	}
	if want := slices.Sorted(maps.Keys(groups)); !slices.Equal(names, want) {
		t.Fatalf("Set's groups %q, the reference %q", names, want)
	}
	for name, e := range groups {
		g, ok := s.Group(name)
		if !ok || g.Name() != name {
			t.Fatalf("Group(%q) not found", name)
		}
		compareLimits(t, g.Limits(), e.Limits, fmt.Sprintf("group %q: limits", name))
		compareLimits(t, g.MemberLimits(), e.MemberLimits, fmt.Sprintf("group %q: member_limits", name))
	}
	if _, ok := s.Group("\x00not-a-group"); ok {
		t.Fatal("Group finds a group not in the document")
	}
}

// refWindow is a limit's window as its per and timezone say, plainly: a
// unit and a zone name ("" for UTC), or a duration.
func refWindow(per, tz string) string {
	if refUnits[per] {
		if tz == "UTC" {
			tz = ""
		}
		return per + "@" + tz
	}
	d, _ := time.ParseDuration(per)
	return d.String()
}

func sameLimit(lim Limit, e LimitEntry, inFlight bool) bool {
	if inFlight {
		return lim.Max == e.Max && lim.Window.IsZero()
	}
	return lim.Max == e.Max && refWindow(lim.Window.Per(), lim.Window.Timezone()) == refWindow(e.Per, e.Timezone)
}

// compareLimits checks a limits object of a Set through every accessor.
func compareLimits(t *testing.T, got Limits, want LimitsEntry, what string) {
	t.Helper()
	if got.Len() != len(want) {
		t.Fatalf("%s: %d limits, the reference %d", what, got.Len(), len(want))
	}
	var order []string
	for meter, lim := range got.All() {
		order = append(order, meter)
		e, ok := want[meter]
		if !ok || !sameLimit(lim, e, meter == InFlight) {
			t.Fatalf("%s: %s is %d per %s, the reference %+v", what, meter, lim.Max, lim.Window, e)
		}
		if g, ok := got.Get(meter); !ok || g != lim {
			t.Fatalf("%s: Get(%q) = %v, %v", what, meter, g, ok)
		}
	}
	if !slices.Equal(order, slices.Sorted(maps.Keys(want))) {
		t.Fatalf("%s: meters in the order %q", what, order)
	}
	if _, ok := got.Get("\x00no-meter"); ok {
		t.Fatalf("%s: Get finds a meter that is not there", what)
	}
	back := got.Entry()
	if len(back) != len(want) {
		t.Fatalf("%s: Entry() = %v", what, back)
	}
	for meter, e := range back {
		if !sameLimit(got.mustGet(meter), e, meter == InFlight) || !sameLimit(got.mustGet(meter), want[meter], meter == InFlight) {
			t.Fatalf("%s: Entry()[%q] = %+v, the reference %+v", what, meter, e, want[meter])
		}
	}
}

func (l Limits) mustGet(meter string) Limit {
	lim, ok := l.Get(meter)
	if !ok {
		panic("no limit " + meter)
	}
	return lim
}

// compareEachLimit holds EachLimit to the rule written out plainly: the
// credential's limits, the consumer's own, its groups' member_limits on
// the meters it has no limit of its own on (the first group it lists
// wins), and each group's pool.
func compareEachLimit(t *testing.T, cr Credential, w refWant, wc refWantCredential, groups map[string]GroupEntry, what string) {
	t.Helper()
	type item struct {
		kind         limits.ScopeKind
		scope, meter string
		limit        string
	}
	show := func(max int64, per, tz string, inFlight bool) string {
		if inFlight {
			return strconv.FormatInt(max, 10)
		}
		return strconv.FormatInt(max, 10) + "/" + refWindow(per, tz)
	}
	var want []item
	for m, e := range wc.limits {
		want = append(want, item{limits.Credential, wc.id, m, show(e.Max, e.Per, e.Timezone, m == InFlight)})
	}
	consumerMeters := map[string]bool{}
	for m, e := range w.limits {
		consumerMeters[m] = true
		want = append(want, item{limits.Consumer, w.id, m, show(e.Max, e.Per, e.Timezone, m == InFlight)})
	}
	for _, g := range w.groups {
		for m, e := range groups[g].MemberLimits {
			if !consumerMeters[m] {
				consumerMeters[m] = true
				want = append(want, item{limits.Consumer, w.id, m, show(e.Max, e.Per, e.Timezone, m == InFlight)})
			}
		}
	}
	for _, g := range w.groups {
		for m, e := range groups[g].Limits {
			want = append(want, item{limits.Group, g, m, show(e.Max, e.Per, e.Timezone, m == InFlight)})
		}
	}
	var got []item
	cr.EachLimit(func(kind limits.ScopeKind, scope, meter string, l Limit) bool {
		got = append(got, item{kind, scope, meter, show(l.Max, l.Window.Per(), l.Window.Timezone(), meter == InFlight)})
		return true
	})
	cmp := func(a, b item) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	}
	slices.SortFunc(want, cmp)
	slices.SortFunc(got, cmp)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: EachLimit yields %v, the reference %v", what, got, want)
	}
	if cr.HasLimits() != (len(want) > 0) {
		t.Fatalf("%s: HasLimits() = %v with %d limits", what, cr.HasLimits(), len(want))
	}
	if len(got) > 1 {
		n := 0
		cr.EachLimit(func(limits.ScopeKind, string, string, Limit) bool { n++; return false })
		if n != 1 {
			t.Fatalf("%s: EachLimit went on after yield returned false", what)
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
		// The credential's limits, so a roll carries them over.
		compareLimits(t, pr.Limits(), wc.limits, what)
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
