package keyauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const (
	ctForm = "application/x-www-form-urlencoded"
	ctJSON = "application/json"
	ctMP   = "multipart/form-data; boundary=B0undary"
)

// mp builds a multipart body the way multipart.Writer writes one.
func mp(boundary string, parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("--" + boundary + "\r\n" + p)
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.String()
}

func field(name, value string) string {
	return `Content-Disposition: form-data; name="` + name + "\"\r\n\r\n" + value
}

func file(name, filename, value string) string {
	return `Content-Disposition: form-data; name="` + name + `"; filename="` + filename + "\"\r\nContent-Type: text/plain\r\n\r\n" + value
}

// trackedBody counts the bytes read from a request body and its closing.
type trackedBody struct {
	r      io.Reader
	n      int
	closed bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += n
	return n, err
}

func (b *trackedBody) Close() error { b.closed = true; return nil }

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestBodyKindOf(t *testing.T) {
	tests := []struct {
		ct       string
		kind     bodyKind
		boundary string
	}{
		{"application/x-www-form-urlencoded", bodyForm, ""},
		{"application/x-www-form-urlencoded; charset=utf-8", bodyForm, ""},
		{"application/json", bodyJSON, ""},
		{"application/json; charset=utf-8", bodyJSON, ""},
		{"Application/JSON", bodyJSON, ""},
		{"multipart/form-data; boundary=abc", bodyMultipart, "abc"},
		{`multipart/form-data; boundary="a b:c?=d"`, bodyMultipart, "a b:c?=d"},
		{"multipart/form-data; boundary=" + strings.Repeat("x", 70), bodyMultipart, strings.Repeat("x", 70)},
		{"multipart/form-data", bodyOther, ""},
		{"multipart/form-data; boundary=", bodyOther, ""},
		{"multipart/form-data; boundary=" + strings.Repeat("x", 71), bodyOther, ""}, // RFC 2046 allows 70
		{`multipart/form-data; boundary="a!b"`, bodyOther, ""},                      // not an RFC 2046 boundary character
		{`multipart/form-data; boundary="ab "`, bodyOther, ""},                      // ends in a space
		{"multipart/mixed; boundary=abc", bodyOther, ""},
		{"application/vnd.api+json", bodyOther, ""},
		{"application/jsonx", bodyOther, ""},
		{"text/plain", bodyOther, ""},
		{"application/octet-stream", bodyOther, ""},
		{"application/json; charset", bodyOther, ""}, // unparsable media type
		{"", bodyOther, ""},
	}
	for _, tt := range tests {
		kind, boundary := bodyKindOf(tt.ct)
		if kind != tt.kind || boundary != tt.boundary {
			t.Errorf("bodyKindOf(%q) = %d, %q; want %d, %q", tt.ct, kind, boundary, tt.kind, tt.boundary)
		}
	}
}

