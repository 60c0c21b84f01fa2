package consumers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// Every key in these tests starts with keyMark, so a test can tell that an
// error message holds no key material by looking for the mark.
const keyMark = "SeCrEt"

func digestOf(key string) *Digest {
	d := sha256.Sum256([]byte(key))
	return &d
}

func hashOf(key string) string {
	d := sha256.Sum256([]byte(key))
	return HashPrefix + hex.EncodeToString(d[:])
}

func mustParse(t testing.TB, doc string) *Set {
	t.Helper()
	s, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v\ndocument: %s", err, doc)
	}
	return s
}

// hexRun finds runs of hex digits long enough to be (part of) a digest.
var hexRun = regexp.MustCompile(`[0-9a-fA-F]{16,}`)

// assertNoKeyMaterial fails when msg holds a key of doc or a digest written
// in it.
func assertNoKeyMaterial(t *testing.T, msg, doc string) {
	t.Helper()
	if strings.Contains(msg, keyMark) {
		t.Errorf("error holds key material: %q", msg)
	}
	for _, h := range hexRun.FindAllString(doc, -1) {
		if strings.Contains(msg, h[:16]) {
			t.Errorf("error holds a digest from the document: %q", msg)
		}
	}
}

type wantConsumer struct {
	username, id, customID string
	tags                   []string
}

type wantCred struct {
	key      string // the plain key presented
	id       string
	consumer string // username
	expires  bool
	expired  bool // at testNow
}

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func TestParseValid(t *testing.T) {
	long := keyMark + strings.Repeat("k", MaxKeyLength-len(keyMark))
	tests := []struct {
		name      string
		doc       string
		consumers []wantConsumer
		creds     []wantCred
		keys      int
	}{
		{
			name: "the contract's example",
			doc: `{"consumers": [
  {"username": "bob", "id": "b0b-1", "custom_id": "cust-42", "tags": ["partner"],
   "keys": [
     {"id": "bob-laptop", "key": "` + keyMark + `-plain"},
     {"id": "bob-ci", "hash": "` + hashOf(keyMark+"-hashed") + `", "expires_at": "2027-01-01T00:00:00Z"}
   ]}
]}`,
			consumers: []wantConsumer{{"bob", "b0b-1", "cust-42", []string{"partner"}}},
			creds: []wantCred{
				{key: keyMark + "-plain", id: "bob-laptop", consumer: "bob"},
				{key: keyMark + "-hashed", id: "bob-ci", consumer: "bob", expires: true},
			},
			keys: 2,
		},
		{
			name:      "empty consumers array",
			doc:       `{"consumers": []}`,
			consumers: nil,
		},
		{
			name:      "white space everywhere",
			doc:       "\r\n\t {\r\n\t \"consumers\"\t:\r\n[ { \"username\" : \"a\" , \"keys\" : [ { \"key\" : \"" + keyMark + "1\" } ] } ] }\n\n",
			consumers: []wantConsumer{{username: "a", id: "a"}},
			creds:     []wantCred{{key: keyMark + "1", id: "a#1", consumer: "a"}},
			keys:      1,
		},
		{
			name: "defaults: id is the username, credential ids derived by position",
			doc: `{"consumers": [{"username": "alice", "keys": [
				{"key": "` + keyMark + `-a1"},
				{"key": "` + keyMark + `-a2", "id": "named"},
				{"hash": "` + hashOf(keyMark+"-a3") + `"}
			]}]}`,
			consumers: []wantConsumer{{username: "alice", id: "alice"}},
			creds: []wantCred{
				{key: keyMark + "-a1", id: "alice#1", consumer: "alice"},
				{key: keyMark + "-a2", id: "named", consumer: "alice"},
				{key: keyMark + "-a3", id: "alice#3", consumer: "alice"},
			},
			keys: 3,
		},
		{
			name: "derived credential ids use the consumer id",
			doc: `{"consumers": [{"username": "carol", "id": "c-9", "keys": [
				{"key": "` + keyMark + `-c1"}, {"key": "` + keyMark + `-c2"}]}]}`,
			consumers: []wantConsumer{{username: "carol", id: "c-9"}},
			creds: []wantCred{
				{key: keyMark + "-c1", id: "c-9#1", consumer: "carol"},
				{key: keyMark + "-c2", id: "c-9#2", consumer: "carol"},
			},
			keys: 2,
		},
		{
			name:      "an id equal to the username",
			doc:       `{"consumers": [{"username": "dan", "id": "dan", "keys": [{"key": "` + keyMark + `-d"}]}]}`,
			consumers: []wantConsumer{{username: "dan", id: "dan"}},
			creds:     []wantCred{{key: keyMark + "-d", id: "dan#1", consumer: "dan"}},
			keys:      1,
		},
		{
			name: "null for every optional field",
			doc: `{"consumers": [
				{"username": "n", "id": null, "custom_id": null, "tags": null, "keys": null},
				{"username": "m", "keys": [{"id": null, "key": "` + keyMark + `-m", "hash": null, "expires_at": null}]},
				{"username": "o", "keys": [{"key": null, "hash": "` + hashOf(keyMark+"-o") + `"}]}
			]}`,
			consumers: []wantConsumer{{username: "n", id: "n"}, {username: "m", id: "m"}, {username: "o", id: "o"}},
			creds: []wantCred{
				{key: keyMark + "-m", id: "m#1", consumer: "m"},
				{key: keyMark + "-o", id: "o#1", consumer: "o"},
			},
			keys: 2,
		},
		{
			name:      "consumers without keys",
			doc:       `{"consumers": [{"username": "anon"}, {"username": "guest", "id": "g", "keys": []}]}`,
			consumers: []wantConsumer{{username: "anon", id: "anon"}, {username: "guest", id: "g"}},
		},
		{
			name: "several tags, empty tags array",
			doc: `{"consumers": [{"username": "t", "tags": ["a", "b", "a b", "a"]},
				{"username": "u", "tags": []}]}`,
			consumers: []wantConsumer{{username: "t", id: "t", tags: []string{"a", "b", "a b", "a"}}, {username: "u", id: "u"}},
		},
		{
			name: "unicode and escapes",
			doc: `{"consumers": [{"username": "José 日本", "id": "caf\u00e9\u65e5", "custom_id": "\ud83d\ude00x",
				"tags": ["\"\\\/\b\f\n\r\tx", "lone \ud800 high", "lone \udc00 low", "high then bmp \ud800\u0041"],
				"keys": [{"id": "😀", "key": "` + keyMark + `\"\\\/ \u0041\u00e9\uD83D\uDE00"},
				         {"key": "` + keyMark + `-ünïcödé-日本-😀"}]}]}`,
			consumers: []wantConsumer{{
				username: "José 日本", id: "café日", customID: "😀x",
				tags: []string{"\"\\/\b\f\n\r\tx", "lone \uFFFD high", "lone \uFFFD low", "high then bmp \uFFFDA"},
			}},
			creds: []wantCred{
				{key: keyMark + "\"\\/ Aé😀", id: "😀", consumer: "José 日本"},
				{key: keyMark + "-ünïcödé-日本-😀", id: "café日#2", consumer: "José 日本"},
			},
			keys: 2,
		},
		{
			name:      "escaped field names",
			doc:       `{"c\u006fnsumers": [{"user\u006eame": "e", "\u006beys": [{"\u006bey": "` + keyMark + `-e"}]}]}`,
			consumers: []wantConsumer{{username: "e", id: "e"}},
			creds:     []wantCred{{key: keyMark + "-e", id: "e#1", consumer: "e"}},
			keys:      1,
		},
		{
			name: "upper-case hex hash",
			doc: `{"consumers": [{"username": "h", "keys": [{"hash": "` +
				HashPrefix + strings.ToUpper(hashOf(keyMark + "-H")[len(HashPrefix):]) + `"}]}]}`,
			consumers: []wantConsumer{{username: "h", id: "h"}},
			creds:     []wantCred{{key: keyMark + "-H", id: "h#1", consumer: "h"}},
			keys:      1,
		},
		{
			name:      "a key of exactly MaxKeyLength bytes",
			doc:       `{"consumers": [{"username": "l", "keys": [{"key": "` + long + `"}]}]}`,
			consumers: []wantConsumer{{username: "l", id: "l"}},
			creds:     []wantCred{{key: long, id: "l#1", consumer: "l"}},
			keys:      1,
		},
		{
			name: "expiry: past, future, offsets, absent",
			doc: `{"consumers": [{"username": "x", "keys": [
				{"id": "past", "key": "` + keyMark + `-past", "expires_at": "2020-01-01T00:00:00Z"},
				{"id": "future", "key": "` + keyMark + `-future", "expires_at": "2030-01-01T00:00:00.5+02:00"},
				{"id": "offset-past", "key": "` + keyMark + `-op", "expires_at": "2026-06-01T13:59:59+02:00"},
				{"id": "offset-future", "key": "` + keyMark + `-of", "expires_at": "2026-06-01T12:00:01Z"},
				{"id": "epoch", "key": "` + keyMark + `-epoch", "expires_at": "1970-01-01T00:00:00Z"},
				{"id": "year-1", "key": "` + keyMark + `-y1", "expires_at": "0001-01-01T00:00:00Z"},
				{"id": "year-9999", "key": "` + keyMark + `-y9999", "expires_at": "9999-12-31T23:59:59Z"},
				{"id": "year-2500", "key": "` + keyMark + `-y2500", "expires_at": "2500-01-01T00:00:00Z"},
				{"id": "never", "key": "` + keyMark + `-never"}
			]}]}`,
			consumers: []wantConsumer{{username: "x", id: "x"}},
			creds: []wantCred{
				{key: keyMark + "-past", id: "past", consumer: "x", expires: true, expired: true},
				{key: keyMark + "-future", id: "future", consumer: "x", expires: true},
				{key: keyMark + "-op", id: "offset-past", consumer: "x", expires: true, expired: true},
				{key: keyMark + "-of", id: "offset-future", consumer: "x", expires: true},
				{key: keyMark + "-epoch", id: "epoch", consumer: "x", expires: true, expired: true},
				{key: keyMark + "-y1", id: "year-1", consumer: "x", expires: true, expired: true},
				{key: keyMark + "-y9999", id: "year-9999", consumer: "x", expires: true},
				{key: keyMark + "-y2500", id: "year-2500", consumer: "x", expires: true},
				{key: keyMark + "-never", id: "never", consumer: "x"},
			},
			keys: 9,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.doc)
			nc, nk := s.Len()
			if nc != len(tt.consumers) || nk != tt.keys {
				t.Fatalf("Len() = %d, %d; want %d, %d", nc, nk, len(tt.consumers), tt.keys)
			}
			for i, w := range tt.consumers {
				c := s.ConsumerAt(i)
				checkConsumer(t, c, w)
				if f, ok := s.FindConsumer(w.username); !ok || f.Index() != i {
					t.Errorf("FindConsumer(%q) = %d, %v; want %d", w.username, f.Index(), ok, i)
				}
			}
			for _, w := range tt.creds {
				cr, ok := s.Lookup(digestOf(w.key))
				if !ok {
					t.Errorf("credential %q: key not found", w.id)
					continue
				}
				if cr.ID() != w.id {
					t.Errorf("credential id = %q, want %q", cr.ID(), w.id)
				}
				if u := cr.Consumer().Username(); u != w.consumer {
					t.Errorf("credential %q: consumer = %q, want %q", w.id, u, w.consumer)
				}
				if cr.Expires() != w.expires {
					t.Errorf("credential %q: Expires() = %v, want %v", w.id, cr.Expires(), w.expires)
				}
				if got := cr.ExpiredAt(testNow); got != w.expired {
					t.Errorf("credential %q: ExpiredAt(%s) = %v, want %v", w.id, testNow, got, w.expired)
				}
			}
			if _, ok := s.Lookup(digestOf(keyMark + "-not-in-any-document")); ok {
				t.Error("an unknown key was found")
			}
		})
	}
}

