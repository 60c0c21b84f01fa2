package integration

// Issue 5, "Hostile requests": every request below ends in a defined answer
// (200, 401 or 413 from the module, or a 4xx Go's server gives before any
// handler runs), never a 5xx or a hang, and thousands of them leave the
// heap where it was.

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// hardInputConfig has four sites: site searches every location with a
// body limit; site2 also hides the key and falls back to the anonymous
// consumer; site3 has a request_body limit before key_auth; site4 is site
// answering by itself, for the loops that measure the module rather than
// the upstream. The header limit
// is raised to 1MB so that 100 KB keys reach the module.
const hardInputConfig = `{{.Global}}
{{.Site}} {
	key_auth {
		key_names apikey authorization
		key_in_body true
		max_body_size 512KiB
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
{{.Site2}} {
	key_auth {
		key_in_body true
		max_body_size 512KiB
		hide_credentials
		anonymous guest
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
{{.Site3}} {
	request_body {
		max_size 64KiB
	}
	key_auth {
		key_in_body true
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
{{.Site4}} {
	route {
		key_auth {
			key_names apikey authorization
			key_in_body true
			max_body_size 512KiB
			consumers file {{.Consumers}}
		}
		header X-Echo upstream
		respond 200
	}
}
`

var (
	hardSite     = site
	hardHideSite = site2
	hardCapSite  = site3
	hardBareSite = site4
)

// hardServers raises the header limit (and bounds a slow body) for every
// server of a config.
const hardServers = `	servers {
		max_header_size 1MB
		timeouts {
			read_body 5s
		}
	}
`

func hardInputEnv(t *testing.T) *env {
	e := newEnv(t)
	hardConsumers(e)
	e.vars["GlobalExtra"] = hardServers
	e.load(hardInputConfig, "caddyfile")
	return e
}

// hardBoundary is the boundary of the multipart bodies built here.
const hardBoundary = "hard-boundary"

var multipartType = "multipart/form-data; boundary=" + hardBoundary

// hardMultipart encodes parts with hardBoundary; close=false leaves the
// closing boundary out.
func hardMultipart(close bool, parts ...part) []byte {
	var b bytes.Buffer
	for _, p := range parts {
		fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=\"%s\"", hardBoundary, p.name)
		if p.file != "" {
			fmt.Fprintf(&b, "; filename=\"%s\"\r\nContent-Type: application/octet-stream", p.file)
		}
		fmt.Fprintf(&b, "\r\n\r\n%s\r\n", p.value)
	}
	if close {
		fmt.Fprintf(&b, "--%s--\r\n", hardBoundary)
	}
	return b.Bytes()
}

// hardParams is n query or form pairs p0=0&p1=1&...
func hardParams(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte('&')
		}
		fmt.Fprintf(&b, "p%d=%d", i, i)
	}
	return b.String()
}

// hardQueryIs checks that the upstream got exactly the query sent.
func hardQueryIs(query string) func(t *testing.T, e *echo) {
	return func(t *testing.T, e *echo) {
		t.Helper()
		if want := "/?" + query; e.URI != want {
			t.Errorf("upstream got a URI of %d bytes, want the %d sent", len(e.URI), len(want))
		}
	}
}

// hardBodyIs checks that the upstream got exactly body.
func hardBodyIs(body []byte) func(t *testing.T, e *echo) {
	return func(t *testing.T, e *echo) {
		t.Helper()
		if e.BodyLen != len(body) || !bytes.Equal(e.Body, body) {
			t.Errorf("upstream got a body of %d bytes, want the %d sent", e.BodyLen, len(body))
		}
	}
}