func TestJSONLookup(t *testing.T) {
	tests := []struct {
		data string
		want string
		n    int
	}{
		{`{"apikey":"k"}`, "k", 1},
		{` { "apikey" : "k" } `, "k", 1},
		{"{\n\t\"a\": 1,\r\n\t\"apikey\":\t\"k\"\n}\n", "k", 1},
		{`{"a":1,"b":[1,2,{"c":"d"}],"apikey":"k","e":null}`, "k", 1},
		{`{"api\u006bey":"k"}`, "k", 1}, // escaped member name
		{`{"\u0061\u0070\u0069\u006B\u0065\u0079":"k"}`, "k", 1},
		{`{"apikey":"k\"\\\/x\u00e9\n"}`, "k\"\\/xé\n", 1}, // escaped value
		{`{"apikey":""}`, "", 1},
		{`{"apikey":1}`, "", 0},
		{`{"apikey":-1.5e3}`, "", 0},
		{`{"apikey":true}`, "", 0},
		{`{"apikey":false}`, "", 0},
		{`{"apikey":null}`, "", 0},
		{`{"apikey":["k"]}`, "", 2},
		{`{"apikey":[]}`, "", 2},
		{`{"apikey":{"k":"v"}}`, "", 2},
		{`{"apikey":{}}`, "", 2},
		{`{"apikey":"a","apikey":"b"}`, "a", 2},
		{`{"apikey":"a","api\u006bey":"b"}`, "a", 2},
		{`{"apikey":null,"apikey":"b"}`, "b", 1},
		{`{"apikey":"a","apikey":["b"]}`, "a", 3},
		{`{"nested":{"apikey":"k"}}`, "", 0}, // only top-level members
		{`{"list":["apikey","x"],"o":{"apikey":{"apikey":"y"}},"apikey":"k"}`, "k", 1},
		{`{"x":"\"apikey\":\"fake\"","apikey":"k"}`, "k", 1},
		{`{"x":"}]{[","apikey":"k"}`, "k", 1},
		{`{"x":{"y":[1,{"z":"]}"},[[[]]]]},"apikey":"k"}`, "k", 1},
		{`{"x":"\\","apikey":"k"}`, "k", 1},
		{`{"APIKEY":"k","ApiKey":"k","api_key":"k"}`, "", 0}, // names match exactly
		{`{}`, "", 0},
		{` {} `, "", 0},
		{`["apikey","k"]`, "", 0}, // not an object
		{`[{"apikey":"k"}]`, "", 0},
		{`"apikey"`, "", 0},
		{`null`, "", 0},
	}
	for _, tt := range tests {
		if !json.Valid([]byte(tt.data)) {
			t.Fatalf("test data %s is not valid JSON", tt.data)
		}
		v, n := jsonLookup([]byte(tt.data), "apikey")
		if v != tt.want || n != tt.n {
			t.Errorf("jsonLookup(%s) = %q, %d; want %q, %d", tt.data, v, n, tt.want, tt.n)
		}
	}
}

func TestJSONRemove(t *testing.T) {
	tests := []struct {
		data, want string
		removed    bool
	}{
		{`{"apikey":"k"}`, `{}`, true},
		{` { "apikey" : "k" } `, ` {  } `, true},
		{`{"a":1,"apikey":"k","b":[1,2]}`, `{"a":1,"b":[1,2]}`, true},
		{`{"apikey":"k","a":1}`, `{"a":1}`, true},
		{`{"a":1,"apikey":"k"}`, `{"a":1}`, true},
		{`{ "a" : 1 , "apikey" : "k" , "b" : 2 }`, `{ "a" : 1 , "b" : 2 }`, true},
		{"{\n  \"a\": 1,\n  \"apikey\": \"k\",\n  \"b\": 2\n}\n", "{\n  \"a\": 1,\n  \"b\": 2\n}\n", true},
		{"{\n  \"apikey\": \"k\",\n  \"a\": 1\n}", "{\n  \"a\": 1\n}", true},
		{"{\n  \"a\": 1,\n  \"apikey\": \"k\"\n}", "{\n  \"a\": 1\n}", true},
		{`{"apikey":"k","a":1,"apikey":"j","b":2,"apikey":"i"}`, `{"a":1,"b":2}`, true},
		{`{"apikey":"k","apikey":"j"}`, `{}`, true},
		{`{"api\u006bey":"k","a":"\u00e9\/","n":1.50e+0}`, `{"a":"\u00e9\/","n":1.50e+0}`, true}, // other bytes untouched
		{`{"a":{"apikey":"nested"},"apikey":"k"}`, `{"a":{"apikey":"nested"}}`, true},
		{`{"apikey":["x","y"],"b":1}`, `{"b":1}`, true},
		{`{"apikey":{"x":"}"},"b":1}`, `{"b":1}`, true},
		{`{"apikey":null,"b":true}`, `{"b":true}`, true},
		{`{"a":1}`, `{"a":1}`, false},
		{`{"a":{"apikey":"nested"}}`, `{"a":{"apikey":"nested"}}`, false},
		{`{}`, `{}`, false},
		{`["apikey"]`, `["apikey"]`, false},
	}
	for _, tt := range tests {
		out, removed := jsonRemove([]byte(tt.data), "apikey")
		if string(out) != tt.want || removed != tt.removed {
			t.Errorf("jsonRemove(%q) = %q, %v; want %q, %v", tt.data, out, removed, tt.want, tt.removed)
			continue
		}
		if !json.Valid(out) {
			t.Errorf("jsonRemove(%q) = %q: not valid JSON", tt.data, out)
		}
		if _, n := jsonLookup(out, "apikey"); n != 0 {
			t.Errorf("jsonRemove(%q) = %q: still holds the key", tt.data, out)
		}
	}
}