func checkConsumer(t *testing.T, c Consumer, w wantConsumer) {
	t.Helper()
	if c.Username() != w.username || c.ID() != w.id || c.CustomID() != w.customID {
		t.Errorf("consumer = {%q %q %q}, want {%q %q %q}",
			c.Username(), c.ID(), c.CustomID(), w.username, w.id, w.customID)
	}
	if !slices.Equal(c.Tags(), w.tags) {
		t.Errorf("consumer %q: tags = %q, want %q", w.username, c.Tags(), w.tags)
	}
}

// TestParseExactSize checks the claim that the second pass fills arrays of
// exactly the size the first pass counted.
func TestParseExactSize(t *testing.T) {
	doc := []byte(`{"consumers": [
		{"username": "a", "id": "a-id", "custom_id": "ca", "tags": ["t1", "t2"],
		 "keys": [{"key": "` + keyMark + `1"}, {"id": "named", "key": "` + keyMark + `2"}]},
		{"username": "b", "id": "b", "keys": [{"hash": "` + hashOf(keyMark+"3") + `"}]},
		{"username": "c"}]}`)
	var b builder
	if err := (&parser{data: doc, b: &b}).document(); err != nil {
		t.Fatal(err)
	}
	nArena, nCred := b.nArena, b.nCredentials
	s, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.arena) != nArena {
		t.Errorf("arena holds %d bytes, the first pass counted %d", len(s.arena), nArena)
	}
	if len(s.credentials) != nCred || cap(s.credentials) != nCred {
		t.Errorf("credentials: len %d cap %d, want %d", len(s.credentials), cap(s.credentials), nCred)
	}
	if len(s.consumers) != cap(s.consumers) || len(s.tags) != cap(s.tags) {
		t.Errorf("consumers or tags have slack: %d/%d, %d/%d",
			len(s.consumers), cap(s.consumers), len(s.tags), cap(s.tags))
	}
}

