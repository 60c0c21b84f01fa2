package integration

// Keys in request bodies (README: Request handling, rule 5): form, JSON
// and multipart, the body limit, the read timeout, a body that trickles in,
// and hostile bodies.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Request handling, rule 5: a key in a form, JSON or multipart body, and the
// upstream gets exactly the bytes the client sent.
func TestBodyKinds(t *testing.T) {
	e := newEnv(t)
	e.site("key_in_body true")
	mp, mpType := multipartBody(t,
		part{name: "note", value: "héllo\r\nworld"},
		part{name: "upload", file: "a.bin", value: "\x00\x01binary apikey=" + keyWrong},
		part{name: "apikey", value: keyAlice},
	)
	mpFile, mpFileType := multipartBody(t, part{name: "apikey", file: "apikey.txt", value: keyAlice})
	mpCut, mpCutType := multipartBody(t, part{name: "apikey", value: keyAlice})
	mpCut = mpCut[:len(mpCut)-8] // no closing boundary
	for _, tc := range []testCase{
		{"form", call{ctype: formType, body: "a=1&apikey=" + keyAlice + "&b=%20x+y&c"}, pass(idAlice)},
		{"form with charset", call{ctype: formType + "; charset=UTF-8", body: "apikey=" + keyAlice}, pass(idAlice)},
		{"form, encoded name and value", call{ctype: formType, body: "api%6Bey=" + url.QueryEscape(keySpecial)}, pass(idAliceSpecial)},
		{"form, chunked", call{ctype: formType, body: "x=1&apikey=" + keyBob, chunked: true}, pass(idBob)},
		{"form, wrong key", call{ctype: formType, body: "apikey=" + keyWrong}, reject(msgInvalid)},
		{"JSON", call{ctype: jsonType, body: `{"n": [1, {"apikey": "nested"}], "apikey": "` + keyAlice + `", "z": null}`}, pass(idAlice)},
		{"JSON with charset", call{ctype: "application/json; charset=utf-8", body: `{"apikey":"` + keyAlice + `"}`}, pass(idAlice)},
		{"JSON, escaped name and value", call{ctype: jsonType, body: `{"api\u006bey": "alice-secret-\u0030001"}`}, pass(idAlice)},
		{"JSON, special key", call{ctype: jsonType, body: `{"apikey": "sp ace+plus\/slash=eq\u0026amp%25"}`}, pass(idAliceSpecial)},
		{"JSON, chunked", call{ctype: jsonType, body: "\n {\"apikey\" :\t\"" + keyBob + "\" }\n", chunked: true}, pass(idBob)},
		{"multipart", call{ctype: mpType, body: string(mp)}, pass(idAlice)},
		{"multipart, chunked", call{ctype: mpType, body: string(mp), chunked: true}, pass(idAlice)},
		{"JSON, nested only", call{ctype: jsonType, body: `{"data": {"apikey": "` + keyAlice + `"}}`}, reject(msgNoKey)},
		{"JSON, top-level array", call{ctype: jsonType, body: `[{"apikey": "` + keyAlice + `"}]`}, reject(msgNoKey)},
		{"JSON, top-level string", call{ctype: jsonType, body: `"apikey"`}, reject(msgNoKey)},
		{"JSON, unparsable", call{ctype: jsonType, body: `{"apikey": "` + keyAlice + `",`}, reject(msgNoKey)},
		{"JSON, trailing garbage", call{ctype: jsonType, body: `{"apikey": "` + keyAlice + `"} x`}, reject(msgNoKey)},
		{"multipart, file part named apikey", call{ctype: mpFileType, body: string(mpFile)}, reject(msgNoKey)},
		{"multipart, no closing boundary", call{ctype: mpCutType, body: string(mpCut)}, reject(msgNoKey)},
		{"multipart, no boundary parameter", call{ctype: "multipart/form-data", body: string(mp)}, reject(msgNoKey)},
		{"text/plain", call{ctype: "text/plain", body: "apikey=" + keyAlice}, reject(msgNoKey)},
		{"no content type", call{ctype: "", body: "apikey=" + keyAlice}, reject(msgNoKey)},
		{"malformed content type", call{ctype: "application/x-www-form-urlencoded; =", body: "apikey=" + keyAlice}, reject(msgNoKey)},
		{"JSON sent as a form", call{ctype: formType, body: `{"apikey": "` + keyAlice + `"}`}, reject(msgNoKey)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.call
			if c.ctype == "" {
				// A body without a Content-Type.
				r := req(http.MethodPost, site+"/b", strings.NewReader(c.body))
				tc.want.check(t, do(t, r), "Key")
				return
			}
			got := tc.want.check(t, c.send(t, site+"/b"), "Key")
			if got == nil {
				return
			}
			wantBody(t, got, []byte(c.body))
			if got.Header.Get("Content-Type") != c.ctype {
				t.Errorf("upstream got Content-Type %q, want %q", got.Header.Get("Content-Type"), c.ctype)
			}
		})
	}
}