func TestMultipartLookup(t *testing.T) {
	const b = "B0undary"
	tests := []struct {
		name     string
		data     string
		boundary string
		want     string
		n        int
	}{
		{"field", mp(b, field("apikey", "k")), b, "k", 1},
		{"among others", mp(b, field("a", "1"), field("apikey", "k"), file("f", "x.txt", "data")), b, "k", 1},
		{"value with CRLF", mp(b, field("apikey", "k\r\nx")), b, "k\r\nx", 1},
		{"duplicate", mp(b, field("apikey", "k1"), field("a", "1"), field("apikey", "k2")), b, "k1", 2},
		{"empty", mp(b, field("apikey", "")), b, "", 1},
		{"file is not a key", mp(b, file("apikey", "key.txt", "k")), b, "", 0},
		{"file and field", mp(b, file("apikey", "key.txt", "f"), field("apikey", "k")), b, "k", 1},
		{"name matches exactly", mp(b, field("APIKEY", "k"), field("api_key", "k")), b, "", 0},
		{"preamble and epilogue", "preamble\r\n" + mp(b, field("apikey", "k")) + "epilogue", b, "k", 1},
		{"no parts", "--" + b + "--\r\n", b, "", 0},
		{"missing closing boundary", strings.TrimSuffix(mp(b, field("apikey", "k")), "--"+b+"--\r\n"), b, "", 0},
		{"closing boundary cut short", strings.TrimSuffix(mp(b, field("apikey", "k")), "--\r\n"), b, "", 0},
		{"cut inside the part", "--" + b + "\r\n" + field("apikey", "k"), b, "", 0},
		{"cut inside a later part", "--" + b + "\r\n" + field("apikey", "k") + "\r\n--" + b + "\r\n" + field("a", "1"), b, "", 0},
		{"cut inside the headers", "--" + b + "\r\nContent-Disposition: form-da", b, "", 0},
		{"other boundary", mp(b, field("apikey", "k")), "Other", "", 0},
		{"not multipart", "apikey=k", b, "", 0},
		{"empty body", "", b, "", 0},
	}
	for _, tt := range tests {
		v, n := multipartLookup([]byte(tt.data), tt.boundary, "apikey")
		if v != tt.want || n != tt.n {
			t.Errorf("%s: multipartLookup = %q, %d; want %q, %d", tt.name, v, n, tt.want, tt.n)
		}
	}
}