// hardBytesCases: keys with invalid UTF-8, NUL and control bytes in every
// location. Go's server refuses a control byte in the request line or a
// header (400) before any handler; a byte of 0x80 and up reaches the module.
func hardBytesCases() []hardCase {
	q := func(v string) string { return "/?apikey=" + v }
	return []hardCase{
		hardGet("query invalid UTF-8", q("%ff%fe%fd"), hardReject(msgInvalid)),
		hardGet("query NUL alone", q("%00"), hardReject(msgInvalid)),
		hardGet("query key then NUL", q(escapeAll(keyAlice+"\x00")), hardReject(msgInvalid)),
		hardGet("query overlong NUL", q("%C0%80"), hardReject(msgInvalid)),
		hardGet("query lone surrogate", q("%ED%A0%80"), hardReject(msgInvalid)),
		hardGet("query broken escape", q("%zz%"), hardReject(msgInvalid)),
		hardGet("query control key", q(escapeAll(hardCtlKey)), hardPass(idOddCtl)),
		hardGet("query UTF-8 key", q(url.QueryEscape(hardUTF8Key)), hardPass(idOddUTF8)),
		hardRawCase("raw request line with 0xff", "GET", "/?apikey=\xff\xfe", nil, hardReject(msgInvalid)),
		hardRawCase("raw request line with NUL", "GET", "/?apikey=a\x00b", nil, hardServer(http.StatusBadRequest)),
		hardRawCase("raw request line with DEL", "GET", "/?apikey=a\x7fb", nil, hardServer(http.StatusBadRequest)),
		hardRawCase("raw header invalid UTF-8", "GET", "/", nil, hardReject(msgInvalid), "Apikey", "\xff\xfe\x80"),
		hardRawCase("raw header NUL", "GET", "/", nil, hardServer(http.StatusBadRequest), "Apikey", keyAlice+"\x00"),
		hardRawCase("raw header control byte", "GET", "/", nil, hardServer(http.StatusBadRequest), "Apikey", "a\x01b"),
		hardRawCase("raw header DEL", "GET", "/", nil, hardServer(http.StatusBadRequest), "Apikey", "a\x7fb"),
		hardRawCase("raw header bare CR", "GET", "/", nil, hardServer(http.StatusBadRequest), "Apikey", "a\rb"),
		hardRawCase("raw header UTF-8 key", "GET", "/", nil, hardPass(idOddUTF8), "apikey", hardUTF8Key),
		hardRawCase("raw header tab inside", "GET", "/", nil, hardReject(msgInvalid), "Apikey", "alice\tsecret"),
		// Leading and trailing white space is no part of a header value.
		hardRawCase("raw header padded with tabs", "GET", "/", nil, hardPass(idAlice), "Apikey", "\t "+keyAlice+" \t"),
		hardRawCase("raw header name with a space", "GET", "/", nil, hardServer(http.StatusBadRequest), "Api key", keyAlice),
		// Go's server joins a folded line with a space: "alice secret-0001".
		hardRawCase("raw header folded", "GET", "/", nil, hardReject(msgInvalid), "Apikey", "alice\r\n secret-0001"),
		hardRawCase("raw header name with a space before the colon", "GET", "/", nil, hardServer(http.StatusBadRequest), "Apikey ", keyAlice),
		hardRawCase("raw header name with 0xff", "GET", "/", nil, hardServer(http.StatusBadRequest), "Apikey\xff", keyAlice),
		hardRawCase("raw Authorization invalid UTF-8", "GET", "/", nil, hardReject(msgInvalid), "Authorization", "Bearer \xc3\x28"),
		hardPost("form invalid UTF-8 and NUL", "/", formType, []byte("apikey=%ff%00%01"), false, hardReject(msgInvalid)),
		hardPost("form raw bytes", "/", formType, []byte("apikey=\xff\x00\x01"), false, hardReject(msgInvalid)),
		hardPost("form control key", "/", formType, []byte("apikey="+escapeAll(hardCtlKey)), false, hardPass(idOddCtl)),
		hardPost("JSON NUL", "/", jsonType, []byte(`{"apikey": "\u0000"}`), false, hardReject(msgInvalid)),
		// No key with control bytes can be loaded (issue 8): never a match.
		hardPost("JSON control key", "/", jsonType, []byte(`{"apikey": "ctl\u0000\u0001\u001f\u007f-key"}`), false, hardReject(msgInvalid)),
		hardPost("JSON escaped key", "/", jsonType, []byte(`{"apikey": "ctl \"\\%00+&=;#?<>'\u0060-key"}`), false, hardPass(idOddCtl)),
		hardPost("JSON raw invalid UTF-8", "/", jsonType, []byte("{\"apikey\": \""+keyAlice+"\xff\"}"), false, hardReject(msgInvalid)),
		hardPost("JSON lone surrogate", "/", jsonType, []byte(`{"apikey": "\ud800"}`), false, hardReject(msgInvalid)),
		// A raw control byte in a JSON string is not JSON: no key.
		hardPost("JSON raw control byte", "/", jsonType, []byte("{\"apikey\": \"a\x01\"}"), false, hardReject(msgNoKey)),
		hardPost("JSON UTF-8 key", "/", jsonType, []byte(`{"apikey": "`+hardUTF8Key+`"}`), false, hardPass(idOddUTF8)),
		hardPost("multipart control key", "/", multipartType, hardMultipart(true, part{name: "apikey", value: hardCtlKey}), false, hardPass(idOddCtl)),
		hardPost("multipart invalid UTF-8", "/", multipartType, hardMultipart(true, part{name: "apikey", value: "\xff\xfe\x00"}), false, hardReject(msgInvalid)),
		hardPost("multipart name with NUL", "/", multipartType, hardMultipart(true, part{name: "apikey\x00", value: keyAlice}), false, hardReject(msgNoKey)),
	}
}