// Request handling, rule 5: a body over max_body_size is not searched, and
// with the key in a header a large upload streams through byte for byte. A
// body limit set before key_auth (request_body) gives 413.
func TestBodyLimit(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		key_in_body true
		max_body_size 1KiB
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
{{.Site2}} {
	request_body {
		max_size 100
	}
	key_auth {
		key_in_body true
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	// form returns a form body of exactly n bytes with the key first.
	form := func(n int) []byte {
		b := []byte("apikey=" + keyAlice + "&pad=")
		return append(b, bytes.Repeat([]byte("x"), n-len(b))...)
	}
	for _, tc := range []struct {
		name    string
		body    []byte
		chunked bool
		want    outcome
	}{
		{"at the limit", form(1024), false, pass(idAlice)},
		{"at the limit, chunked", form(1024), true, pass(idAlice)},
		{"one byte over", form(1025), false, reject(msgNoKey)},
		{"one byte over, chunked", form(1025), true, reject(msgNoKey)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *response
			if tc.chunked {
				r = postChunked(t, site+"/l", formType, tc.body)
			} else {
				r = post(t, site+"/l", formType, tc.body)
			}
			if got := tc.want.check(t, r, "Key"); got != nil {
				wantBody(t, got, tc.body)
			}
		})
	}

	// A large upload, with the key in a header, of a content type that
	// would be searched.
	big := make([]byte, 8<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	copy(big, "apikey="+keyWrong+"&")
	sum := sha256.Sum256(big)
	for _, chunk := range []bool{false, true} {
		var r *response
		if chunk {
			r = postChunked(t, site+"/upload", formType, big, "apikey", keyAlice)
		} else {
			r = post(t, site+"/upload", formType, big, "apikey", keyAlice)
		}
		got := wantIdentity(t, r, idAlice)
		if got.BodyLen != len(big) || got.BodySHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("chunked=%v: upstream got %d bytes (sha256 %s), want %d bytes (sha256 %x)",
				chunk, got.BodyLen, got.BodySHA256, len(big), sum)
		}
	}
	// Also when the key is in the query and the body over the limit holds a
	// wrong one.
	r := post(t, site+"/upload?apikey="+keyBob, formType, big)
	if got := wantIdentity(t, r, idBob); got.BodySHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("upstream got a different body")
	}

	// A limit before key_auth that the search runs into.
	wantFailure(t, postChunked(t, site2+"/l", formType, form(500)), http.StatusRequestEntityTooLarge, "Request body too large", "")
	// Under it, fine.
	got := wantIdentity(t, postChunked(t, site2+"/l", formType, form(90)), idAlice)
	wantBody(t, got, form(90))
}