func TestMultipartRemove(t *testing.T) {
	const b = "B0undary"
	tests := []struct {
		name    string
		data    string
		want    string
		removed bool
	}{
		{"only field", mp(b, field("apikey", "k")), "\r\n--" + b + "--\r\n", true},
		{"among others",
			mp(b, field("a", "1"), field("apikey", "k"), file("f", "x.txt", "line1\r\nline2"), field("b", "")),
			mp(b, field("a", "1"), file("f", "x.txt", "line1\r\nline2"), field("b", "")), true},
		{"first", mp(b, field("apikey", "k"), field("a", "1")), mp(b, field("a", "1")), true},
		{"last", mp(b, field("a", "1"), field("apikey", "k")), mp(b, field("a", "1")), true},
		{"every copy", mp(b, field("apikey", "k"), field("a", "1"), field("apikey", "j")), mp(b, field("a", "1")), true},
		{"file of that name kept", mp(b, file("apikey", "k.txt", "f"), field("apikey", "k")), mp(b, file("apikey", "k.txt", "f")), true},
		{"absent", mp(b, field("a", "1")), mp(b, field("a", "1")), false},
		// Unparsable bodies hold no key, so nothing is removed.
		{"missing closing boundary", "--" + b + "\r\n" + field("apikey", "k") + "\r\n", "--" + b + "\r\n" + field("apikey", "k") + "\r\n", false},
		{"cut inside a kept part", "--" + b + "\r\n" + field("apikey", "k") + "\r\n--" + b + "\r\n" + field("a", "1"),
			"--" + b + "\r\n" + field("apikey", "k") + "\r\n--" + b + "\r\n" + field("a", "1"), false},
	}
	for _, tt := range tests {
		out, removed, err := multipartRemove([]byte(tt.data), b, "apikey")
		if err != nil || string(out) != tt.want || removed != tt.removed {
			t.Errorf("%s: multipartRemove = %q, %v, %v; want %q, %v, nil", tt.name, out, removed, err, tt.want, tt.removed)
			continue
		}
		if tt.removed {
			if _, n := multipartLookup(out, b, "apikey"); n != 0 {
				t.Errorf("%s: %q still holds the key", tt.name, out)
			}
			// The result parses to its closing boundary.
			mr := multipart.NewReader(bytes.NewReader(out), b)
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Errorf("%s: result does not parse: %v", tt.name, err)
					break
				}
				_, _ = io.Copy(io.Discard, p)
			}
		}
	}
}

func newBodyRequest(ctype, body string) (*http.Request, *trackedBody) {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	tb := &trackedBody{r: r.Body}
	r.Body = tb
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	return r, tb
}

func TestBodyLookup(t *testing.T) {
	tests := []struct {
		name, ctype, body string
		want              string
		n                 int
	}{
		{"form", ctForm, "a=1&apikey=k", "k", 1},
		{"form charset", ctForm + "; charset=utf-8", "apikey=k", "k", 1},
		{"form encoded", ctForm, "api%6Bey=a+b%21", "a b!", 1},
		{"form duplicate", ctForm, "apikey=a&apikey=b", "a", 2},
		{"form empty", ctForm, "apikey=", "", 1},
		{"form without =", ctForm, "apikey", "", 0},
		{"json", ctJSON, `{"apikey":"k"}`, "k", 1},
		{"json escaped name", ctJSON, `{"api\u006Bey":"k"}`, "k", 1},
		{"json array", ctJSON, `{"apikey":["k"]}`, "", 2},
		{"json number", ctJSON, `{"apikey":12}`, "", 0},
		{"json invalid", ctJSON, `{"apikey":"k",}`, "", 0},
		{"json cut short", ctJSON, `{"apikey":"k"`, "", 0},
		{"json trailing garbage", ctJSON, `{"apikey":"k"} x`, "", 0},
		{"json two values", ctJSON, `{"apikey":"k"}{"apikey":"j"}`, "", 0},
		{"json top-level array", ctJSON, `[{"apikey":"k"}]`, "", 0},
		{"json empty body", ctJSON, "", "", 0},
		{"json is not a form", ctJSON, "apikey=k", "", 0},
		{"form is not json", ctForm, `{"apikey":"k"}`, "", 0},
		{"multipart", ctMP, mp("B0undary", field("apikey", "k")), "k", 1},
		{"multipart unclosed", ctMP, "--B0undary\r\n" + field("apikey", "k"), "", 0},
		{"multipart boundary mismatch", "multipart/form-data; boundary=Other", mp("B0undary", field("apikey", "k")), "", 0},
		{"multipart without boundary", "multipart/form-data", mp("B0undary", field("apikey", "k")), "", 0},
		{"text", "text/plain", "apikey=k", "", 0},
		{"no content type", "", "apikey=k", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := provisioned(t, &Handler{KeyInBody: true})
			r, _ := newBodyRequest(tt.ctype, tt.body)
			q := &request{r: r}
			b, f := q.readBody(h)
			if f != nil {
				t.Fatalf("readBody: %v", f)
			}
			v, n := b.lookup("apikey")
			if v != tt.want || n != tt.n {
				t.Errorf("lookup = %q, %d; want %q, %d", v, n, tt.want, tt.n)
			}
			// Searching is no reason to remove anything.
			if err := b.remove(r, "absent"); err != nil {
				t.Errorf("remove absent: %v", err)
			}
			if got, _ := io.ReadAll(r.Body); string(got) != tt.body {
				t.Errorf("body replayed as %q, want %q", got, tt.body)
			}
		})
	}
}