// hardLongCases: keys far over model.MaxKeyLength in every location,
// and the longest valid one.
func hardLongCases() []hardCase {
	huge := hardLong(100 << 10)
	return []hardCase{
		hardGet("header 100 KB", "/", hardReject(msgInvalid), "Apikey", huge),
		hardGet("Bearer 100 KB", "/", hardReject(msgInvalid), "Authorization", "Bearer "+huge),
		hardGet("query 100 KB", "/?apikey="+huge, hardReject(msgInvalid)),
		hardGet("query 100 KB percent-encoded", "/?apikey="+escapeAll(huge[:40<<10]), hardReject(msgInvalid)),
		hardPost("form 100 KB", "/", formType, []byte("apikey="+huge), false, hardReject(msgInvalid)),
		hardPost("JSON 100 KB", "/", jsonType, []byte(`{"apikey": "`+huge+`"}`), false, hardReject(msgInvalid)),
		hardPost("multipart 100 KB", "/", multipartType, hardMultipart(true, part{name: "apikey", value: huge}), true, hardReject(msgInvalid)),
		hardGet("header at the cap", "/", hardPass(idOddLong), "Apikey", hardLongKey),
		hardGet("query at the cap", "/?apikey="+hardLongKey, hardPass(idOddLong)),
		hardPost("JSON at the cap", "/", jsonType, []byte(`{"apikey": "`+hardLongKey+`"}`), false, hardPass(idOddLong)),
		hardGet("header one over the cap", "/", hardReject(msgInvalid), "Apikey", hardLongKey+"x"),
		hardGet("query one over the cap", "/?apikey="+hardLongKey+"x", hardReject(msgInvalid)),
		// Over max_header_size, Go's server answers before any handler.
		hardGet("header over max_header_size", "/", hardServer(http.StatusRequestHeaderFieldsTooLarge), "Apikey", hardLong(1100<<10)),
	}
}

