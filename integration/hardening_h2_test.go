package integration

// Issue 5: keys in headers, query and body over HTTP/2, with TLS from
// Caddy's internal issuer and over h2c, where header names arrive in lower
// case.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hardH2Config serves the same routes over TLS (h1, h2) on the first site
// port and in clear text (h1, h2c) on the second. It has its own global
// options: Caddy's internal issuer needs automatic HTTPS, which the tests' usual global
// block turns off, and its storage stays in the test's directory.
const hardH2Config = `{
	admin {{.Admin}}
	persist_config off
	http_port {{.HTTPPort}}
	https_port {{.Port}}
	auto_https disable_redirects
	skip_install_trust
	storage file_system {{.Dir}}/storage
	log {
		output file {{.Dir}}/caddy.log
		format json
		level DEBUG
	}
	servers :{{.Port}} {
		protocols h1 h2
		max_header_size 1MB
	}
	servers :{{.Port2}} {
		protocols h1 h2c
		max_header_size 1MB
	}
}
(auth) {
	handle /hide/* {
		key_auth {
			key_names apikey api_key authorization
			key_in_body true
			hide_credentials
			anonymous guest
			consumers file {{.Consumers}}
		}
		reverse_proxy {{.Up}}
	}
	handle {
		key_auth {
			key_names apikey api_key authorization
			key_in_body true
			consumers file {{.Consumers}}
		}
		reverse_proxy {{.Up}}
	}
}
https://localhost:{{.Port}} {
	tls internal
	import auth
}
{{.Site2}} {
	import auth
}
`

// hardProto fails every answer that did not come over the protocol asked
// for, so that no case passes by falling back to HTTP/1.1.
type hardProto struct {
	rt    http.RoundTripper
	major int
}

func (p hardProto) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := p.rt.RoundTrip(r)
	if err == nil && res.ProtoMajor != p.major {
		res.Body.Close()
		return nil, fmt.Errorf("answered over %s, want HTTP/%d", res.Proto, p.major)
	}
	return res, err
}

// hardH2Cases are requests whose header names go out in lower case, as
// HTTP/2 has them.
func hardH2Cases() []hardCase {
	enc := escapeAll(keyAlice)
	mp := hardMultipart(true, part{name: "x", value: "1"}, part{name: "apikey", value: keyAlice})
	hidden := func(t *testing.T, e *echo) {
		t.Helper()
		if e.has("Apikey") || e.has("Api-Key") || e.has("Authorization") || strings.Contains(e.URI, enc) || strings.Contains(string(e.Body), keyAlice) {
			t.Errorf("the key reached the upstream: %s %v %q", e.URI, e.Header, e.Body)
		}
		if e.ContentLength >= 0 && e.ContentLength != int64(e.BodyLen) {
			t.Errorf("Content-Length %d for %d bytes", e.ContentLength, e.BodyLen)
		}
	}
	lower := func(pairs ...string) []string {
		for i := 0; i < len(pairs); i += 2 {
			pairs[i] = strings.ToLower(pairs[i])
		}
		return pairs
	}
	forgedLower := lower(append([]string(nil), forged...)...)
	return []hardCase{
		hardGet("header", "/", hardPass(idAlice), "apikey", keyAlice),
		hardGet("header in upper case", "/", hardPass(idAlice), "APIKEY", keyAlice),
		hardGet("dash header for api_key", "/", hardPass(idAlice), "api-key", keyAlice),
		hardGet("bearer in lower case", "/", hardPass(idAlice), "authorization", "bearer "+keyAlice),
		hardGet("forged identity in lower case", "/", hardPass(idBob), append(forgedLower, "apikey", keyBob)...),
		hardGet("forged identity, no key", "/", hardReject(msgNoKey), forgedLower...),
		hardGet("query", "/?apikey="+enc, hardPass(idAlice)),
		hardGet("query, encoded name", "/?api%6Bey="+enc, hardPass(idAlice)),
		hardPost("form", "/", formType, []byte("apikey="+enc), false, hardPass(idAlice)),
		hardPost("JSON, streamed", "/", jsonType, []byte(`{"apikey": "`+keyAlice+`"}`), true, hardPass(idAlice)),
		hardPost("multipart", "/", multipartType, mp, false, hardPass(idAlice)),
		hardGet("header twice", "/", hardReject(msgDuplicate), "apikey", keyAlice, "apikey", keyAlice),
		hardGet("header in two cases", "/", hardReject(msgDuplicate), "apikey", keyAlice, "APIKEY", keyAlice),
		hardGet("underscore and dash", "/", hardReject(msgNoKey), "api_key", keyAlice),
		hardGet("header 500 times", "/", hardReject(msgDuplicate), hardRepeat(500, "apikey", keyAlice)...),
		hardGet("header 100 KB", "/", hardReject(msgInvalid), "apikey", hardLong(100<<10)),
		hardGet("wrong key", "/", hardReject(msgInvalid), "apikey", keyWrong),
		hardGet("no key", "/", hardReject(msgNoKey)),
		hardGet("hidden header", "/hide/", hardWant{outcome: pass(idAlice), upstream: hidden}, "apikey", keyAlice, "x-other", "kept"),
		hardGet("hidden dash header", "/hide/", hardWant{outcome: pass(idAlice), upstream: hidden}, "api-key", keyAlice),
		hardGet("hidden bearer", "/hide/", hardWant{outcome: pass(idAlice), upstream: hidden}, "authorization", "Bearer "+keyAlice),
		hardGet("hidden query", "/hide/?a=1&apikey="+enc+"&b=2", hardWant{outcome: pass(idAlice), upstream: func(t *testing.T, e *echo) {
			hidden(t, e)
			if e.URI != "/hide/?a=1&b=2" {
				t.Errorf("upstream got %q", e.URI)
			}
		}}),
		hardPost("hidden form, streamed", "/hide/", formType, []byte("a=1&apikey="+enc), true, hardWant{outcome: pass(idAlice), upstream: hidden}),
		hardPost("hidden multipart", "/hide/", multipartType, mp, false, hardWant{outcome: pass(idAlice), upstream: hidden}),
		hardGet("anonymous, rejected key removed", "/hide/", hardWant{outcome: pass(idGuest), upstream: func(t *testing.T, e *echo) {
			if e.has("Apikey") {
				t.Errorf("the rejected key reached the upstream")
			}
		}}, "apikey", keyWrong),
	}
}