func TestReadBody(t *testing.T) {
	big := strings.Repeat("x", 3<<20+17) // over the default limit
	tests := []struct {
		name          string
		max           int64 // 0: the default
		ctype, body   string
		unknownLength bool
		wantRead      int // bytes taken from the client's body
		wantKind      bodyKind
	}{
		{name: "form", ctype: ctForm, body: "apikey=k", wantRead: 8, wantKind: bodyForm},
		{name: "json", ctype: ctJSON, body: `{"apikey":"k"}`, wantRead: 14, wantKind: bodyJSON},
		{name: "multipart", ctype: ctMP, body: mp("B0undary", field("apikey", "k")), wantRead: len(mp("B0undary", field("apikey", "k"))), wantKind: bodyMultipart},
		{name: "chunked", ctype: ctForm, body: "apikey=k", unknownLength: true, wantRead: 8, wantKind: bodyForm},
		{name: "at the limit", max: 8, ctype: ctForm, body: "apikey=k", wantRead: 8, wantKind: bodyForm},
		{name: "chunked at the limit", max: 8, ctype: ctForm, body: "apikey=k", unknownLength: true, wantRead: 8, wantKind: bodyForm},
		{name: "over the limit", max: 7, ctype: ctForm, body: "apikey=k", wantRead: 0, wantKind: bodyOther},
		{name: "chunked over the limit", max: 7, ctype: ctForm, body: "apikey=k&more", unknownLength: true, wantRead: 8, wantKind: bodyOther},
		{name: "large", ctype: ctJSON, body: big, wantRead: 0, wantKind: bodyOther},
		{name: "large chunked", ctype: ctJSON, body: big, unknownLength: true, wantRead: DefaultMaxBodySize + 1, wantKind: bodyOther},
		{name: "text", ctype: "text/plain", body: "apikey=k", wantRead: 0, wantKind: bodyOther},
		{name: "chunked text", ctype: "text/plain", body: big, unknownLength: true, wantRead: 0, wantKind: bodyOther},
		{name: "octet-stream", ctype: "application/octet-stream", body: big, wantRead: 0, wantKind: bodyOther},
		{name: "no content type", body: "apikey=k", wantRead: 0, wantKind: bodyOther},
		{name: "bad boundary", ctype: `multipart/form-data; boundary="a!b"`, body: mp("a!b", field("apikey", "k")), wantRead: 0, wantKind: bodyOther},
		{name: "empty", ctype: ctForm, body: "", wantRead: 0, wantKind: bodyForm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := provisioned(t, &Handler{KeyInBody: true, MaxBodySize: 0})
			if tt.max != 0 {
				h.maxBody = tt.max
			}
			r, tb := newBodyRequest(tt.ctype, tt.body)
			if tt.unknownLength {
				r.ContentLength = -1
				r.TransferEncoding = []string{"chunked"}
			}
			q := &request{r: r}
			b, f := q.readBody(h)
			if f != nil {
				t.Fatalf("readBody: %v", f)
			}
			if tb.n != tt.wantRead {
				t.Errorf("read %d bytes of the body, want %d", tb.n, tt.wantRead)
			}
			if b.kind != tt.wantKind {
				t.Errorf("kind = %d, want %d", b.kind, tt.wantKind)
			}
			if tt.wantRead == 0 && tt.wantKind == bodyOther && r.Body != io.ReadCloser(tb) {
				t.Errorf("a body not read was replaced")
			}
			// At most once.
			if b2, f := q.readBody(h); b2 != b || f != nil {
				t.Errorf("second readBody = %p, %v; want %p, nil", b2, f, b)
			}
			if tb.n != tt.wantRead {
				t.Errorf("second readBody read more: %d bytes", tb.n)
			}
			// The upstream gets every byte, and closing reaches the client's body.
			got, err := io.ReadAll(r.Body)
			if err != nil || string(got) != tt.body {
				t.Errorf("replayed %d bytes (%v), want the %d sent", len(got), err, len(tt.body))
			}
			if err := r.Body.Close(); err != nil || !tb.closed {
				t.Errorf("Close = %v, closed = %v", err, tb.closed)
			}
		})
	}
}