// hardRepeatCases: names repeated hundreds of times, ten thousand query
// parameters and key names percent-encoded in several spellings.
func hardRepeatCases() []hardCase {
	var repeated, spellings []string
	for range 500 {
		repeated = append(repeated, "Apikey", keyAlice)
	}
	for i := range 300 {
		spellings = append(spellings, []string{"apikey", "APIKEY", "ApiKey"}[i%3], keyAlice)
	}
	var bearers []string
	for range 300 {
		bearers = append(bearers, "Authorization", "Bearer "+keyAlice)
	}
	var others, connection []string
	for i := range 10000 {
		others = append(others, fmt.Sprintf("X-H%d", i), "v")
	}
	others = append(others, "Apikey", keyAlice)
	for range 500 {
		connection = append(connection, "Connection", "X-Consumer-Id, x-anonymous-consumer, X-Credential-Identifier")
	}
	connection = append(connection, "Apikey", keyAlice)
	many := hardParams(10000)
	dups := strings.Repeat("apikey="+keyAlice+"&", 9999) + "apikey=" + keyAlice
	enc := escapeAll(keyAlice)
	return []hardCase{
		hardGet("header 500 times", "/", hardReject(msgDuplicate), repeated...),
		hardGet("header 300 times in three spellings", "/", hardReject(msgDuplicate), spellings...),
		hardGet("Authorization 300 times", "/", hardReject(msgDuplicate), bearers...),
		hardGet("10000 other headers", "/", hardPass(idAlice), others...),
		hardGet("500 Connection headers naming the identity headers", "/", hardPass(idAlice), connection...),
		hardGet("10000 params, key last", "/?"+many+"&apikey="+keyAlice, hardWant{outcome: pass(idAlice), upstream: hardQueryIs(many + "&apikey=" + keyAlice)}),
		hardGet("10000 params, key first", "/?apikey="+keyAlice+"&"+many, hardPass(idAlice)),
		hardGet("10000 params, no key", "/?"+many, hardReject(msgNoKey)),
		hardGet("10000 params, wrong key", "/?"+many+"&apikey="+keyWrong, hardReject(msgInvalid)),
		hardGet("10000 keys", "/?"+dups, hardReject(msgDuplicate)),
		hardGet("10000 params without '='", "/?"+strings.Repeat("apikey&", 10000), hardReject(msgNoKey)),
		hardGet("10000 empty pairs", "/?"+strings.Repeat("&", 10000)+"apikey="+keyAlice, hardPass(idAlice)),
		hardGet("name api%6Bey", "/?api%6Bey="+enc, hardPass(idAlice)),
		hardGet("name fully encoded", "/?%61%70%69%6b%65%79="+enc, hardPass(idAlice)),
		hardGet("name plain and encoded", "/?apikey="+enc+"&api%6bey="+enc, hardReject(msgDuplicate)),
		hardGet("name in three spellings", "/?api%6Bey=a&%61pikey=b&apik%65y=c", hardReject(msgDuplicate)),
		hardGet("name double-encoded", "/?api%256Bey="+enc, hardReject(msgNoKey)),
		hardGet("name with encoded NUL", "/?apikey%00="+enc, hardReject(msgNoKey)),
		hardGet("name in upper case", "/?APIKEY="+enc, hardReject(msgNoKey)),
		hardGet("name with a plus", "/?api+key="+enc, hardReject(msgNoKey)),
		hardGet("name broken escape", "/?api%6="+enc, hardReject(msgNoKey)),
		hardPost("form 10000 params, key last", "/", formType, []byte(many+"&apikey="+enc), false, hardPass(idAlice)),
		hardPost("form name spellings", "/", formType, []byte("api%6Bey="+enc+"&apikey="+enc), false, hardReject(msgDuplicate)),
		hardPost("form 10000 keys", "/", formType, []byte(dups), true, hardReject(msgDuplicate)),
	}
}