// sendPaced sends head then body over a raw connection, pausing between
// pieces of n bytes until the body is sent or the server answers; with
// hangUp it closes the connection halfway instead.
func sendPaced(t *testing.T, head, body string, n int, pause time.Duration, hangUp bool) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", "localhost:"+strconv.Itoa(sitePort[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hang fails, never blocks the suite
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	answered := make(chan struct{})
	go func() {
		for rest := body; rest != ""; {
			select {
			case <-answered:
				return
			case <-time.After(pause):
			}
			k := min(n, len(rest))
			if _, err := io.WriteString(conn, rest[:k]); err != nil {
				return
			}
			rest = rest[k:]
			if hangUp && len(rest) < len(body)/2 {
				conn.(*net.TCPConn).CloseWrite()
				return
			}
		}
	}()
	b, _ := io.ReadAll(conn)
	close(answered)
	if hangUp {
		return 0, string(b)
	}
	res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		t.Fatalf("reading the answer %q: %v", b, err)
	}
	defer res.Body.Close()
	rb, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(rb)
}

// A body that does not arrive within read_body gets 408 with a JSON
// message; a malformed body keeps its 400; a client that hangs up halfway
// is no error log line.
func TestBodyTimeout(t *testing.T) {
	e := newSmallEnv(t)
	e.vars["GlobalExtra"] = "\tservers {\n\t\ttimeouts {\n\t\t\tread_body 1s\n\t\t}\n\t}\n"
	e.load(`{{.Global}}
http://localhost:{{.Port}} {
	log {
		output file {{.Dir}}/access.log
		format json
	}
	key_auth {
		key_in_body true
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	form := "apikey=" + smallKey + "&pad=" + strings.Repeat("x", 200)
	head := func(path string, length int) string {
		h := "POST " + path + " HTTP/1.1\r\nHost: localhost:" + strconv.Itoa(sitePort[0]) + "\r\nContent-Type: " + formType + "\r\n"
		if length < 0 {
			return h + "Transfer-Encoding: chunked\r\n\r\n"
		}
		return h + fmt.Sprintf("Content-Length: %d\r\n\r\n", length)
	}

	// Trickled past read_body: 408, declared length or chunked.
	status, body := sendPaced(t, head("/slow", len(form)), form, 4, 100*time.Millisecond, false)
	if status != http.StatusRequestTimeout || body != `{"message":"Request timeout"}` {
		t.Errorf("trickled body: %d %s, want 408 {\"message\":\"Request timeout\"}", status, body)
	}
	var chunks strings.Builder
	for _, c := range form {
		fmt.Fprintf(&chunks, "1\r\n%c\r\n", c)
	}
	status, body = sendPaced(t, head("/slow-chunked", -1), chunks.String(), 12, 100*time.Millisecond, false)
	if status != http.StatusRequestTimeout || body != `{"message":"Request timeout"}` {
		t.Errorf("trickled chunked body: %d %s, want 408", status, body)
	}

	// A malformed chunked body is unreadable: 400.
	status, body = sendPaced(t, head("/malformed", -1), "zz\r\nnot a chunk\r\n0\r\n\r\n", 1000, 0, false)
	if status != http.StatusBadRequest || body != `{"message":"Could not read request body"}` {
		t.Errorf("malformed chunked body: %d %s, want 400", status, body)
	}

	// A client that hangs up halfway.
	sendPaced(t, head("/gone", len(form)), form, 50, 10*time.Millisecond, true)
	le := e.waitLog("access.log", func(le logEntry) bool {
		r, _ := le["request"].(map[string]any)
		return r != nil && r["uri"] == "/gone"
	})
	if st, _ := le["status"].(float64); st != 499 {
		t.Errorf("access log status %v for a client that hung up, want 499", le["status"])
	}
	for _, l := range e.logLines("caddy.log") {
		var le logEntry
		if json.Unmarshal([]byte(l), &le) == nil && (le.str("level") == "error" || le.str("level") == "warn" && isModuleLogger(le.str("logger"))) {
			t.Errorf("a log line at %s: %s", le.str("level"), l)
		}
	}

	// In time, the key in the body still works, and the upstream got it all.
	got := wantIdentity(t, post(t, site+"/ok", formType, []byte(form)), smallAlice)
	wantBody(t, got, []byte(form))
	if hits := e.up.hits.Load(); hits != 1 {
		t.Errorf("the upstream got %d requests, want 1", hits)
	}
}

const trickleConfig = `{{.Global}}
{{.Site}} {
	key_auth {
		key_in_body true
		consumers file {{.Consumers}} {
			refresh 0
		}
	}
	reverse_proxy {{.Up}}
}
`

// trickle is a request whose body goes out a few bytes at a time.
type trickle struct {
	start  time.Time
	took   time.Duration
	status int
	body   string
	err    error
}

// sendTrickle sends head, then body in pieces of n bytes every
// interval, and reads the answer, which may come before the body is done.
func sendTrickle(addr, head, body string, n int, interval time.Duration) (tr trickle) {
	tr.start = time.Now()
	defer func() { tr.took = time.Since(tr.start) }()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tr.err = err
		return tr
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, head); err != nil {
		tr.err = err
		return tr
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for rest := body; rest != ""; {
			select {
			case <-done:
				return
			case <-time.After(interval):
			}
			k := min(n, len(rest))
			if _, err := io.WriteString(conn, rest[:k]); err != nil {
				return
			}
			rest = rest[k:]
		}
	})
	defer wg.Wait()
	defer close(done)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		tr.err = err
		return tr
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	tr.status, tr.body = res.StatusCode, string(b)
	return tr
}

func trickleHead(path, ctype string, length int, hdr ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n", path, strings.TrimPrefix(site, "http://"), ctype)
	if length >= 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", length)
	} else {
		b.WriteString("Transfer-Encoding: chunked\r\n")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	return b.String() + "\r\n"
}

// A body that trickles in is bounded by the server's read timeout, and
// while key_auth waits for it no lock is held: other requests are served
// and the consumers are swapped meanwhile.
func TestBodyTrickle(t *testing.T) {
	e := newEnv(t)
	// read_body is the window in which the other requests must all be
	// served while the slow bodies are still being read.
	const readBody = 4 * time.Second
	e.vars["GlobalExtra"] = fmt.Sprintf("\tservers {\n\t\ttimeouts {\n\t\t\tread_body %s\n\t\t}\n\t}\n", readBody)
	e.load(trickleConfig, "caddyfile")
	addr := strings.TrimPrefix(site, "http://")
	base := site

	// A body that arrives in time, slowly: the key in it is found.
	form := "apikey=" + keyAlice
	tr := sendTrickle(addr, trickleHead("/", formType, len(form)), form, 2, 60*time.Millisecond)
	if tr.err != nil || tr.status != http.StatusOK {
		t.Fatalf("a slow body within the timeout: %d %q %v", tr.status, tr.body, tr.err)
	}

	// Bodies that never finish: 1 byte every 100 ms of a declared 1000, one
	// declared and one chunked, from several clients at once.
	var wg sync.WaitGroup
	var ended atomic.Int64
	results := make([]trickle, 6)
	for i := range results {
		wg.Go(func() {
			defer ended.Add(1)
			head := trickleHead("/", formType, 1000)
			body := "apikey=" + keyAlice + "&pad=" + strings.Repeat("x", 1000)
			if i%2 == 1 {
				head = trickleHead("/", jsonType, -1)
				// One chunk of a byte at a time: "1\r\nX\r\n".
				var b strings.Builder
				for _, c := range `{"apikey": "` + keyAlice + `", "pad": "` + strings.Repeat("x", 1000) {
					fmt.Fprintf(&b, "1\r\n%c\r\n", c)
				}
				body = b.String()
				results[i] = sendTrickle(addr, head, body, 6, 100*time.Millisecond)
				return
			}
			results[i] = sendTrickle(addr, head, body, 1, 100*time.Millisecond)
		})
	}

	// Meanwhile, once key_auth is reading every slow body (its handlers
	// are blocked in the read): other requests are served, and the
	// consumers are swapped (an admin refresh) and the new set is served,
	// all before any slow body has ended. Nothing waited on them.
	eventually(t, "key_auth reading the slow bodies", func() bool {
		return goroutinesIn("keyauth.(*request).readBody(") >= len(results)
	})
	var slowest time.Duration
	for range 20 {
		st := time.Now()
		wantIdentity(t, get(t, base+"/", "apikey", keyAlice), idAlice)
		slowest = max(slowest, time.Since(st))
	}
	e.writeConsumers(doc("carol", "carol-key-1"))
	st := time.Now()
	if status, body := adminRefresh(t); status != http.StatusOK || strings.Contains(body, "refresh_error") {
		t.Errorf("admin refresh during slow bodies: %d %s", status, body)
	}
	refresh := time.Since(st)
	wantIdentity(t, get(t, base+"/", "apikey", "carol-key-1"), identity{"carol", "carol", absent, "carol-1", absent})
	want401(t, get(t, base+"/", "apikey", keyAlice), msgInvalid)
	t.Logf("while bodies trickled: slowest of 20 requests %s, admin refresh %s", slowest, refresh)
	if n := ended.Load(); n > 0 {
		t.Errorf("%d slow bodies ended before the other requests and the refresh were done: they waited on them", n)
	}

	wg.Wait()
	for i, r := range results {
		// The read timeout ends the wait; the answer is the module's 408
		// (the body did not arrive in time, so the request cannot go on
		// intact), or the connection closes.
		t.Logf("slow body %d: %d %q %v after %s", i, r.status, r.body, r.err, r.took.Round(time.Millisecond))
		// The timeout cannot fire early; late is a loaded machine, within
		// reason (the connection's deadline).
		if r.took < readBody-200*time.Millisecond || r.took > readBody+10*time.Second {
			t.Errorf("slow body %d ended after %s; read_body is %s", i, r.took, readBody)
		}
		if r.err == nil && (r.status != http.StatusRequestTimeout || !strings.Contains(r.body, `{"message":"Request timeout"}`)) {
			t.Errorf("slow body %d: %d %q", i, r.status, r.body)
		}
		if r.status >= 500 {
			t.Errorf("slow body %d: a 5xx", i)
		}
	}
	if hits := e.up.hits.Load(); hits != 22 {
		t.Errorf("the upstream got %d requests, want 22 (no slow body reached it)", hits)
	}
}