func TestReadBodyNoBody(t *testing.T) {
	h := provisioned(t, &Handler{KeyInBody: true})
	for _, body := range []io.ReadCloser{nil, http.NoBody} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("Content-Type", ctForm)
		r.Body = body
		q := &request{r: r}
		b, f := q.readBody(h)
		if f != nil || b == nil {
			t.Fatalf("readBody = %v, %v", b, f)
		}
		if _, n := b.lookup("apikey"); n != 0 {
			t.Errorf("found a key in no body")
		}
		if r.Body != body {
			t.Errorf("body replaced")
		}
		if err := q.hideAll(provisioned(t, &Handler{KeyInBody: true})); err != nil {
			t.Errorf("hideAll: %v", err)
		}
	}
}

func TestReadBodyFailures(t *testing.T) {
	h := provisioned(t, &Handler{KeyInBody: true})

	// An earlier handler's limit (request_body max_size) is a 413.
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("Content-Type", ctForm)
	r.ContentLength = -1
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader("apikey=k&padding")), 10)
	if _, f := (&request{r: r}).readBody(h); f != errBodyTooLarge {
		t.Errorf("MaxBytesReader: got %v, want %v", f, errBodyTooLarge)
	}

	// Why the read failed decides the answer: the server's read timeout
	// (a deadline error, as net/http's conn gives it, wrapped or not) is a
	// 408, a client gone mid-body a 499, anything else a 400.
	for _, tc := range []struct {
		name string
		err  error
		want *failure
	}{
		{"read_body deadline", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, errBodyTimeout},
		{"deadline wrapped", fmt.Errorf("reading: %w", os.ErrDeadlineExceeded), errBodyTimeout},
		{"client gone, declared length", io.ErrUnexpectedEOF, errClientGone},
		{"client gone, reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, errClientGone},
		{"malformed chunking", errors.New("malformed chunked encoding"), errBodyRead},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("Content-Type", ctForm)
		r.ContentLength = -1
		r.Body = io.NopCloser(io.MultiReader(strings.NewReader("apikey=k"), failingReader{tc.err}))
		if _, f := (&request{r: r}).readBody(h); f != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, f, tc.want)
		}
	}

	// A broken connection is a 400: what was read is gone.
	r = httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("Content-Type", ctJSON)
	r.ContentLength = -1
	r.Body = io.NopCloser(io.MultiReader(strings.NewReader(`{"apikey"`), errReader{}))
	q := &request{r: r}
	if _, f := q.readBody(h); f != errBodyRead {
		t.Errorf("read error: got %v, want %v", f, errBodyRead)
	}
	h = provisioned(t, &Handler{KeyInBody: true, KeyInHeader: ptr(false), KeyInQuery: ptr(false)})
	if _, f := h.find(&request{r: r}); f != errBodyRead {
		t.Errorf("find with a read error: got %v, want %v", f, errBodyRead)
	}
}