// hardJSONCases: deep nesting, huge strings, other top-level values and
// numbers where the key belongs.
func hardJSONCases() []hardCase {
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
	return []hardCase{
		hardPost("nested 4000 deep, then the key", "/", jsonType, deep, false, hardWant{outcome: pass(idAlice), upstream: hardBodyIs(deep)}),
		hardPost("nested 4000 deep, chunked", "/", jsonType, deep, true, hardPass(idAlice)),
		// Deeper than encoding/json accepts: not JSON, so no key.
		hardPost("nested 20000 deep", "/", jsonType, []byte(`{"deep": `+nested(20000)+`, `+key+`}`), false, hardReject(msgNoKey)),
		hardPost("100000 open brackets", "/", jsonType, []byte(strings.Repeat("[", 100000)), false, hardReject(msgNoKey)),
		hardPost("40000 open objects", "/", jsonType, []byte(strings.Repeat(`{"a":`, 40000)), true, hardReject(msgNoKey)),
		hardPost("key nested, not top level", "/", jsonType, []byte(`{"a": {`+key+`}}`), false, hardReject(msgNoKey)),
		hardPost("200 KB string, then the key", "/", jsonType, []byte(`{"pad": "`+strings.Repeat("x", 200<<10)+`", `+key+`}`), false, hardPass(idAlice)),
		hardPost("40000 escapes, then the key", "/", jsonType, []byte(`{"pad": "`+strings.Repeat(`\u0041`, 40000)+`", `+key+`}`), false, hardPass(idAlice)),
		hardPost("200 KB name", "/", jsonType, []byte(`{"`+strings.Repeat("n", 200<<10)+`": 1, `+key+`}`), false, hardPass(idAlice)),
		hardPost("escaped name", "/", jsonType, []byte(`{"api\u006bey": "`+keyAlice+`"}`), false, hardPass(idAlice)),
		hardPost("plain and escaped name", "/", jsonType, []byte(`{`+key+`, "\u0061pikey": "x"}`), false, hardReject(msgDuplicate)),
		hardPost("key twice", "/", jsonType, []byte(`{`+key+`, `+key+`}`), false, hardReject(msgDuplicate)),
		hardPost("20000 members, then the key", "/", jsonType, []byte(members(20000)), false, hardPass(idAlice)),
		hardPost("over max_body_size", "/", jsonType, []byte(`{`+key+`, "pad": "`+strings.Repeat("x", 600<<10)+`"}`), false, hardReject(msgNoKey)),
		hardPost("top-level array", "/", jsonType, []byte(`[{`+key+`}]`), false, hardReject(msgNoKey)),
		hardPost("top-level string", "/", jsonType, []byte(`"`+keyAlice+`"`), false, hardReject(msgNoKey)),
		hardPost("top-level number", "/", jsonType, []byte(`12345`), false, hardReject(msgNoKey)),
		hardPost("number key", "/", jsonType, []byte(`{"apikey": 12345}`), false, hardReject(msgNoKey)),
		hardPost("huge number key", "/", jsonType, []byte(`{"apikey": 1e999999999}`), false, hardReject(msgNoKey)),
		hardPost("long number key", "/", jsonType, []byte(`{"apikey": `+strings.Repeat("9", 100000)+`}`), false, hardReject(msgNoKey)),
		hardPost("true key", "/", jsonType, []byte(`{"apikey": true}`), false, hardReject(msgNoKey)),
		hardPost("null key", "/", jsonType, []byte(`{"apikey": null}`), false, hardReject(msgNoKey)),
		hardPost("number key, key in header", "/", jsonType, []byte(`{"apikey": 1}`), false, hardPass(idAlice), "Apikey", keyAlice),
		hardPost("array key", "/", jsonType, []byte(`{"apikey": ["`+keyAlice+`"]}`), false, hardReject(msgDuplicate)),
		hardPost("object key", "/", jsonType, []byte(`{"apikey": {"k": "`+keyAlice+`"}}`), false, hardReject(msgDuplicate)),
		hardPost("trailing garbage", "/", jsonType, []byte(`{`+key+`} x`), false, hardReject(msgNoKey)),
		hardPost("two objects", "/", jsonType, []byte(`{`+key+`}{`+key+`}`), false, hardReject(msgNoKey)),
		hardPost("empty body", "/", jsonType, nil, false, hardReject(msgNoKey)),
	}
}

