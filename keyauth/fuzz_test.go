package keyauth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/internal/cookieread"
)

// fuzzKeys are the keys of the fuzzing store: alice's, bob's (stored as a
// digest) and one that expired.
const (
	fuzzAliceKey   = "alice-fuzz-key-0001"
	fuzzBobKey     = "bob-fuzz-key-0002"
	fuzzExpiredKey = "expired-fuzz-key-0003"
)

var fuzzDoc = `{"consumers": [
 {"username": "alice", "id": "a-1", "custom_id": "c-1", "keys": [{"id": "alice-k", "key": "` + fuzzAliceKey + `"}]},
 {"username": "bob", "keys": [{"id": "bob-k", "hash": "sha256:` + fuzzDigest(fuzzBobKey) + `"},
   {"id": "old", "key": "` + fuzzExpiredKey + `", "expires_at": "2001-01-01T00:00:00Z"}]},
 {"username": "anon"}
]}`

// FuzzServeHTTP sends arbitrary requests (method, query, headers, content
// type, body) through handlers with every option combination and checks
// the contract's invariants: no panic, a defined status, an identity that
// belongs to a key the request carried, a hidden key really gone, and a
// body that reaches the upstream byte for byte unless a key was taken out.
func FuzzServeHTTP(f *testing.F) {
	seeds := []struct {
		method, query, headers, ctype string
		body                          []byte
		opts                          uint8
	}{
		{"GET", "apikey=" + fuzzAliceKey, "", "", nil, 0},
		{"GET", "", "Apikey: " + fuzzAliceKey, "", nil, 1},
		{"GET", "", "Authorization: Bearer " + fuzzBobKey, "", nil, 2},
		{"GET", "apikey=a&apikey=b", "", "", nil, 3},
		{"GET", "api%6B%65%79=" + fuzzAliceKey + "&x=1", "", "", nil, 4},
		{"GET", "apikey", "", "", nil, 5},
		{"GET", "", "Apikey: " + fuzzExpiredKey, "", nil, 6},
		{"POST", "", "", "application/json", []byte(`{"apikey": "` + fuzzAliceKey + `", "n": 1}`), 7},
		{"POST", "", "", "application/json", []byte(`{"apikey": ["a", "b"]}`), 8},
		{"POST", "", "", "application/json", []byte(strings.Repeat("[", 5000)), 9},
		{"POST", "", "", "application/json", []byte(`[{"apikey": "x"}]`), 10},
		{"POST", "", "", "application/x-www-form-urlencoded", []byte("a=1&apikey=" + fuzzAliceKey), 11},
		{"POST", "", "", "multipart/form-data; boundary=XX", []byte("--XX\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\n" + fuzzAliceKey + "\r\n--XX--\r\n"), 12},
		{"POST", "", "", "multipart/form-data; boundary=XX", []byte("--XX\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\n" + fuzzAliceKey), 13},
		{"OPTIONS", "", "Origin: x\nAccess-Control-Request-Method: GET", "", nil, 14},
		{"GET", "", "Api-Key: \x00\xff" + fuzzAliceKey, "", nil, 15},
		{"GET", "apikey=x", "Cookie: a=1; apikey=" + fuzzAliceKey + "; b=\"2\"", "", nil, 32 + 2},
		{"GET", "", "Cookie: apikey=" + fuzzAliceKey + "\nCookie: apikey=" + fuzzBobKey, "", nil, 32},
		{"POST", "", "Cookie: x=1 apikey=" + fuzzAliceKey + "; api_key =" + fuzzBobKey + "\nSec-Fetch-Site: cross-site", "", nil, 32 + 2},
		{"POST", "", "Cookie: apikey=" + fuzzAliceKey + "\nOrigin: http://x", "", nil, 64 + 32},
	}
	for _, s := range seeds {
		f.Add(s.method, s.query, s.headers, s.ctype, s.body, s.opts)
	}
	set, err := consumers.Parse([]byte(fuzzDoc))
	if err != nil {
		f.Fatal(err)
	}
	handlers := make([]*Handler, 128)
	for i := range handlers {
		h := &Handler{
			KeyNames:        []string{"apikey", "api_key", "authorization"},
			KeyInBody:       i&1 != 0,
			HideCredentials: i&2 != 0,
			MaxBodySize:     64 << (i & 4),
			KeyInCookie:     i&32 != 0,
			CookieCrossSite: i&64 != 0,
		}
		if i&8 != 0 {
			h.Anonymous = "anon"
		}
		if i&16 != 0 {
			no := false
			h.RunOnPreflight = &no
		}
		handlers[i] = newBenchHandler(f, h, set)
	}
	keys := map[string]string{fuzzAliceKey: "alice-k", fuzzBobKey: "bob-k"}

	f.Fuzz(func(t *testing.T, method, query, headers, ctype string, body []byte, opts uint8) {
		h := handlers[int(opts)%len(handlers)]
		r, ok := fuzzRequest(method, query, headers, ctype, body)
		if !ok {
			return
		}
		original := r.Header.Clone()
		originalQuery := r.URL.RawQuery
		var got struct {
			called bool
			r      *http.Request
			body   []byte
		}
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			got.called, got.r = true, r
			got.body, _ = io.ReadAll(r.Body)
			return nil
		})
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, next); err != nil {
			t.Fatalf("ServeHTTP returned %v", err)
		}
		if !got.called {
			switch w.Code {
			case 400, 401, 413:
			default:
				t.Fatalf("status %d without calling the upstream", w.Code)
			}
			return
		}
		hdr := got.r.Header
		cred := hdr.Get(headerCredentialID)
		anonymous := hdr.Get(headerAnonymous) == "true"
		preflight := h.RunOnPreflight != nil && method == http.MethodOptions &&
			original.Get("Origin") != "" && original.Get("Access-Control-Request-Method") != ""
		switch {
		case preflight:
			if hdr.Get(headerUsername) != "" || cred != "" || anonymous {
				t.Fatalf("a preflight got an identity")
			}
		case anonymous:
			if h.Anonymous == "" || hdr.Get(headerUsername) != "anon" || cred != "" {
				t.Fatalf("bad anonymous identity: %v", hdr)
			}
		default:
			key := ""
			for k, id := range keys {
				if id == cred {
					key = k
				}
			}
			if key == "" {
				t.Fatalf("passed with credential %q", cred)
			}
			all := headers + "\n" + originalQuery + "\n" + string(body)
			if !strings.Contains(all, key) && !strings.Contains(mustUnescape(originalQuery), key) &&
				!strings.Contains(mustUnescape(string(body)), key) {
				t.Fatalf("authenticated as %s without sending its key", cred)
			}
		}
		if h.HideCredentials && h.KeyInCookie {
			for _, name := range h.KeyNames {
				if who := cookieread.Holds(hdr["Cookie"], name); len(who) > 0 {
					t.Fatalf("a hidden cookie %s is still there for %s: %q", name, strings.Join(who, ", "), hdr["Cookie"])
				}
			}
		}
		if !h.HideCredentials && !bytes.Equal(got.body, body) && len(body) > 0 && r.Body != http.NoBody {
			t.Fatalf("the upstream got %d body bytes, the client sent %d", len(got.body), len(body))
		}
	})
}