// A key in a header never touches a large upload.
func TestLargeUploadKeyInHeader(t *testing.T) {
	h := provisioned(t, &Handler{KeyInBody: true})
	r, tb := newBodyRequest(ctMP, strings.Repeat("x", 4<<20))
	r.ContentLength = -1
	r.Header.Set("Apikey", "k")
	q := &request{r: r}
	if key, f := h.find(q); key != "k" || f != nil {
		t.Fatalf("find = %q, %v", key, f)
	}
	if tb.n != 0 || q.body != nil || r.Body != io.ReadCloser(tb) {
		t.Errorf("body touched: %d bytes read", tb.n)
	}
}

func TestBodyRemove(t *testing.T) {
	const b = "B0undary"
	tests := []struct {
		name, ctype, body string
		want              string
	}{
		{"form", ctForm, "a=1&apikey=k&b=%20x+y", "a=1&b=%20x+y"},
		{"form only field", ctForm, "apikey=k", ""},
		{"form encoded name", ctForm, "api%6Bey=k&z=9&a=1", "z=9&a=1"},
		{"json", ctJSON, `{"a": 1, "apikey": "k", "b": {"apikey": "nested"}}`, `{"a": 1, "b": {"apikey": "nested"}}`},
		{"json pretty", ctJSON, "{\n\t\"apikey\": \"k\",\n\t\"a\": [1, 2]\n}\n", "{\n\t\"a\": [1, 2]\n}\n"},
		{"json escaped name", ctJSON, `{"api\u006bey":"k","a":"\u00e9"}`, `{"a":"\u00e9"}`},
		{"multipart", ctMP,
			mp(b, field("a", "1"), field("apikey", "k"), file("upload", "x.bin", "\x00\x01\r\n--not-a-boundary")),
			mp(b, field("a", "1"), file("upload", "x.bin", "\x00\x01\r\n--not-a-boundary"))},
	}
	for _, tt := range tests {
		for _, chunked := range []bool{false, true} {
			t.Run(tt.name+"/chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
				h := provisioned(t, &Handler{KeyInBody: true, HideCredentials: true})
				r, tb := newBodyRequest(tt.ctype, tt.body)
				if chunked {
					r.ContentLength = -1
					r.TransferEncoding = []string{"chunked"}
				}
				q := &request{r: r}
				key, f := h.find(q)
				if key != "k" || f != nil || q.found.loc != locBody {
					t.Fatalf("find = %q, %v in %s", key, f, q.found.loc)
				}
				if err := q.hideAll(h); err != nil {
					t.Fatalf("hide: %v", err)
				}
				got, err := io.ReadAll(r.Body)
				if err != nil || string(got) != tt.want {
					t.Errorf("body = %q, %v; want %q", got, err, tt.want)
				}
				if r.ContentLength != int64(len(tt.want)) || r.Header.Get("Content-Length") != strconv.Itoa(len(tt.want)) {
					t.Errorf("ContentLength = %d, Content-Length = %q; want %d", r.ContentLength, r.Header.Get("Content-Length"), len(tt.want))
				}
				if r.TransferEncoding != nil {
					t.Errorf("TransferEncoding = %v, want none", r.TransferEncoding)
				}
				if r.Header.Get("Content-Type") != tt.ctype {
					t.Errorf("Content-Type changed to %q", r.Header.Get("Content-Type"))
				}
				if err := r.Body.Close(); err != nil || !tb.closed {
					t.Errorf("Close = %v, closed = %v", err, tb.closed)
				}
			})
		}
	}
}

