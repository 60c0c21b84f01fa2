package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Rule 5: a key in a form, JSON or multipart body, and the upstream gets
// exactly the bytes the client sent.
func TestBodyKinds(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
	key_auth {
		key_in_body true
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	mp, mpType := multipartBody(t,
		part{name: "note", value: "héllo\r\nworld"},
		part{name: "upload", file: "a.bin", value: "\x00\x01binary apikey=" + keyWrong},
		part{name: "apikey", value: keyAlice},
	)
	mpFile, mpFileType := multipartBody(t, part{name: "apikey", file: "apikey.txt", value: keyAlice})
	mpCut, mpCutType := multipartBody(t, part{name: "apikey", value: keyAlice})
	mpCut = mpCut[:len(mpCut)-8] // no closing boundary
	for _, tc := range []struct {
		name string
		call call
		want outcome
	}{
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

// Rule 5: a body over max_body_size is not searched, and with the key in a
// header a large upload streams through byte for byte. A body limit set
// before key_auth (request_body) gives 413.
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