// hardRepeat is n copies of a header pair.
func hardRepeat(n int, name, value string) []string {
	var out []string
	for range n {
		out = append(out, name, value)
	}
	return out
}

func TestHardeningHTTP2(t *testing.T) {
	e := newEnv(t)
	e.load(hardH2Config, "caddyfile")
	tlsSite := strings.Replace(site, "http://", "https://", 1)

	// The root of Caddy's internal CA, which signed the site's certificate.
	root := filepath.Join(e.dir, "storage", "pki", "authorities", "local", "root.crt")
	var pem []byte
	eventually(t, "the internal CA's root", func() bool {
		var err error
		pem, err = os.ReadFile(root)
		return err == nil && len(pem) > 0
	})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", root)
	}
	tlsTransport := &http.Transport{
		TLSClientConfig:    &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:  true,
		DisableCompression: true,
	}
	defer tlsTransport.CloseIdleConnections()
	h2 := &http.Client{Transport: hardProto{tlsTransport, 2}, Timeout: 20 * time.Second}
	// The certificate is issued in the background: wait for a handshake.
	eventually(t, "a TLS handshake with a certificate of the internal CA", func() bool {
		_, err := send(h2, req(http.MethodGet, tlsSite+"/", nil))
		return err == nil
	})

	// h2c: HTTP/2 with prior knowledge, in clear text.
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2cTransport := &http.Transport{Protocols: &protos, DisableCompression: true}
	defer h2cTransport.CloseIdleConnections()
	h2c := &http.Client{Transport: hardProto{h2cTransport, 2}, Timeout: 20 * time.Second}

	t.Run("TLS", func(t *testing.T) { hardRun(t, h2, tlsSite, hardH2Cases()) })
	t.Run("h2c", func(t *testing.T) { hardRun(t, h2c, site2, hardH2Cases()) })
	// And HTTP/1.1 on the same servers gets the same answers.
	h1 := &http.Client{Transport: hardProto{&http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableCompression: true}, 1}, Timeout: 20 * time.Second}
	t.Run("TLS HTTP/1.1", func(t *testing.T) { hardRun(t, h1, tlsSite, hardH2Cases()) })
}