// The anonymous fallback scrubs every key name from a body it read, and an
// unparsable body goes on as it came, never as an error.
func TestBodyHideAll(t *testing.T) {
	const b = "B0undary"
	tests := []struct {
		name, ctype, body string
		want              string
	}{
		{"form", ctForm, "apikey=wrong&x=1&token=t", "x=1"},
		{"json", ctJSON, `{"apikey":"wrong","x":1,"token":["t"]}`, `{"x":1}`},
		{"multipart", ctMP, mp(b, field("token", "t"), field("apikey", "wrong"), field("x", "1")), mp(b, field("x", "1"))},
		{"json unparsable", ctJSON, `{"apikey":"wrong",`, `{"apikey":"wrong",`},
		{"multipart unclosed", ctMP, "--" + b + "\r\n" + field("apikey", "wrong") + "\r\n", "--" + b + "\r\n" + field("apikey", "wrong") + "\r\n"},
		{"multipart cut short", ctMP, mp(b, field("apikey", "wrong"), field("x", "1"))[:60], mp(b, field("apikey", "wrong"), field("x", "1"))[:60]},
		{"bad boundary", `multipart/form-data; boundary="a!b"`, mp("a!b", field("apikey", "wrong")), mp("a!b", field("apikey", "wrong"))},
		{"text", "text/plain", "apikey=wrong", "apikey=wrong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := provisioned(t, &Handler{KeyInBody: true, HideCredentials: true, KeyNames: []string{"apikey", "token"}})
			r, _ := newBodyRequest(tt.ctype, tt.body)
			q := &request{r: r}
			h.find(q) // whatever it finds is rejected
			if err := q.hideAll(h); err != nil {
				t.Fatalf("hideAll: %v", err)
			}
			got, err := io.ReadAll(r.Body)
			if err != nil || string(got) != tt.want {
				t.Errorf("body = %q, %v; want %q", got, err, tt.want)
			}
			if tt.want != tt.body && (r.ContentLength != int64(len(tt.want)) || r.Header.Get("Content-Length") != strconv.Itoa(len(tt.want))) {
				t.Errorf("ContentLength = %d, Content-Length = %q; want %d", r.ContentLength, r.Header.Get("Content-Length"), len(tt.want))
			}
		})
	}
}

// A key found in a multipart body can always be hidden: a boundary that
// multipart.Writer refuses is never searched.
func TestMultipartBoundaryRoundTrip(t *testing.T) {
	for _, boundary := range []string{"x", "a b", "'()+_,-./:=?", strings.Repeat("z", 70), "----WebKitFormBoundary7MA4YWxkTrZu0gW"} {
		h := provisioned(t, &Handler{KeyInBody: true, HideCredentials: true})
		r, _ := newBodyRequest(`multipart/form-data; boundary="`+boundary+`"`, mp(boundary, field("apikey", "k"), field("a", "1")))
		q := &request{r: r}
		if key, f := h.find(q); key != "k" || f != nil {
			t.Errorf("boundary %q: find = %q, %v", boundary, key, f)
			continue
		}
		if err := q.hideAll(h); err != nil {
			t.Errorf("boundary %q: hide: %v", boundary, err)
			continue
		}
		if got, _ := io.ReadAll(r.Body); string(got) != mp(boundary, field("a", "1")) {
			t.Errorf("boundary %q: body = %q", boundary, got)
		}
	}
}

// Parsing a body the way net/http does agrees with the lookup.
func TestBodyAgreesWithNetHTTP(t *testing.T) {
	tests := []struct{ ctype, body string }{
		{ctForm, "a=1&apikey=k%2Bx&b=2"},
		{ctMP, mp("B0undary", field("a", "1"), field("apikey", "k+x"), file("apikey", "f.txt", "not a key"))},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
		r.Header.Set("Content-Type", tt.ctype)
		if err := r.ParseMultipartForm(1 << 20); err != nil && !errors.Is(err, http.ErrNotMultipart) {
			t.Fatal(err)
		}
		want := r.PostForm["apikey"]
		if r.MultipartForm != nil {
			want = r.MultipartForm.Value["apikey"]
		}
		h := provisioned(t, &Handler{KeyInBody: true})
		r, _ = newBodyRequest(tt.ctype, tt.body)
		b, _ := (&request{r: r}).readBody(h)
		v, n := b.lookup("apikey")
		if !reflect.DeepEqual([]string{v}, want) || n != len(want) {
			t.Errorf("%s: lookup = %q, %d; net/http has %q", tt.ctype, v, n, want)
		}
	}
}