// hardMultipartCases: a large file part before the key, a missing closing
// boundary, thousands of parts; none of it is written to disk.
func hardMultipartCases() []hardCase {
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
	manyBody := hardMultipart(true, withKey...)
	var ctypeParams string
	for i := range 1000 {
		ctypeParams += fmt.Sprintf("; p%d=%d", i, i)
	}
	return []hardCase{
		hardPost("200 KB file, then the key", "/", multipartType, hardMultipart(true, bigFile, keyPart), false, hardPass(idAlice)),
		hardPost("200 KB file, then the key, chunked", "/", multipartType, hardMultipart(true, bigFile, keyPart), true, hardPass(idAlice)),
		// Over max_body_size the body is not searched.
		hardPost("1 MB file, then the key", "/", multipartType, hardMultipart(true, hugeFile, keyPart), false, hardReject(msgNoKey)),
		hardPost("1 MB file, then the key, chunked", "/", multipartType, hardMultipart(true, hugeFile, keyPart), true, hardReject(msgNoKey)),
		hardPost("1 MB file, key in header", "/", multipartType, hardMultipart(true, hugeFile, keyPart), true, hardPass(idAlice), "Apikey", keyAlice),
		hardPost("no closing boundary", "/", multipartType, hardMultipart(false, keyPart), false, hardReject(msgNoKey)),
		hardPost("no closing boundary after a file", "/", multipartType, hardMultipart(false, bigFile, keyPart), true, hardReject(msgNoKey)),
		hardPost("cut inside a part", "/", multipartType, hardMultipart(true, keyPart)[:60], false, hardReject(msgNoKey)),
		hardPost("5000 parts, then the key", "/", multipartType, manyBody, false, hardWant{outcome: pass(idAlice), upstream: hardBodyIs(manyBody)}),
		hardPost("5000 parts, then the key, chunked", "/", multipartType, manyBody, true, hardPass(idAlice)),
		hardPost("5000 key parts", "/", multipartType, hardMultipart(true, keys...), false, hardReject(msgDuplicate)),
		hardPost("3000 file parts, then the key", "/", multipartType, hardMultipart(true, fileParts...), false, hardPass(idAlice)),
		hardPost("the key as a file", "/", multipartType, hardMultipart(true, part{name: "apikey", file: "k.txt", value: keyAlice}), false, hardReject(msgNoKey)),
		hardPost("a 100 KB part header", "/", multipartType,
			append([]byte("--"+hardBoundary+"\r\nX-Pad: "+strings.Repeat("p", 100<<10)+"\r\n"), hardMultipart(true, keyPart)[len(hardBoundary)+4:]...),
			false, hardPass(idAlice)),
		hardPost("boundary over 70 bytes", "/", "multipart/form-data; boundary="+strings.Repeat("b", 71), hardMultipart(true, keyPart), false, hardReject(msgNoKey)),
		hardPost("no boundary", "/", "multipart/form-data", hardMultipart(true, keyPart), false, hardReject(msgNoKey)),
		hardPost("content type with 1000 parameters", "/", multipartType+ctypeParams, hardMultipart(true, keyPart), false, hardPass(idAlice)),
		hardPost("two boundaries", "/", multipartType+"; boundary=other", hardMultipart(true, keyPart), false, hardReject(msgNoKey)),
	}
}

func hardAllCases() []hardCase {
	var all []hardCase
	for _, cs := range [][]hardCase{hardBytesCases(), hardLongCases(), hardRepeatCases(), hardJSONCases(), hardMultipartCases()} {
		all = append(all, cs...)
	}
	return all
}

// TestHardeningHostileRequests sends each hostile request once and checks
// its answer; no multipart body ever reaches the disk.
func TestHardeningHostileRequests(t *testing.T) {
	hardInputEnv(t)
	// The module never uses ReadForm, so nothing is spilled: had it been,
	// it would be here.
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cl := keepAliveClient()
	defer cl.CloseIdleConnections()
	start := time.Now()
	t.Run("bytes", func(t *testing.T) { hardRun(t, cl, hardSite, hardBytesCases()) })
	t.Run("long", func(t *testing.T) { hardRun(t, cl, hardSite, hardLongCases()) })
	t.Run("repeat", func(t *testing.T) { hardRun(t, cl, hardSite, hardRepeatCases()) })
	t.Run("json", func(t *testing.T) { hardRun(t, cl, hardSite, hardJSONCases()) })
	t.Run("multipart", func(t *testing.T) { hardRun(t, cl, hardSite, hardMultipartCases()) })
	t.Logf("%d hostile requests in %s", len(hardAllCases()), time.Since(start))
	if ents, err := os.ReadDir(tmp); err != nil || len(ents) != 0 {
		t.Errorf("TMPDIR holds %d entries (%v): a body went to disk", len(ents), err)
	}
}