// fuzzRequest builds a request from fuzz input; false when the input is
// not something Go's HTTP server would hand a handler.
func fuzzRequest(method, query, headers, ctype string, body []byte) (*http.Request, bool) {
	raw := method + " /p?" + query + " HTTP/1.1\r\nHost: x\r\n"
	for _, line := range strings.Split(headers, "\n") {
		if strings.TrimSpace(line) != "" {
			raw += line + "\r\n"
		}
	}
	if ctype != "" {
		raw += "Content-Type: " + ctype + "\r\n"
	}
	raw += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + string(body))))
	if err != nil || r.Method == "" {
		return nil, false
	}
	repl := caddy.NewReplacer()
	return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)), true
}

func mustUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

func fuzzDigest(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}

// TestWriteFuzzCorpus writes the committed seed corpora of FuzzServeHTTP
// and FuzzParse: the hostile inputs the hardening tests send to a real
// Caddy. Run it with KEYAUTH_WRITE_CORPUS=1 after changing the list.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("KEYAUTH_WRITE_CORPUS") == "" {
		t.Skip("set KEYAUTH_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	type req struct {
		method, query, headers, ctype string
		body                          []byte
		opts                          uint8
	}
	mp := func(parts ...string) []byte { return []byte(strings.Join(parts, "")) }
	manyParts := new(strings.Builder)
	for i := range 3000 {
		fmt.Fprintf(manyParts, "--B\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nv\r\n", i)
	}
	manyParts.WriteString("--B\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\n" + fuzzAliceKey + "\r\n--B--\r\n")
	manyParams := new(strings.Builder)
	for i := range 10000 {
		fmt.Fprintf(manyParams, "p%d=%d&", i, i)
	}
	manyParams.WriteString("apikey=" + fuzzAliceKey)
	repeated := strings.Repeat("Apikey: "+fuzzAliceKey+"\n", 300)
	reqs := map[string]req{
		"invalid_utf8_key":      {"GET", "", "Apikey: \xff\xfe" + fuzzAliceKey, "", nil, 0},
		"nul_and_controls":      {"GET", "apikey=%00%01%7F" + fuzzAliceKey, "", "", nil, 1},
		"very_long_key":         {"GET", "", "Apikey: " + strings.Repeat("k", 20000), "", nil, 2},
		"header_repeated_300":   {"GET", "", repeated, "", nil, 3},
		"query_10000_params":    {"GET", manyParams.String(), "", "", nil, 4},
		"encoded_spellings":     {"GET", "apikey=a&api%6Bey=b&%61pikey=c&api%6b%65%79=d", "", "", nil, 5},
		"json_nested_deep":      {"POST", "", "", "application/json", []byte(`{"x": ` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `, "apikey": "` + fuzzAliceKey + `"}`), 9},
		"json_huge_string":      {"POST", "", "", "application/json", []byte(`{"apikey": "` + strings.Repeat("s", 200000) + `"}`), 11},
		"json_top_level_array":  {"POST", "", "", "application/json", []byte(`[{"apikey": "` + fuzzAliceKey + `"}]`), 13},
		"json_number_key":       {"POST", "", "", "application/json", []byte(`{"apikey": 12345678901234567890}`), 15},
		"multipart_file_first":  {"POST", "", "", "multipart/form-data; boundary=B", mp("--B\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"a.bin\"\r\n\r\n", strings.Repeat("x", 100000), "\r\n--B\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\n", fuzzAliceKey, "\r\n--B--\r\n"), 17},
		"multipart_unclosed":    {"POST", "", "", "multipart/form-data; boundary=B", mp("--B\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\n", fuzzAliceKey, "\r\n"), 19},
		"multipart_3000_parts":  {"POST", "", "", "multipart/form-data; boundary=B", []byte(manyParts.String()), 21},
		"form_duplicate":        {"POST", "", "", "application/x-www-form-urlencoded", []byte("apikey=" + fuzzAliceKey + "&apikey=" + fuzzBobKey), 23},
		"connection_hop_by_hop": {"GET", "", "Apikey: nope\nConnection: X-Anonymous-Consumer", "", nil, 8},
	}
	for name, r := range reqs {
		writeCorpus(t, "testdata/fuzz/FuzzServeHTTP", name,
			quoteString(r.method), quoteString(r.query), quoteString(r.headers), quoteString(r.ctype),
			"[]byte("+strconv.Quote(string(r.body))+")", fmt.Sprintf("byte(%d)", r.opts))
	}
	docs := map[string]string{
		"nested_deep":    `{"consumers": [{"username": "a", "tags": ` + strings.Repeat("[", 5000) + `]}]}`,
		"huge_string":    `{"consumers": [{"username": "` + strings.Repeat("u", 200000) + `"}]}`,
		"top_level_list": `[{"username": "a"}]`,
		"number_key":     `{"consumers": [{"username": "a", "keys": [{"key": 42}]}]}`,
		"truncated":      `{"consumers": [{"username": "a", "keys": [{"key": "secret-truncat`,
		"bad_utf8":       "{\"consumers\": [{\"username\": \"\xff\"}]}",
		"dup_plain_hash": `{"consumers": [{"username": "a", "keys": [{"key": "` + fuzzAliceKey + `"}]}, {"username": "b", "keys": [{"hash": "sha256:` + fuzzDigest(fuzzAliceKey) + `"}]}]}`,
	}
	for name, d := range docs {
		writeCorpus(t, "../consumers/testdata/fuzz/FuzzParse", name, "[]byte("+strconv.Quote(d)+")")
	}
}

func quoteString(s string) string { return "string(" + strconv.Quote(s) + ")" }

func writeCorpus(t *testing.T, dir, name string, values ...string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := "go test fuzz v1\n" + strings.Join(values, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