// hostileJSONCases: deep nesting, huge strings, other top-level values and
// numbers where the key belongs.
func hostileJSONCases() []testCase {
	key := `"apikey": "` + keyAlice + `"`
	nested := func(depth int) string {
		return strings.Repeat(`{"a":[`, depth) + strings.Repeat(`]}`, depth)
	}
	members := func(n int) string {
		var b strings.Builder
		b.WriteByte('{')
		for i := range n {
			fmt.Fprintf(&b, `"k%d": %d, `, i, i)
		}
		return b.String() + key + "}"
	}
	deep := []byte(`{"deep": ` + nested(4000) + `, ` + key + `}`)
	return []testCase{
		postCase("nested 4000 deep, then the key", "/", jsonType, deep, false, pass(idAlice).then(bodyIs(deep))),
		postCase("nested 4000 deep, chunked", "/", jsonType, deep, true, pass(idAlice)),
		// Deeper than encoding/json accepts: not JSON, so no key.
		postCase("nested 20000 deep", "/", jsonType, []byte(`{"deep": `+nested(20000)+`, `+key+`}`), false, reject(msgNoKey)),
		postCase("100000 open brackets", "/", jsonType, []byte(strings.Repeat("[", 100000)), false, reject(msgNoKey)),
		postCase("40000 open objects", "/", jsonType, []byte(strings.Repeat(`{"a":`, 40000)), true, reject(msgNoKey)),
		postCase("key nested, not top level", "/", jsonType, []byte(`{"a": {`+key+`}}`), false, reject(msgNoKey)),
		postCase("200 KB string, then the key", "/", jsonType, []byte(`{"pad": "`+strings.Repeat("x", 200<<10)+`", `+key+`}`), false, pass(idAlice)),
		postCase("40000 escapes, then the key", "/", jsonType, []byte(`{"pad": "`+strings.Repeat(`\u0041`, 40000)+`", `+key+`}`), false, pass(idAlice)),
		postCase("200 KB name", "/", jsonType, []byte(`{"`+strings.Repeat("n", 200<<10)+`": 1, `+key+`}`), false, pass(idAlice)),
		postCase("escaped name", "/", jsonType, []byte(`{"api\u006bey": "`+keyAlice+`"}`), false, pass(idAlice)),
		postCase("plain and escaped name", "/", jsonType, []byte(`{`+key+`, "\u0061pikey": "x"}`), false, reject(msgDuplicate)),
		postCase("key twice", "/", jsonType, []byte(`{`+key+`, `+key+`}`), false, reject(msgDuplicate)),
		postCase("20000 members, then the key", "/", jsonType, []byte(members(20000)), false, pass(idAlice)),
		postCase("over max_body_size", "/", jsonType, []byte(`{`+key+`, "pad": "`+strings.Repeat("x", 600<<10)+`"}`), false, reject(msgNoKey)),
		postCase("top-level array", "/", jsonType, []byte(`[{`+key+`}]`), false, reject(msgNoKey)),
		postCase("top-level string", "/", jsonType, []byte(`"`+keyAlice+`"`), false, reject(msgNoKey)),
		postCase("top-level number", "/", jsonType, []byte(`12345`), false, reject(msgNoKey)),
		postCase("number key", "/", jsonType, []byte(`{"apikey": 12345}`), false, reject(msgNoKey)),
		postCase("huge number key", "/", jsonType, []byte(`{"apikey": 1e999999999}`), false, reject(msgNoKey)),
		postCase("long number key", "/", jsonType, []byte(`{"apikey": `+strings.Repeat("9", 100000)+`}`), false, reject(msgNoKey)),
		postCase("true key", "/", jsonType, []byte(`{"apikey": true}`), false, reject(msgNoKey)),
		postCase("null key", "/", jsonType, []byte(`{"apikey": null}`), false, reject(msgNoKey)),
		postCase("number key, key in header", "/", jsonType, []byte(`{"apikey": 1}`), false, pass(idAlice), "Apikey", keyAlice),
		postCase("array key", "/", jsonType, []byte(`{"apikey": ["`+keyAlice+`"]}`), false, reject(msgDuplicate)),
		postCase("object key", "/", jsonType, []byte(`{"apikey": {"k": "`+keyAlice+`"}}`), false, reject(msgDuplicate)),
		postCase("trailing garbage", "/", jsonType, []byte(`{`+key+`} x`), false, reject(msgNoKey)),
		postCase("two objects", "/", jsonType, []byte(`{`+key+`}{`+key+`}`), false, reject(msgNoKey)),
		postCase("empty body", "/", jsonType, nil, false, reject(msgNoKey)),
	}
}