// TestHardeningHostileHidden: the same kinds of requests where the key is
// hidden from the upstream, or the anonymous consumer takes over, and a
// body limit before key_auth answers 413.
func TestHardeningHostileHidden(t *testing.T) {
	hardInputEnv(t)
	cl := keepAliveClient()
	defer cl.CloseIdleConnections()
	many := hardParams(10000)
	enc := escapeAll(keyAlice)
	upQuery := func(want string) func(*testing.T, *echo) {
		return func(t *testing.T, e *echo) {
			t.Helper()
			if e.URI != want {
				t.Errorf("upstream got URI %.200q (%d bytes), want %.200q (%d bytes)", e.URI, len(e.URI), want, len(want))
			}
		}
	}
	noKey := func(t *testing.T, e *echo) {
		t.Helper()
		if e.has("Apikey") || strings.Contains(e.URI, enc) || bytes.Contains(e.Body, []byte(keyAlice)) || bytes.Contains(e.Body, []byte(hardCtlKey)) {
			t.Errorf("the key reached the upstream: %s %v %.300q", e.URI, e.Header, e.Body)
		}
		if e.ContentLength >= 0 && e.ContentLength != int64(e.BodyLen) {
			t.Errorf("Content-Length %d for %d bytes", e.ContentLength, e.BodyLen)
		}
	}
	both := func(fs ...func(*testing.T, *echo)) func(*testing.T, *echo) {
		return func(t *testing.T, e *echo) {
			t.Helper()
			for _, f := range fs {
				f(t, e)
			}
		}
	}
	var many5000 []part
	for i := range 5000 {
		many5000 = append(many5000, part{name: fmt.Sprintf("f%d", i), value: "x"})
	}
	mpBody := hardMultipart(true, append(many5000, part{name: "apikey", value: keyAlice})...)
	deep := strings.Repeat(`{"a":[`, 4000) + strings.Repeat(`]}`, 4000)
	var repeated []string
	for range 300 {
		repeated = append(repeated, "Apikey", keyWrong)
	}
	cases := []hardCase{
		hardGet("encoded name hidden, rest kept", "/?x=1&api%6Bey="+enc+"&y=%zz", hardWant{outcome: pass(idAlice), upstream: both(noKey, upQuery("/?x=1&y=%zz"))}),
		hardGet("10000 params kept in order", "/?"+many+"&apikey="+enc, hardWant{outcome: pass(idAlice), upstream: both(noKey, upQuery("/?"+many))}),
		hardPost("deep JSON re-encoded", "/", jsonType, []byte(`{"deep": `+deep+`, "apikey": "`+keyAlice+`"}`), false,
			hardWant{outcome: pass(idAlice), upstream: both(noKey, func(t *testing.T, e *echo) {
				if string(e.Body) != `{"deep": `+deep+`}` {
					t.Errorf("upstream got %.200q", e.Body)
				}
			})}),
		hardPost("5000 parts re-encoded", "/", multipartType, mpBody, true, hardWant{outcome: pass(idAlice), upstream: both(noKey, func(t *testing.T, e *echo) {
			if want := len(mpBody) - len(hardMultipart(false, part{name: "apikey", value: keyAlice})); e.BodyLen != want {
				t.Errorf("upstream got %d bytes, want %d", e.BodyLen, want)
			}
		})}),
		hardPost("control key in a form", "/?x", formType, []byte("a=1&apikey="+escapeAll(hardCtlKey)+"&b=2"), false,
			hardWant{outcome: pass(idOddCtl), upstream: both(noKey, func(t *testing.T, e *echo) {
				if string(e.Body) != "a=1&b=2" {
					t.Errorf("upstream got %q", e.Body)
				}
			})}),
		// The anonymous fallback removes a rejected key from everywhere.
		hardGet("anonymous: 300 wrong header keys", "/", hardWant{outcome: pass(idGuest), upstream: func(t *testing.T, e *echo) {
			if e.has("Apikey") {
				t.Error("the rejected keys reached the upstream")
			}
		}}, repeated...),
		hardGet("anonymous: 100 KB key", "/?apikey="+hardLong(100<<10)+"&z=1", hardWant{outcome: pass(idGuest), upstream: upQuery("/?z=1")}),
		hardPost("anonymous: invalid UTF-8 in JSON", "/", jsonType, []byte("{\"apikey\": \"\xff\", \"z\": 1}"), false,
			hardWant{outcome: pass(idGuest), upstream: func(t *testing.T, e *echo) {
				if string(e.Body) != `{"z": 1}` {
					t.Errorf("upstream got %q", e.Body)
				}
			}}),
		hardPost("anonymous: no closing boundary", "/", multipartType, hardMultipart(false, part{name: "apikey", value: keyAlice}), false,
			hardWant{outcome: pass(idGuest), upstream: hardBodyIs(hardMultipart(false, part{name: "apikey", value: keyAlice}))}),
	}
	hardRun(t, cl, hardHideSite, cases)

	// A body limit before key_auth: the search runs into it, 413.
	over := hardMultipart(true, append(many5000, part{name: "apikey", value: keyAlice})...)
	hardRun(t, cl, hardCapSite, []hardCase{
		hardPost("5000 parts over request_body, chunked", "/", multipartType, over, true,
			hardWant{outcome: outcome{status: http.StatusRequestEntityTooLarge, message: "Request body too large"}}),
		hardPost("JSON over request_body, chunked", "/", jsonType, []byte(`{"pad": "`+strings.Repeat("x", 100<<10)+`"}`), true,
			hardWant{outcome: outcome{status: http.StatusRequestEntityTooLarge, message: "Request body too large"}}),
		hardPost("under request_body", "/", jsonType, []byte(`{"apikey": "`+keyAlice+`"}`), true, hardPass(idAlice)),
	})
	// request_body itself refuses a declared length over its limit, before
	// key_auth runs: Caddy's own empty 413.
	r, err := send(cl, req(http.MethodPost, hardCapSite+"/", bytes.NewReader(over), "Content-Type", multipartType))
	if err != nil || r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("a declared length over request_body: %v %v", r, err)
	}
}

