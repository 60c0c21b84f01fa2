package integration

// The operators' view: the admin endpoints and the metrics.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

func TestAdminSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "consumers.json")
	writeAtomic(t, file, consumersDoc("alice", "alice-key-1", "guest", ""))
	srv := newSourceServer(t, consumersDoc("bob", "bob-key-1"))
	// Credentials in the URL: user info and a query token.
	const user, pass, token = "src-user", "src-pass-Zq9", "src-query-token-Xw7"
	url := strings.Replace(srv.URL("/consumers"), "http://", "http://"+user+":"+pass+"@", 1) + "?token=" + token
	startCaddy(t, jsonConfig(sitePort[0],
		jsonRoute("/file/*", fileSourceJSON(file, "1h"), "f"),
		jsonRoute("/http/*", httpSourceJSON(url, "1h", "2s"), "h"),
	), "json")
	site := site
	eventually(t, "the HTTP source loads", func() bool {
		code, _ := getKey(t, site+"/http/", "bob-key-1")
		return code == 200
	})
	if got, want := srv.Requests()[0].Header.Get("Authorization"), "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)); got != want {
		t.Errorf("the URL's credentials were not sent: %q", got)
	}
	if got := srv.Requests()[0].URL; !strings.Contains(got, token) {
		t.Errorf("the URL's query was not sent: %q", got)
	}

	// GET /key_auth/sources: each source, sorted by kind, with its fields.
	code, raw := adminDo(t, http.MethodGet, "/key_auth/sources", nil)
	if code != 200 {
		t.Fatalf("GET /key_auth/sources: %d %s", code, raw)
	}
	for _, secret := range []string{pass, token, user + ":", "bob-key-1", "alice-key-1"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("GET /key_auth/sources shows %q: %s", secret, raw)
		}
	}
	var fields []map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil || len(fields) != 2 {
		t.Fatalf("GET /key_auth/sources: %v %s", err, raw)
	}
	for _, f := range []string{"kind", "location", "consumers", "keys", "loaded", "last_load", "consecutive_failures", "handlers"} {
		for i := range fields {
			if _, ok := fields[i][f]; !ok {
				t.Errorf("source %d has no %q: %s", i, f, raw)
			}
		}
	}
	if _, ok := fields[1]["etag"]; !ok {
		t.Errorf("the HTTP source has no etag: %s", raw)
	}
	srcs := adminSources(t)
	fs, hs := srcs[0], srcs[1]
	if fs.Kind != "file" || fs.Location != file || fs.Consumers != 2 || fs.Keys != 1 || !fs.Loaded ||
		fs.LastLoad == nil || fs.LastError != "" || fs.Handlers != 1 || fs.ETag != "" {
		t.Errorf("file source: %+v", fs)
	}
	wantLoc := srv.URL("/consumers") + "?REDACTED"
	if hs.Kind != "http" || hs.Location != wantLoc || hs.Consumers != 1 || hs.Keys != 1 || !hs.Loaded ||
		hs.LastLoad == nil || time.Since(*hs.LastLoad) > time.Minute || hs.ETag != srv.ETag() || hs.Handlers != 1 || hs.Failures != 0 {
		t.Errorf("HTTP source: %+v, want location %s and etag %s", hs, wantLoc, srv.ETag())
	}

	// POST /key_auth/sources/refresh picks up a change at once, refresh
	// being an hour.
	srv.SetDoc(consumersDoc("bob", "bob-key-2"))
	writeAtomic(t, file, consumersDoc("alice", "alice-key-2"))
	code, raw = adminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil)
	if code != 200 {
		t.Fatalf("POST /key_auth/sources/refresh: %d %s", code, raw)
	}
	expect(t, site+"/http/", "bob-key-2", 200, "h bob")
	expect(t, site+"/http/", "bob-key-1", 401, "")
	expect(t, site+"/file/", "alice-key-2", 200, "f alice")
	var refreshed []sources.SourceStatus
	if err := json.Unmarshal(raw, &refreshed); err != nil || len(refreshed) != 2 || refreshed[1].ETag != srv.ETag() || refreshed[1].RefreshError != "" {
		t.Errorf("refresh answer: %v %s", err, raw)
	}

	// A failing refresh reports its error, without credentials.
	srv.SetMode(sourceFail)
	code, raw = adminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil)
	if err := json.Unmarshal(raw, &refreshed); code != 200 || err != nil || !strings.Contains(refreshed[1].RefreshError, "status 500") ||
		!strings.Contains(refreshed[1].LastError, "status 500") || refreshed[1].Failures != 1 {
		t.Errorf("failing refresh: %d %s", code, raw)
	}
	for _, secret := range []string{pass, token, user + ":"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("POST /key_auth/sources/refresh shows %q: %s", secret, raw)
		}
	}
	expect(t, site+"/http/", "bob-key-2", 200, "h bob")

	// Wrong methods.
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/key_auth/sources"},
		{http.MethodDelete, "/key_auth/sources"},
		{http.MethodGet, "/key_auth/sources/refresh"},
		{http.MethodPut, "/key_auth/sources/refresh"},
	} {
		if code, body := adminDo(t, c.method, c.path, nil); code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d %s, want 405", c.method, c.path, code, body)
		}
	}
}

// metricKey is a metric's name and labels as /metrics shows them.
func metricKey(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var b strings.Builder
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
	}
	return name + "{" + b.String() + "}"
}

func TestMetricsSurviveReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "consumers.json")
	writeAtomic(t, file, consumersDoc("alice", "alice-key-1", "guest", ""))
	srv := newSourceServer(t, consumersDoc("bob", "bob-key-1", "carol", "carol-key-1"))
	url := srv.URL("/metrics-source")
	cfg := func(fileRefresh, body string) string {
		return jsonConfig(sitePort[0],
			jsonRoute("/file/*", fileSourceJSON(file, fileRefresh), body),
			jsonRoute("/http/*", httpSourceJSON(url, "1h", "2s"), body),
			jsonRoute("/anon/*", `{"source": "file", "path": "`+file+`", "refresh": "30m"}, "anonymous": "guest"`, body),
		)
	}
	startCaddy(t, cfg("1h", "one"), "json")
	site := site
	eventually(t, "the HTTP source loads", func() bool {
		code, _ := getKey(t, site+"/http/", "bob-key-1")
		return code == 200
	})

	req := func(n int, path, key string) {
		for range n {
			getKey(t, site+path, key)
		}
	}
	outcome := func(o string) string { return metricKey("caddy_key_auth_requests_total", "outcome", o) }
	httpSrc, fileSrc := "http "+url, "file "+file
	m0, _ := metrics(t)
	req(3, "/http/", "bob-key-1")
	req(1, "/file/", "alice-key-1")
	req(2, "/file/", "")
	req(1, "/http/", "wrong")
	req(1, "/http/?apikey=a&apikey=b", "")
	req(2, "/anon/", "")
	m1, text1 := metrics(t)
	for o, want := range map[string]float64{"authenticated": 4, "missing": 2, "invalid": 1, "duplicate": 1, "anonymous": 2, "error": 0} {
		if got := m1[outcome(o)] - m0[outcome(o)]; got != want {
			t.Errorf("requests %s: %v, want %v", o, got, want)
		}
	}
	gauges := map[string]float64{
		metricKey("caddy_key_auth_consumers", "source", httpSrc): 2,
		metricKey("caddy_key_auth_keys", "source", httpSrc):      2,
		metricKey("caddy_key_auth_consumers", "source", fileSrc): 2,
		metricKey("caddy_key_auth_keys", "source", fileSrc):      1,
	}
	for k, want := range gauges {
		if got, ok := m1[k]; !ok || got != want {
			t.Errorf("%s: %v (present %v), want %v", k, got, ok, want)
		}
	}
	loads := metricKey("caddy_key_auth_source_loads_total", "source", httpSrc)
	failures := metricKey("caddy_key_auth_source_load_failures_total", "source", httpSrc)
	lastLoad := metricKey("caddy_key_auth_source_last_load_timestamp_seconds", "source", httpSrc)
	if m1[loads] < 1 {
		t.Errorf("%s: %v", loads, m1[loads])
	}
	if ts := m1[lastLoad]; time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("%s: %v", lastLoad, ts)
	}

	// A failed load counts.
	srv.SetMode(sourceFail)
	adminDo(t, http.MethodPost, "/key_auth/sources/refresh", nil)
	srv.SetMode(sourceOK)
	m2, _ := metrics(t)
	if got := m2[failures] - m1[failures]; got != 1 {
		t.Errorf("%s grew by %v, want 1", failures, got)
	}
	if m2[lastLoad] != m1[lastLoad] || m2[loads] != m1[loads] {
		t.Error("a failed load changed the last load")
	}

	// A reload that keeps the sources keeps every count and gauge, and
	// reloads nothing.
	startCaddy(t, cfg("1h", "two"), "json")
	expect(t, site+"/http/", "bob-key-1", 200, "two bob")
	m3, text3 := metrics(t)
	for k, v := range m2 {
		if strings.HasPrefix(k, "caddy_key_auth_") && k != outcome("authenticated") && m3[k] != v {
			t.Errorf("after a reload, %s is %v, was %v", k, m3[k], v)
		}
	}
	if got := m3[outcome("authenticated")] - m2[outcome("authenticated")]; got != 1 {
		t.Errorf("authenticated grew by %v after one request, want 1", got)
	}

	// A reload that changes a source replaces its store: the new store's
	// gauges are there, under the same source name.
	startCaddy(t, cfg("2h", "three"), "json")
	expect(t, site+"/file/", "alice-key-1", 200, "three alice")
	m4, text4 := metrics(t)
	for k, want := range gauges {
		if got, ok := m4[k]; !ok || got != want {
			t.Errorf("after a reload that changes the source, %s: %v (present %v), want %v", k, got, ok, want)
		}
	}
	if m4[metricKey("caddy_key_auth_source_loads_total", "source", fileSrc)] <= m3[metricKey("caddy_key_auth_source_loads_total", "source", fileSrc)] {
		t.Error("the new file store's load was not counted")
	}

	// No key anywhere, and no label that grows with the consumers.
	for _, text := range []string{text1, text3, text4} {
		for _, key := range []string{"alice-key-1", "bob-key-1", "carol-key-1", "wrong"} {
			if strings.Contains(text, key) {
				t.Errorf("/metrics contains the key %q", key)
			}
		}
		for _, name := range []string{"alice", "bob", "carol", "guest"} {
			if strings.Contains(text, `"`+name+`"`) {
				t.Errorf("/metrics has a label with a consumer: %q", name)
			}
		}
	}
}