// hostileMultipartCases: a large file part before the key, a missing closing
// boundary, thousands of parts; none of it is written to disk.
func hostileMultipartCases() []testCase {
	keyPart := part{name: "apikey", value: keyAlice}
	bigFile := part{name: "upload", file: "big.bin", value: strings.Repeat("\x00\xff-file-", 200<<10/8)}
	hugeFile := part{name: "upload", file: "huge.bin", value: strings.Repeat("f", 1<<20)}
	var parts, keys []part
	for i := range 5000 {
		parts = append(parts, part{name: fmt.Sprintf("f%d", i), value: "x"})
		keys = append(keys, keyPart)
	}
	withKey := append(append([]part(nil), parts...), keyPart)
	fileParts := make([]part, 3000)
	for i := range fileParts {
		fileParts[i] = part{name: "file", file: fmt.Sprintf("f%d.txt", i), value: "data"}
	}
	fileParts = append(fileParts, keyPart)
	manyBody := rawMultipart(true, withKey...)
	var ctypeParams string
	for i := range 1000 {
		ctypeParams += fmt.Sprintf("; p%d=%d", i, i)
	}
	return []testCase{
		postCase("200 KB file, then the key", "/", multipartType, rawMultipart(true, bigFile, keyPart), false, pass(idAlice)),
		postCase("200 KB file, then the key, chunked", "/", multipartType, rawMultipart(true, bigFile, keyPart), true, pass(idAlice)),
		// Over max_body_size the body is not searched.
		postCase("1 MB file, then the key", "/", multipartType, rawMultipart(true, hugeFile, keyPart), false, reject(msgNoKey)),
		postCase("1 MB file, then the key, chunked", "/", multipartType, rawMultipart(true, hugeFile, keyPart), true, reject(msgNoKey)),
		postCase("1 MB file, key in header", "/", multipartType, rawMultipart(true, hugeFile, keyPart), true, pass(idAlice), "Apikey", keyAlice),
		postCase("no closing boundary", "/", multipartType, rawMultipart(false, keyPart), false, reject(msgNoKey)),
		postCase("no closing boundary after a file", "/", multipartType, rawMultipart(false, bigFile, keyPart), true, reject(msgNoKey)),
		postCase("cut inside a part", "/", multipartType, rawMultipart(true, keyPart)[:60], false, reject(msgNoKey)),
		postCase("5000 parts, then the key", "/", multipartType, manyBody, false, pass(idAlice).then(bodyIs(manyBody))),
		postCase("5000 parts, then the key, chunked", "/", multipartType, manyBody, true, pass(idAlice)),
		postCase("5000 key parts", "/", multipartType, rawMultipart(true, keys...), false, reject(msgDuplicate)),
		postCase("3000 file parts, then the key", "/", multipartType, rawMultipart(true, fileParts...), false, pass(idAlice)),
		postCase("the key as a file", "/", multipartType, rawMultipart(true, part{name: "apikey", file: "k.txt", value: keyAlice}), false, reject(msgNoKey)),
		postCase("a 100 KB part header", "/", multipartType,
			append([]byte("--"+mpBoundary+"\r\nX-Pad: "+strings.Repeat("p", 100<<10)+"\r\n"), rawMultipart(true, keyPart)[len(mpBoundary)+4:]...),
			false, pass(idAlice)),
		postCase("boundary over 70 bytes", "/", "multipart/form-data; boundary="+strings.Repeat("b", 71), rawMultipart(true, keyPart), false, reject(msgNoKey)),
		postCase("no boundary", "/", "multipart/form-data", rawMultipart(true, keyPart), false, reject(msgNoKey)),
		postCase("content type with 1000 parameters", "/", multipartType+ctypeParams, rawMultipart(true, keyPart), false, pass(idAlice)),
		postCase("two boundaries", "/", multipartType+"; boundary=other", rawMultipart(true, keyPart), false, reject(msgNoKey)),
	}
}

// Hostile bodies: JSON nested thousands deep, huge strings and numbers
// where the key belongs; multipart bodies with large files, thousands of
// parts, no closing boundary. Each ends in a defined answer, never a 5xx
// or a hang, and no multipart body ever reaches the disk.
func TestHostileBodies(t *testing.T) {
	newHostileEnv(t)
	// The module never uses ReadForm, so nothing is spilled: had it been,
	// it would be here.
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cl := keepAliveClient()
	defer cl.CloseIdleConnections()
	start := time.Now()
	t.Run("json", func(t *testing.T) { runCases(t, cl, hostileSite, hostileJSONCases()) })
	t.Run("multipart", func(t *testing.T) { runCases(t, cl, hostileSite, hostileMultipartCases()) })
	t.Logf("%d hostile requests in %s", len(hostileJSONCases())+len(hostileMultipartCases()), time.Since(start))
	if ents, err := os.ReadDir(tmp); err != nil || len(ents) != 0 {
		t.Errorf("TMPDIR holds %d entries (%v): a body went to disk", len(ents), err)
	}
}