// TestHardeningHostileMemory sends every hostile request 15 times from 8
// clients, some 1700 requests: the answers stay right, and the heap and the
// goroutines come back to where they were, whatever the attack sent.
func TestHardeningHostileMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("sends thousands of requests")
	}
	hardInputEnv(t)
	cl := keepAliveClient()
	defer cl.CloseIdleConnections()
	cases := hardAllCases()
	var sent int64 // per round, roughly: bodies, queries and header values
	for _, c := range cases {
		if c.build == nil {
			continue
		}
		r := c.build("http://x")
		sent += max(r.ContentLength, 0) + int64(len(r.URL.RawQuery))
		for _, vs := range r.Header {
			for _, v := range vs {
				sent += int64(len(v))
			}
		}
	}
	// Warm up: pools, buffers and lazily made structures reach their size.
	if bad := hardHammer(cl, hardBareSite, cases, 2, 8); len(bad) > 0 {
		t.Fatalf("wrong answers: %q", bad)
	}
	cl.CloseIdleConnections()
	g0 := goroutines()
	h0 := heapInUse()

	const rounds = 15
	start := time.Now()
	bad := hardHammer(cl, hardBareSite, cases, rounds, 8)
	n := rounds * len(cases)
	if len(bad) > 0 {
		t.Errorf("wrong answers: %q", bad)
	}
	cl.CloseIdleConnections()
	g1 := settleGoroutines(g0 + 2)
	h1 := heapInUse()
	runtime.KeepAlive(cases) // the requests' own bytes count in both
	t.Logf("%d hostile requests (%d MB sent) in %s; heap in use %d → %d KB; goroutines %d → %d",
		n, int64(rounds)*sent>>20, time.Since(start).Round(time.Millisecond), h0>>10, h1>>10, g0, g1)
	// The attack sends about 100 MB, 2 MB of it keys per round; keeping
	// the keys, or a twentieth of the rest, would show (a test that kept
	// every key grew by 9 MB over 12 rounds; a clean run moves by less
	// than 1 MB). The bound leaves room for the runtime's and Caddy's own
	// caches.
	const bound = 4 << 20
	if h1 > h0+bound {
		t.Errorf("heap in use grew by %d KB over the attack (bound %d KB)", (h1-h0)>>10, bound>>10)
	}
	if g1 > g0+2 {
		t.Errorf("goroutines: %d before the attack, %d after", g0, g1)
	}
}