func TestParseRefused(t *testing.T) {
	h := hashOf(keyMark + "-h")
	k := func(name string) string { return keyMark + "-" + name }
	// one wraps a consumer's fields in a document.
	one := func(fields string) string { return `{"consumers": [{` + fields + `}]}` }
	tests := []struct {
		name string
		doc  string
		// line and column of a syntax error; 0 for an error that is not one.
		line, col int
		want      []string // substrings of the error
		notWant   []string
	}{
		// Invalid JSON, with line and column.
		{name: "empty document", doc: "", line: 1, col: 1,
			want: []string{"unexpected end of document", "expected the document"}},
		{name: "UTF-8 byte order mark", doc: "\xef\xbb\xbf{\"consumers\": []}", line: 1, col: 1,
			want: []string{"UTF-8 byte order mark", "without one"}},
		{name: "UTF-16 byte order mark", doc: "\xff\xfe{\x00}\x00", line: 1, col: 1,
			want: []string{"UTF-16", "UTF-8"}},
		{name: "only white space", doc: "\n\n  ", line: 3, col: 3,
			want: []string{"unexpected end of document"}},
		{name: "consumers null", doc: `{"consumers": null}`, line: 1, col: 2,
			want: []string{`"consumers" is null`}},
		{name: "not an object", doc: `[]`, line: 1, col: 1,
			want: []string{"expected the document (an object)"}},
		{name: "truncated after a key", doc: `{"consumers": [{"username": "bob", "keys": [{"key": "` + k("trunc") + `"`,
			line: 1, col: 67, want: []string{"unexpected end of document"}},
		{name: "truncated in a string", doc: "{\"consumers\": [{\"username\": \"bob\", \"keys\": [{\"key\": \"" + k("trunc"),
			line: 1, col: 66, want: []string{"unexpected end of document in a string"}},
		{name: "truncated in an escape", doc: `{"consumers": [{"username": "b\`,
			line: 1, col: 31, want: []string{"unexpected end of document in a string"}},
		{name: "truncated in a \\u escape", doc: `{"consumers": [{"username": "b\u00`,
			line: 1, col: 31, want: []string{`invalid \u escape`}},
		{name: "truncated after the last consumer", doc: "{\"consumers\": [\n{\"username\": \"a\"}\n",
			line: 3, col: 1, want: []string{"unexpected end of document", `in "consumers"`}},
		{name: "trailing garbage", doc: `{"consumers": []} x`, line: 1, col: 19,
			want: []string{"unexpected data after the document"}},
		{name: "two documents", doc: "{\"consumers\": []}\n{\"consumers\": []}", line: 2, col: 1,
			want: []string{"unexpected data after the document"}},
		{name: "trailing key after the document", doc: `{"consumers": []}"` + k("after") + `"`, line: 1, col: 18,
			want: []string{"unexpected data after the document"}},
		{name: "bad escape in a key", doc: one(`"username": "bob", "keys": [{"key": "` + k("esc") + `\x"}]`),
			line: 1, col: 64, want: []string{"invalid escape in string"}},
		{name: "bad \\u escape", doc: one(`"username": "b\u12G4"`), line: 1, col: 31,
			want: []string{`invalid \u escape in string`}},
		{name: "bad \\u escape after a high surrogate", doc: one(`"username": "b\ud800\u12"`), line: 1, col: 37,
			want: []string{`invalid \u escape in string`}},
		{name: "control character in a key", doc: one("\"username\": \"bob\", \"keys\": [{\"key\": \"" + k("ctl") + "\tx\"}]"),
			line: 1, col: 64, want: []string{"control character in string"}},
		{name: "newline in a string", doc: "{\"consumers\": [{\"username\": \"b\nob\"}]}",
			line: 1, col: 31, want: []string{"control character in string"}},
		{name: "control character after an escape", doc: one("\"username\": \"b\\n\x01\""),
			line: 1, col: 33, want: []string{"control character in string"}},
		{name: "invalid UTF-8 in a username", doc: one("\"username\": \"b\xffob\""), line: 1, col: 31,
			want: []string{"invalid UTF-8 in string"}},
		{name: "invalid UTF-8 in a key", doc: one("\"username\": \"bob\", \"keys\": [{\"key\": \"" + k("utf") + "\xc3\x28\"}]"),
			line: 1, col: 64, want: []string{"invalid UTF-8 in string"}},
		{name: "truncated UTF-8 sequence", doc: one("\"username\": \"\xe6\x97\""), line: 1, col: 30,
			want: []string{"invalid UTF-8 in string"}},
		{name: "missing comma between fields", doc: "{\"consumers\": [\n  {\"username\": \"a\"\n   \"keys\": []}]}",
			line: 3, col: 4, want: []string{"expected ',' or '}' in consumer #1"}},
		{name: "missing comma between consumers", doc: "{\"consumers\": [\n{\"username\": \"a\"}\n{\"username\": \"b\"}]}",
			line: 3, col: 1, want: []string{`expected ',' or ']' in "consumers"`}},
		{name: "missing comma between keys", doc: one(`"username": "a", "keys": [{"key": "` + k("1") + `"} {"key": "` + k("2") + `"}]`),
			line: 1, col: 63, want: []string{"expected ',' or ']' in keys"}},
		{name: "missing colon", doc: `{"consumers" []}`, line: 1, col: 14,
			want: []string{"expected ':' after a field name"}},
		{name: "trailing comma in an object", doc: one(`"username": "a",`), line: 1, col: 33,
			want: []string{"expected a field name (a string)"}},
		{name: "trailing comma in an array", doc: `{"consumers": [{"username": "a"},]}`, line: 1, col: 34,
			want: []string{"expected consumer #2 (an object)"}},
		{name: "unquoted field name", doc: one(`username: "a"`), line: 1, col: 17,
			want: []string{"expected a field name (a string)"}},
		{name: "single quotes", doc: one(`"username": 'a'`), line: 1, col: 29,
			want: []string{"expected username (a string)"}},
		{name: "a number for a username", doc: one(`"username": 7`), line: 1, col: 29,
			want: []string{"expected username (a string)"}},
		{name: "a bare key", doc: one(`"username": "a", "keys": [{"key": ` + k("bare") + `}]`), line: 1, col: 51,
			want: []string{"expected key (a string)"}},
		{name: "an object for consumers", doc: `{"consumers": {}}`, line: 1, col: 15,
			want: []string{`expected "consumers" (an array)`}},
		{name: "a string for a consumer", doc: `{"consumers": ["bob"]}`, line: 1, col: 16,
			want: []string{"expected consumer #1 (an object)"}},
		{name: "a string for tags", doc: one(`"username": "a", "tags": "t"`), line: 1, col: 42,
			want: []string{"expected tags (an array)"}},
		{name: "a number as a tag", doc: one(`"username": "a", "tags": ["t", 1]`), line: 1, col: 48,
			want: []string{"expected a tag (a string)"}},
		{name: "null as a tag", doc: one(`"username": "a", "tags": [null]`), line: 1, col: 43,
			want: []string{"expected a tag (a string)"}},
		{name: "a string for keys", doc: one(`"username": "a", "keys": "` + k("str") + `"`), line: 1, col: 42,
			want: []string{"expected keys (an array)"}},
		{name: "a string for a credential", doc: one(`"username": "a", "keys": ["` + k("str") + `"]`), line: 1, col: 43,
			want: []string{"expected key #1 of consumer #1 (an object)"}},
		{name: "nullx", doc: one(`"username": nullx`), line: 1, col: 33,
			want: []string{"expected ',' or '}' in consumer #1"}},
		{name: "a later line", doc: "{\"consumers\": [\n  {\"username\": \"a\"},\n  {\"username\": \"b\", \"keys\": [\n    {\"key\": \"" + k("x") + "\\q\"}]}]}",
			line: 4, col: 22, want: []string{"invalid escape in string"}},

		// Structure.
		{name: "missing consumers", doc: `{}`, line: 1, col: 1,
			want: []string{`the document has no "consumers" field`}},
		{name: "unknown field in the document", doc: `{"consumers": [], "Zorglub_top": 1}`, line: 1, col: 19,
			want: []string{"unknown field in the document"}, notWant: []string{"Zorglub"}},
		{name: "unknown field before consumers", doc: `{"Zorglub_top": "` + k("top") + `", "consumers": []}`, line: 1, col: 2,
			want: []string{"unknown field in the document"}, notWant: []string{"Zorglub"}},
		{name: "unknown field in a consumer", doc: one(`"username": "a", "Zorglub_consumer": "x"`), line: 1, col: 34,
			want: []string{"unknown field in consumer #1"}, notWant: []string{"Zorglub"}},
		{name: "unknown field in a credential holding a key", doc: one(`"username": "a", "keys": [{"id": "c1"}, {"Zorglub_` + k("field") + `": "` + k("value") + `"}]`),
			line: 1, col: 58, want: []string{"unknown field in key #2 of consumer #1"}, notWant: []string{"Zorglub"}},
		{name: "a misspelt field", doc: one(`"username": "a", "keys": [{"api_key": "` + k("misspelt") + `"}]`), line: 1, col: 44,
			want: []string{"unknown field in key #1 of consumer #1"}, notWant: []string{"api_key"}},
		{name: "field names are case-sensitive", doc: one(`"Username": "a"`), line: 1, col: 17,
			want: []string{"unknown field in consumer #1"}, notWant: []string{"Username"}},
		{name: "consumers twice", doc: `{"consumers": [], "consumers": []}`, line: 1, col: 19,
			want: []string{`"consumers" given twice`}},
		{name: "username twice", doc: one(`"username": "a", "username": "b"`), line: 1, col: 34,
			want: []string{"field username given twice in consumer #1"}},
		{name: "username twice, once null", doc: one(`"username": null, "username": "b"`), line: 1, col: 35,
			want: []string{"field username given twice in consumer #1"}},
		{name: "keys twice", doc: one(`"username": "a", "keys": [], "keys": []`), line: 1, col: 46,
			want: []string{"field keys given twice in consumer #1"}},
		{name: "key twice in a credential", doc: one(`"username": "a", "keys": [{"key": "` + k("1") + `", "key": "` + k("2") + `"}]`),
			line: 1, col: 63, want: []string{"field key given twice in key #1 of consumer #1"}},
		{name: "expires_at twice", doc: one(`"username": "a", "keys": [{"key": "` + k("1") + `", "expires_at": null, "expires_at": null}]`),
			line: 1, col: 83, want: []string{"field expires_at given twice in key #1 of consumer #1"}},

		// Consumers.
		{name: "missing username", doc: one(`"id": "x", "keys": [{"key": "` + k("nouser") + `"}]`),
			want: []string{"line 1: consumer #1 has no username"}},
		{name: "null username", doc: `{"consumers": [{"username": "a"}, {"username": null}]}`,
			want: []string{"consumer #2 has no username"}},
		{name: "empty username", doc: "{\"consumers\": [\n{\"username\": \"a\"},\n{\"username\": \"\"}]}",
			want: []string{"line 3: consumer #2 has no username"}},
		{name: "duplicate username", doc: "{\"consumers\": [\n{\"username\": \"bob\", \"id\": \"1\"},\n{\"username\": \"carol\"},\n{\"username\": \"bob\", \"id\": \"2\"}]}",
			want: []string{`line 4: consumer "bob" is listed twice (consumers #1 and #3)`}},
		{name: "duplicate username written differently", doc: `{"consumers": [{"username": "bob"}, {"username": "b\u006fb", "id": "2"}]}`,
			want: []string{`consumer "bob" is listed twice`}},
		{name: "duplicate consumer id", doc: `{"consumers": [{"username": "a", "id": "x"}, {"username": "b", "id": "x"}]}`,
			want: []string{`consumer "b" has id "x", already the id of consumer "a"`}},
		{name: "an id equal to another's username", doc: `{"consumers": [{"username": "a"}, {"username": "b", "id": "a"}]}`,
			want: []string{`consumer "b" has id "a", already the id of consumer "a"`}},
		{name: "a username equal to another's id", doc: `{"consumers": [{"username": "a", "id": "b"}, {"username": "b"}]}`,
			want: []string{`consumer "b" has id "b", already the id of consumer "a"`}},
		{name: "empty consumer id", doc: one(`"username": "a", "id": ""`),
			want: []string{`consumer "a" has an empty id`}},

		// Credentials.
		{name: "empty key", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("ok") + `"}, {"id": "c2", "key": ""}]`),
			want: []string{`consumer "bob", credential "c2" has an empty key`}},
		{name: "empty key without an id", doc: one(`"username": "bob", "keys": [{"key": "` + k("ok") + `"}, {"key": ""}]`),
			want: []string{`consumer "bob", key #2 has an empty key`}},
		{name: "both key and hash", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("both") + `", "hash": "` + h + `"}]`),
			want: []string{`consumer "bob", credential "c1" has both key and hash`}},
		{name: "both key and hash, hash first", doc: one(`"username": "bob", "keys": [{"hash": "` + h + `", "key": "` + k("both") + `"}]`),
			want: []string{`consumer "bob", key #1 has both key and hash`}},
		{name: "neither key nor hash", doc: one(`"username": "bob", "keys": [{"id": "c1"}]`),
			want: []string{`consumer "bob", credential "c1" has neither key nor hash`}},
		{name: "an empty credential", doc: one(`"username": "bob", "keys": [{}]`),
			want: []string{`consumer "bob", key #1 has neither key nor hash`}},
		{name: "key and hash null", doc: one(`"username": "bob", "keys": [{"key": null, "hash": null}]`),
			want: []string{`consumer "bob", key #1 has neither key nor hash`}},
		{name: "empty credential id", doc: one(`"username": "bob", "keys": [{"id": "", "key": "` + k("x") + `"}]`),
			want: []string{`consumer "bob", credential "" has an empty id`}},
		{name: "key longer than MaxKeyLength", doc: one(`"username": "bob", "keys": [{"id": "long", "key": "` + keyMark + strings.Repeat("k", MaxKeyLength+1-len(keyMark)) + `"}]`),
			want: []string{`consumer "bob", credential "long" has a key longer than 4096 bytes`}},
		{name: "key longer than MaxKeyLength once unescaped", doc: one(`"username": "bob", "keys": [{"key": "` + keyMark + strings.Repeat(`\u00e9`, MaxKeyLength/2) + `"}]`),
			want: []string{`consumer "bob", key #1 has a key longer than 4096 bytes`}},
		{name: "hash with a wrong prefix", doc: one(`"username": "bob", "keys": [{"id": "c1", "hash": "sha1:` + h[len(HashPrefix):] + `"}]`),
			want: []string{`consumer "bob", credential "c1" has a malformed hash (want "sha256:" and 64 hex digits)`}},
		{name: "hash with an upper-case prefix", doc: one(`"username": "bob", "keys": [{"id": "c1", "hash": "SHA256:` + h[len(HashPrefix):] + `"}]`),
			want: []string{`credential "c1" has a malformed hash`}},
		{name: "hash without a prefix", doc: one(`"username": "bob", "keys": [{"id": "c1", "hash": "` + h[len(HashPrefix):] + `"}]`),
			want: []string{`credential "c1" has a malformed hash`}},
		{name: "hash too short", doc: one(`"username": "bob", "keys": [{"id": "c1", "hash": "` + h[:len(h)-1] + `"}]`),
			want: []string{`credential "c1" has a malformed hash`}},
		{name: "hash too long", doc: one(`"username": "bob", "keys": [{"id": "c1", "hash": "` + h + `0"}]`),
			want: []string{`credential "c1" has a malformed hash`}},
		{name: "hash with a non-hex digit", doc: one(`"username": "bob", "keys": [{"id": "c1", "hash": "` + h[:len(h)-1] + `g"}]`),
			want: []string{`credential "c1" has a malformed hash`}},
		{name: "hash holding a plain key", doc: one(`"username": "bob", "keys": [{"id": "c1", "hash": "sha256:` + k("plain") + `"}]`),
			want: []string{`credential "c1" has a malformed hash`}},
		{name: "empty hash", doc: one(`"username": "bob", "keys": [{"id": "c1", "hash": ""}]`),
			want: []string{`credential "c1" has a malformed hash`}},
		{name: "expires_at a date only", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("e") + `", "expires_at": "2027-01-01"}]`),
			want: []string{`consumer "bob", credential "c1" has an expires_at that is not an RFC 3339 time`}},
		{name: "expires_at without a zone", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("e") + `", "expires_at": "2027-01-01T00:00:00"}]`),
			want: []string{`credential "c1" has an expires_at that is not an RFC 3339 time`}},
		{name: "expires_at month 13", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("e") + `", "expires_at": "2027-13-01T00:00:00Z"}]`),
			want: []string{`credential "c1" has an expires_at that is not an RFC 3339 time`}},
		{name: "expires_at empty", doc: one(`"username": "bob", "keys": [{"key": "` + k("e") + `", "expires_at": ""}]`),
			want: []string{`consumer "bob", key #1 has an expires_at that is not an RFC 3339 time`}},
		{name: "expires_at a number", doc: one(`"username": "bob", "keys": [{"key": "` + k("e") + `", "expires_at": 1767225600}]`),
			line: 1, col: 79, want: []string{"expected expires_at (a string)"}},
		{name: "expires_at on a hashed key", doc: one(`"username": "bob", "keys": [{"id": "c1", "hash": "` + h + `", "expires_at": "soon"}]`),
			want: []string{`credential "c1" has an expires_at that is not an RFC 3339 time`}},

		// Previous secrets (rolled credentials).
		{name: "a string for previous", doc: one(`"username": "bob", "keys": [{"key": "` + k("p") + `", "previous": "` + h + `"}]`),
			line: 1, col: 77, want: []string{"expected previous (an array)"}},
		{name: "a string for a previous secret", doc: one(`"username": "bob", "keys": [{"key": "` + k("p") + `", "previous": ["` + h + `"]}]`),
			line: 1, col: 78, want: []string{"expected previous secret #1 of key #1 of consumer #1 (an object)"}},
		{name: "null for a previous secret", doc: one(`"username": "bob", "keys": [{"key": "` + k("p") + `", "previous": [null]}]`),
			line: 1, col: 78, want: []string{"expected previous secret #1 of key #1 of consumer #1 (an object)"}},
		{name: "unknown field in a previous secret", doc: one(`"username": "bob", "keys": [{"key": "` + k("p") + `", "previous": [{"hash": "` + h + `", "expires_at": "2030-01-01T00:00:00Z", "key": "` + k("old") + `"}]}]`),
			line: 1, col: 200, want: []string{"unknown field in previous secret #1 of key #1 of consumer #1 (fields: hash, expires_at)"}},
		{name: "hash twice in a previous secret", doc: one(`"username": "bob", "keys": [{"key": "` + k("p") + `", "previous": [{"hash": "` + h + `", "hash": "` + h + `"}]}]`),
			line: 1, col: 162, want: []string{"field hash given twice in previous secret #1 of key #1 of consumer #1"}},
		{name: "previous secret without a hash", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("p") + `", "previous": [{"expires_at": "2030-01-01T00:00:00Z"}]}]`),
			want: []string{`consumer "bob", credential "c1": previous secret #1 has no hash`}},
		{name: "previous secret with a null hash", doc: one(`"username": "bob", "keys": [{"key": "` + k("p") + `", "previous": [{"hash": null, "expires_at": "2030-01-01T00:00:00Z"}]}]`),
			want: []string{`consumer "bob", key #1: previous secret #1 has no hash`}},
		{name: "previous secret with a malformed hash", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("p") + `", "previous": [
			{"hash": "` + hashOf(k("old1")) + `", "expires_at": "2030-01-01T00:00:00Z"}, {"hash": "` + h[:len(h)-1] + `", "expires_at": "2030-01-01T00:00:00Z"}]}]`),
			want: []string{`consumer "bob", credential "c1": previous secret #2 has a malformed hash (want "sha256:" and 64 hex digits)`}},
		{name: "previous secret holding a plain key", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("p") + `", "previous": [{"hash": "` + k("plain") + `", "expires_at": "2030-01-01T00:00:00Z"}]}]`),
			want: []string{`credential "c1": previous secret #1 has a malformed hash`}},
		{name: "previous secret with an empty hash", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("p") + `", "previous": [{"hash": "", "expires_at": "2030-01-01T00:00:00Z"}]}]`),
			want: []string{`credential "c1": previous secret #1 has a malformed hash`}},
		{name: "previous secret without expires_at", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("p") + `", "previous": [{"hash": "` + h + `"}]}]`),
			want: []string{`consumer "bob", credential "c1": previous secret #1 has no expires_at (a previous secret always expires)`}},
		{name: "previous secret with a null expires_at", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("p") + `", "previous": [{"hash": "` + h + `", "expires_at": null}]}]`),
			want: []string{`credential "c1": previous secret #1 has no expires_at`}},
		{name: "previous secret with an expires_at that is not a time", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("p") + `", "previous": [{"hash": "` + h + `", "expires_at": "2030-01-01"}]}]`),
			want: []string{`consumer "bob", credential "c1": previous secret #1 has an expires_at that is not an RFC 3339 time`}},
		{name: "previous secret with an empty expires_at", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("p") + `", "previous": [{"hash": "` + h + `", "expires_at": ""}]}]`),
			want: []string{`credential "c1": previous secret #1 has an expires_at that is not an RFC 3339 time`}},
		{name: "a canary with previous secrets", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("p") + `", "canary": true, "previous": [{"hash": "` + h + `", "expires_at": "2030-01-01T00:00:00Z"}]}]`),
			want: []string{`consumer "bob", credential "c1" is a canary and cannot have previous secrets`}},
		{name: "a previous secret equal to its credential's key", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("h") + `", "previous": [{"hash": "` + h + `", "expires_at": "2030-01-01T00:00:00Z"}]}]`),
			want: []string{`consumer "bob", credential "c1": previous secret #1 has the same key as consumer "bob", credential "c1"`}},
		{name: "one previous secret twice", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("p") + `", "previous": [{"hash": "` + h + `", "expires_at": "2030-01-01T00:00:00Z"},
			{"hash": "` + HashPrefix + strings.ToUpper(h[len(HashPrefix):]) + `", "expires_at": "2031-01-01T00:00:00Z"}]}]`),
			want: []string{`consumer "bob", credential "c1": previous secret #2 has the same key as a previous secret of consumer "bob", credential "c1"`}},
		{name: "a previous secret equal to another consumer's key", doc: `{"consumers": [{"username": "a", "keys": [{"id": "k-a", "key": "` + k("h") + `"}]},
			{"username": "b", "keys": [{"id": "k-b", "key": "` + k("b") + `", "previous": [{"hash": "` + h + `", "expires_at": "2030-01-01T00:00:00Z"}]}]}]}`,
			want: []string{`consumer "b", credential "k-b": previous secret #1 has the same key as consumer "a", credential "k-a"`}},
		{name: "a key equal to another consumer's previous secret", doc: `{"consumers": [{"username": "a", "keys": [{"id": "k-a", "key": "` + k("a") + `", "previous": [{"hash": "` + h + `", "expires_at": "2030-01-01T00:00:00Z"}]}]},
			{"username": "b", "keys": [{"id": "k-b", "key": "` + k("h") + `"}]}]}`,
			want: []string{`consumer "b", credential "k-b" has the same key as a previous secret of consumer "a", credential "k-a"`}},
		{name: "a previous secret equal to a later key of its consumer", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("p") + `", "previous": [{"hash": "` + h + `", "expires_at": "2030-01-01T00:00:00Z"}]},
			{"id": "c2", "hash": "` + h + `"}]`),
			want: []string{`consumer "bob", credential "c1": previous secret #1 has the same key as consumer "bob", credential "c2"`}},

		// Across credentials and consumers.
		{name: "one key twice in a consumer", doc: one(`"username": "bob", "keys": [{"id": "c1", "key": "` + k("dup") + `"}, {"id": "c2", "key": "` + k("dup") + `"}]`),
			want: []string{`consumer "bob", credential "c2" has the same key as consumer "bob", credential "c1"`}},
		{name: "one key on two consumers", doc: "{\"consumers\": [\n{\"username\": \"a\", \"keys\": [{\"key\": \"" + k("dup") + "\"}]},\n{\"username\": \"b\", \"keys\": [{\"id\": \"b-1\", \"key\": \"" + k("dup") + "\"}]}]}",
			want: []string{`line 3: consumer "b", credential "b-1" has the same key as consumer "a", credential "a#1"`}},
		{name: "a plain and a hashed copy of one key", doc: `{"consumers": [{"username": "a", "keys": [{"id": "plain", "key": "` + k("h") + `"}]},
			{"username": "b", "keys": [{"id": "hashed", "hash": "` + h + `"}]}]}`,
			want: []string{`consumer "b", credential "hashed" has the same key as consumer "a", credential "plain"`}},
		{name: "a hashed and a plain copy of one key", doc: `{"consumers": [{"username": "a", "keys": [{"id": "hashed", "hash": "` + h + `"}]},
			{"username": "b", "keys": [{"id": "plain", "key": "` + k("h") + `"}]}]}`,
			want: []string{`consumer "b", credential "plain" has the same key as consumer "a", credential "hashed"`}},
		{name: "one hash in lower and upper case", doc: `{"consumers": [{"username": "a", "keys": [{"id": "lower", "hash": "` + h + `"}]},
			{"username": "b", "keys": [{"id": "upper", "hash": "` + HashPrefix + strings.ToUpper(h[len(HashPrefix):]) + `"}]}]}`,
			want: []string{`consumer "b", credential "upper" has the same key as consumer "a", credential "lower"`}},
		{name: "duplicate explicit credential ids", doc: `{"consumers": [{"username": "a", "keys": [{"id": "cred", "key": "` + k("1") + `"}]},
			{"username": "b", "keys": [{"id": "cred", "key": "` + k("2") + `"}]}]}`,
			want: []string{`consumer "b", credential "cred": credential id "cred" is already used by consumer "a", credential "cred"`}},
		{name: "explicit id taken by a derived one", doc: `{"consumers": [{"username": "a", "keys": [{"key": "` + k("1") + `"}]},
			{"username": "b", "keys": [{"id": "a#1", "key": "` + k("2") + `"}]}]}`,
			want: []string{`consumer "b", credential "a#1": credential id "a#1" is already used by consumer "a", credential "a#1"`}},
		{name: "derived id taken by an explicit one", doc: `{"consumers": [{"username": "a", "keys": [{"id": "b#2", "key": "` + k("1") + `"}]},
			{"username": "b", "keys": [{"key": "` + k("2") + `"}, {"key": "` + k("3") + `"}]}]}`,
			want: []string{`consumer "b", key #2: credential id "b#2" is already used by consumer "a", credential "b#2"`}},
		{name: "derived id taken within a consumer", doc: one(`"username": "a", "keys": [{"id": "a#2", "key": "` + k("1") + `"}, {"key": "` + k("2") + `"}]`),
			want: []string{`consumer "a", key #2: credential id "a#2" is already used by consumer "a", credential "a#2"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.doc))
			if err == nil {
				c, k := s.Len()
				t.Fatalf("Parse accepted the document (%d consumers, %d keys)\ndocument: %s", c, k, tt.doc)
			}
			buildAgrees(t, []byte(tt.doc), err)
			msg := err.Error()
			var se *SyntaxError
			if tt.line > 0 {
				if !errors.As(err, &se) {
					t.Fatalf("error %q is not a *SyntaxError", msg)
				}
				if se.Line != tt.line || se.Column != tt.col {
					t.Errorf("error at line %d, column %d; want line %d, column %d (%q)", se.Line, se.Column, tt.line, tt.col, msg)
				}
				if !strings.HasPrefix(msg, fmt.Sprintf("line %d, column %d: ", tt.line, tt.col)) {
					t.Errorf("error %q does not start with its position", msg)
				}
			} else {
				if errors.As(err, &se) {
					t.Errorf("error %q is a *SyntaxError", msg)
				}
				if !regexp.MustCompile(`^line \d+: `).MatchString(msg) {
					t.Errorf("error %q does not give the consumer's line", msg)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(msg, w) {
					t.Errorf("error %q contains %q", msg, w)
				}
			}
			assertNoKeyMaterial(t, msg, tt.doc)
			if strings.HasSuffix(msg, ".") || msg != strings.TrimSpace(msg) {
				t.Errorf("error %q ends with punctuation or space", msg)
			}
		})
	}
}

// TestParseRefusedNeverQuotesDocument runs a broken document through every
// truncation: none of the errors may hold a key, and none may panic.
func TestParseRefusedNeverQuotesDocument(t *testing.T) {
	doc := `{"consumers": [
  {"username": "bob", "id": "b0b-1", "custom_id": "cust-42", "tags": ["partner"],
   "keys": [
     {"id": "bob-laptop", "key": "` + keyMark + `-laptop-\u00e9\ud83d\ude00"},
     {"id": "bob-ci", "hash": "` + hashOf(keyMark+"-ci") + `", "expires_at": "2027-01-01T00:00:00Z"}
   ]},
  {"username": "carol", "keys": [{"key": "` + keyMark + `-carol"}]}
]}`
	mustParse(t, doc)
	for i := range len(doc) {
		_, err := Parse([]byte(doc[:i]))
		if err == nil {
			t.Fatalf("a document truncated to %d bytes was accepted", i)
		}
		assertNoKeyMaterial(t, err.Error(), doc)
	}
	// Each byte replaced by one that breaks the document somewhere.
	for i := range len(doc) {
		for _, c := range []byte{'"', '\\', '}', 0x01, 0xff} {
			b := []byte(doc)
			b[i] = c
			if _, err := Parse(b); err != nil {
				assertNoKeyMaterial(t, err.Error(), doc)
			}
		}
	}
}

// realisticDocument is a consumers document as a key-management tool would
// write it: ASCII names and ids, random hex keys, half of them hashed.
func realisticDocument(n int) []byte {
	r := rand.New(rand.NewPCG(3, 4))
	var buf bytes.Buffer
	buf.WriteString("{\"consumers\": [\n")
	var raw [16]byte
	for i := range n {
		if i > 0 {
			buf.WriteString(",\n")
		}
		fmt.Fprintf(&buf, `  {"username": "user-%d", "id": "%08x-%04x", "custom_id": "cust-%d", "tags": ["plan-%d"], "keys": [`,
			i, r.Uint32(), r.Uint32()&0xffff, i, i%5)
		for j := range 1 + i%2 {
			if j > 0 {
				buf.WriteString(", ")
			}
			for k := range raw {
				raw[k] = byte(r.Uint32())
			}
			key := hex.EncodeToString(raw[:])
			if (i+j)%2 == 0 {
				fmt.Fprintf(&buf, `{"id": "user-%d-%d", "key": "%s"}`, i, j, key)
			} else {
				fmt.Fprintf(&buf, `{"id": "user-%d-%d", "hash": "%s", "expires_at": "2030-01-01T00:00:00Z"}`, i, j, hashOf(key))
			}
		}
		buf.WriteString("]}")
	}
	buf.WriteString("\n]}\n")
	return buf.Bytes()
}

func BenchmarkParse(b *testing.B) {
	doc := realisticDocument(100000)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseEscaped parses a document full of escapes and multi-byte
// UTF-8, which take the parser's slow path.
func BenchmarkParseEscaped(b *testing.B) {
	doc, _, _ := genDocument(rand.New(rand.NewPCG(5, 6)), 100000)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParse checks that no document makes Parse panic, that a document it
// accepts is valid JSON, and that the set it builds is consistent.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fmt.Sprintf(setDoc, hashOf(keyMark+"-bob-hashed"))))
	f.Add([]byte(`{"consumers": [{"username": "a\u00e9\ud83d\ude00", "keys": [{"key": "k\n", "expires_at": "2030-01-01T00:00:00Z"}]}]}`))
	f.Add([]byte(`{"consumers": [{"username": "a"}, {"username": "b", "id": "a"}]}`))
	f.Add([]byte(`{"consumers": null}`))
	f.Add(realisticDocument(3))
	f.Add([]byte(authzDoc))
	f.Fuzz(func(t *testing.T, doc []byte) {
		s, err := Parse(doc)
		if err != nil {
			if s != nil {
				t.Fatal("Parse returned a set with its error")
			}
			// No key of the document, however broken, is ever echoed. (A
			// string that also stands elsewhere in the document, as a
			// username or an id, may be named as such.)
			for _, k := range fuzzKeyValues(doc) {
				if len(k) >= 8 && strings.Count(string(doc), k) == 1 && strings.Contains(err.Error(), k) {
					t.Fatalf("error %q quotes a key of the document", err)
				}
			}
			return
		}
		if !json.Valid(doc) {
			t.Fatalf("Parse accepted invalid JSON: %q", doc)
		}
		n, _ := s.Len()
		for i := range n {
			c := s.ConsumerAt(i)
			if c.Username() == "" || c.ID() == "" {
				t.Fatalf("consumer #%d has an empty username or id", i+1)
			}
			if f, ok := s.FindConsumer(c.Username()); !ok || f.Index() != i {
				t.Fatalf("FindConsumer(username of #%d) = #%d, %v", i+1, f.Index()+1, ok)
			}
			// The joined strings agree with the lists they join.
			if c.GroupsHeader() != strings.Join(c.Groups(), ", ") || c.TagsJoined() != strings.Join(c.Tags(), ", ") {
				t.Fatalf("consumer #%d: a joined list differs from its items", i+1)
			}
			for _, g := range c.Groups() {
				if !c.InGroup(g) {
					t.Fatalf("consumer #%d: InGroup of one of its groups is false", i+1)
				}
			}
			for name, v := range c.Labels() {
				if got, ok := c.Label(name); !ok || got != v {
					t.Fatalf("consumer #%d: Label of one of its labels is wrong", i+1)
				}
			}
		}
	})
}

// fuzzKeyValues finds the values of "key" members in a document, broken or
// not: every string that follows "key" and a colon.
func fuzzKeyValues(doc []byte) []string {
	var keys []string
	rest := string(doc)
	for {
		i := strings.Index(rest, `"key"`)
		if i < 0 {
			return keys
		}
		rest = rest[i+5:]
		v := strings.TrimLeft(rest, " \t\r\n:")
		if !strings.HasPrefix(v, `"`) {
			continue
		}
		end := strings.IndexByte(v[1:], '"')
		if end < 0 {
			end = len(v) - 1
		}
		keys = append(keys, v[1:1+end])
	}
}

// benchDocument is n consumers shaped like bench/cmd/benchtool's; with
// authz, each also has two groups and two labels, as a tiered API would.
func benchDocument(n int, authz bool) []byte {
	var buf bytes.Buffer
	buf.WriteString("{\"consumers\": [\n")
	for i := range n {
		if i > 0 {
			buf.WriteString(",\n")
		}
		fmt.Fprintf(&buf, `{"username": "user-%d", "custom_id": "c-%d", `, i, i)
		if authz {
			buf.WriteString(`"groups": ["gold", "partner"], "labels": {"plan": "gold", "backend": "10.0.0.7:8080"}, `)
		}
		d := sha256.Sum256(fmt.Appendf(nil, "bench-%d", i))
		fmt.Fprintf(&buf, `"keys": [{"key": "%x"}]}`, d[:16])
	}
	buf.WriteString("\n]}\n")
	return buf.Bytes()
}

// BenchmarkParseShape parses 100,000 consumers without and with groups and
// labels, and reports the live heap of the Set per consumer (B/consumer),
// measured as bench/cmd/benchtool does: GC, parse, GC, with the document
// alive on both sides.
func BenchmarkParseShape(b *testing.B) {
	const n = 100000
	for _, authz := range []bool{false, true} {
		b.Run(fmt.Sprintf("groups_and_labels=%v", authz), func(b *testing.B) {
			doc := benchDocument(n, authz)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			s, err := Parse(doc)
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			live := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
			runtime.KeepAlive(s)
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := Parse(doc); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(live, "B/consumer")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/consumer")
		})
	}
}

// TestParseRefusesUnsendableKeys: a key that is blank, has whitespace at an
// edge or holds a control character can never be sent as stored (header
// values are trimmed, "+" in a query is a space), so it is refused at load
// with an error naming the consumer and the credential, never the key.
func TestParseRefusesUnsendableKeys(t *testing.T) {
	for _, tc := range []struct {
		name, key, fault string
	}{
		{"a space", " ", "is blank"},
		{"a tab", "\t", "is blank"},
		{"spaces and a newline", "  \n ", "is blank"},
		{"NBSP only", "\u00a0", "is blank"},
		{"leading space", " edged-key-" + keyMark, "begins with whitespace"},
		{"trailing tab", "edged-key-" + keyMark + "\t", "ends with whitespace"},
		{"trailing CR LF", keyMark + "-edged\r\n", "ends with whitespace"},
		{"leading NBSP", "\u00a0" + keyMark + "-nbsp", "begins with whitespace"},
		{"trailing ideographic space", keyMark + "-wide\u3000", "ends with whitespace"},
		{"NUL inside", keyMark + "-nul\x00inside", "contains a control character"},
		{"DEL inside", keyMark + "-del\x7finside", "contains a control character"},
		{"tab inside", keyMark + "-tab\tinside", "contains a control character"},
		{"C1 control inside", keyMark + "-c1\u0085inside", "contains a control character"},
		{"ESC inside", keyMark + "-esc\x1b[0m", "contains a control character"},
	} {
		quoted, _ := json.Marshal(tc.key)
		for _, cred := range []struct {
			field, want string
		}{
			{`"id": "cred-7", `, `consumer "alice", credential "cred-7": the key ` + tc.fault},
			{``, `consumer "alice", key #2 (credential "alice-id#2"): the key ` + tc.fault},
		} {
			doc := `{"consumers": [{"username": "alice", "id": "alice-id", "keys": [{"key": "` + keyMark + `-ok"}, {` +
				cred.field + `"key": ` + string(quoted) + `}]}]}`
			_, err := Parse([]byte(doc))
			if err == nil {
				t.Fatalf("%s: a document with the key %q was accepted", tc.name, tc.key)
			}
			msg := err.Error()
			if !strings.Contains(msg, cred.want) {
				t.Errorf("%s: error %q does not contain %q", tc.name, msg, cred.want)
			}
			if strings.Contains(msg, string(quoted)) || strings.Contains(msg, tc.key) && strings.TrimSpace(tc.key) != "" {
				t.Errorf("%s: error quotes the key: %q", tc.name, msg)
			}
			assertNoKeyMaterial(t, msg, doc)
		}
	}
}

func TestValidateKey(t *testing.T) {
	for _, key := range []string{"k", "alice-key-1", "sp ace+plus/slash=eq&amp%25", "caf\u00e9-\U0001f600", "a\u00a0b", strings.Repeat("x", MaxKeyLength)} {
		if err := ValidateKey(key); err != nil {
			t.Errorf("ValidateKey(%q): %v", key, err)
		}
	}
	for key, want := range map[string]string{
		"":               "the key is empty",
		" ":              "the key is blank (only whitespace)",
		"\t":             "the key is blank (only whitespace)",
		" edged-key":     "the key begins with whitespace",
		"edged-key\t":    "the key ends with whitespace",
		"edged-key\v":    "the key ends with whitespace",
		"in\x00side":     "the key contains a control character",
		"in\x7fside":     "the key contains a control character",
		"in\u009fside":   "the key contains a control character",
		"\x00edged":      "the key contains a control character",
		"\u2028edged":    "the key begins with whitespace",
		"edged\u202f":    "the key ends with whitespace",
		"in\nside-lines": "the key contains a control character",
	} {
		err := ValidateKey(key)
		if err == nil || err.Error() != want {
			t.Errorf("ValidateKey(%q) = %v, want %q", key, err, want)
		}
	}
}
