package command

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/spf13/cobra"

	"github.com/keyauth/caddy-keyauth/internal/redistest"
)

func credKey(key string) string {
	d := sha256.Sum256([]byte(key))
	return "p:cred:" + hex.EncodeToString(d[:])
}

func hgetall(t *testing.T, c rueidis.Client, key string) map[string]string {
	t.Helper()
	m, err := c.Do(context.Background(), c.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPush(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	ctx := context.Background()
	redistest.Do(t, c, "HSET", "p:consumer:stale", "id", "stale")
	redistest.Do(t, c, "HSET", credKey("stale-key"), "consumer", "stale", "id", "s")
	redistest.Do(t, c, "SET", "p:other", "kept")
	redistest.Do(t, c, "HSET", "q:consumer:alice", "id", "outside the prefix")
	// The stale consumer's indexes, and its key's last use.
	redistest.Do(t, c, "HSET", "p:consumer-keys:stale", strings.TrimPrefix(credKey("stale-key"), "p:cred:"), "s")
	redistest.Do(t, c, "HSET", "p:credential-id:s", "consumer", "stale")
	redistest.Do(t, c, "ZADD", "p:consumers", "0", "stale")
	redistest.Do(t, c, "HSET", "p:last-used", "s", "29000000", "alice-1", "29000001")

	doc := `{"consumers": [
		{"username": "alice", "id": "a11ce", "custom_id": "c1", "tags": ["staff", "ops"], "groups": ["gold"],
		 "labels": {"plan": "gold"}, "keys": [
			{"id": "alice-1", "key": "alice-secret-1", "expires_at": "2030-01-01T00:00:00Z"},
			{"key": "alice-secret-2", "canary": true}]},
		{"username": "bob", "disabled": true, "keys": [
			{"id": "bob-1", "hash": "sha256:` + strings.TrimPrefix(credKey("bob-secret"), "p:cred:") + `", "disabled": true}]}
	]}`
	st, err := Push(ctx, c, []byte(doc), "p:")
	if err != nil {
		t.Fatal(err)
	}
	if st.Consumers != 2 || st.Keys != 3 || st.Written != 5 || st.Removed != 2 {
		t.Errorf("stats %+v", st)
	}
	for key, want := range map[string]map[string]string{
		"p:consumer:alice":        {"id": "a11ce", "custom_id": "c1", "tags": "staff,ops", "groups": "gold", "labels": `{"plan":"gold"}`},
		"p:consumer:bob":          {"id": "bob", "disabled": "true"},
		credKey("alice-secret-1"): {"consumer": "alice", "id": "alice-1", "expires_at": "2030-01-01T00:00:00Z"},
		credKey("alice-secret-2"): {"consumer": "alice", "id": "a11ce#2", "canary": "true"},
		credKey("bob-secret"):     {"consumer": "bob", "id": "bob-1", "disabled": "true"},
		"p:consumer:stale":        {},
		credKey("stale-key"):      {},
		"q:consumer:alice":        {"id": "outside the prefix"},
	} {
		if got := hgetall(t, c, key); !maps.Equal(got, want) {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	if v, _ := c.Do(ctx, c.B().Get().Key("p:other").Build()).ToString(); v != "kept" {
		t.Error("a key under the prefix outside the layout was touched")
	}
	hexOf := func(key string) string { return strings.TrimPrefix(credKey(key), "p:cred:") }
	// The writers' indexes: each consumer's keys, the owner of each
	// credential id, the list of usernames; the stale ones gone.
	for key, want := range map[string]map[string]string{
		"p:consumer-keys:alice":   {hexOf("alice-secret-1"): "alice-1", hexOf("alice-secret-2"): "a11ce#2"},
		"p:consumer-keys:bob":     {hexOf("bob-secret"): "bob-1"},
		"p:credential-id:alice-1": {"consumer": "alice"},
		"p:credential-id:a11ce#2": {"consumer": "alice"},
		"p:credential-id:bob-1":   {"consumer": "bob"},
		"p:consumer-keys:stale":   {},
		"p:credential-id:s":       {},
		"p:last-used":             {"alice-1": "29000001"},
	} {
		if got := hgetall(t, c, key); !maps.Equal(got, want) {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	if got, _ := c.Do(ctx, c.B().Zrange().Key("p:consumers").Min("0").Max("-1").Build()).AsStrSlice(); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Errorf("p:consumers = %v", got)
	}
	if st.IndexesWritten != 7 || st.IndexesRemoved != 4 {
		t.Errorf("indexes: %d written, %d removed, want 7 (2 consumer-keys, 3 credential-id, 2 usernames) and 4", st.IndexesWritten, st.IndexesRemoved)
	}

	// Again, changed: only the changes are written, a dropped field goes.
	doc2 := strings.Replace(doc, `"custom_id": "c1", `, "", 1)
	doc2 = strings.Replace(doc2, `{"key": "alice-secret-2", "canary": true}`, `{"key": "alice-secret-3"}`, 1)
	if st, err = Push(ctx, c, []byte(doc2), "p:"); err != nil {
		t.Fatal(err)
	}
	if st.Written != 2 || st.Unchanged != 3 || st.Removed != 1 {
		t.Errorf("second push: %+v, want 2 written (alice, her new key), 3 unchanged, 1 removed", st)
	}
	if got := hgetall(t, c, "p:consumer:alice"); got["custom_id"] != "" || got["id"] != "a11ce" {
		t.Errorf("alice after the change: %v", got)
	}
	if len(hgetall(t, c, credKey("alice-secret-2"))) != 0 || len(hgetall(t, c, credKey("alice-secret-3"))) == 0 {
		t.Error("the replaced key is not replaced")
	}
	if got := hgetall(t, c, "p:consumer-keys:alice"); !maps.Equal(got, map[string]string{hexOf("alice-secret-1"): "alice-1", hexOf("alice-secret-3"): "a11ce#2"}) {
		t.Errorf("alice's keys after the change: %v", got)
	}

	// A refused document writes nothing.
	if _, err := Push(ctx, c, []byte(`{"consumers": [{"username": "x", "keys": [{"key": ""}]}]}`), "p:"); err == nil {
		t.Error("a refused document pushed")
	}
	if len(hgetall(t, c, "p:consumer:alice")) == 0 {
		t.Error("a refused document removed consumers")
	}
}

// TestPushMillion times a push of 1,000,000 keys (100,000 consumers of 10
// keys) into an empty Redis, and again unchanged. Set KEYAUTH_PUSH_MILLION=1.
func TestPushMillion(t *testing.T) {
	if os.Getenv("KEYAUTH_PUSH_MILLION") == "" {
		t.Skip("set KEYAUTH_PUSH_MILLION=1 to time a push of 1,000,000 keys")
	}
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	var b strings.Builder
	b.WriteString(`{"consumers":[`)
	for i := range 100000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"username":"u%d","keys":[`, i)
		for j := range 10 {
			if j > 0 {
				b.WriteByte(',')
			}
			d := sha256.Sum256(fmt.Appendf(nil, "key-%d-%d", i, j))
			fmt.Fprintf(&b, `{"id":"k%d-%d","hash":"sha256:%x"}`, i, j, d)
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`]}`)
	for _, round := range []string{"into an empty Redis", "unchanged"} {
		start := time.Now()
		st, err := Push(context.Background(), c, []byte(b.String()), "keyauth:")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("push of %d consumers and %d keys %s: %v (%+v)", st.Consumers, st.Keys, round, time.Since(start), st)
	}
}

// `caddy key-auth push` as the command line runs it.
func TestPushCommand(t *testing.T) {
	srv := redistest.Start(t)
	file := filepath.Join(t.TempDir(), "consumers.json")
	if err := os.WriteFile(file, []byte(`{"consumers":[{"username":"alice","keys":[{"id":"a","key":"alice-secret"}]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	root := &cobra.Command{Use: "key-auth"}
	Setup(root)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"push", "--redis", srv.Addr(), "--file", file, "--prefix", "p:"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "1 consumers and 1 keys: 2 hashes written, 0 unchanged, 0 removed in ") {
		t.Errorf("output %q", out.String())
	}
	c := redistest.Client(t, srv.Addr())
	if got := hgetall(t, c, credKey("alice-secret")); got["consumer"] != "alice" || got["id"] != "a" {
		t.Errorf("pushed credential %v", got)
	}
	root = &cobra.Command{Use: "key-auth"} // flags keep their values between runs
	Setup(root)
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"push", "--file", file})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "--redis and --file are required") {
		t.Errorf("push without --redis: %v", err)
	}
}

// A tag that the Redis layout would read back as other tags is refused
// before anything is written.
func TestPushRefusesTag(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	for _, tags := range []string{`["team,ops"]`, `[" ops"]`, `["ops "]`, `[""]`} {
		doc := `{"consumers": [{"username": "alice", "tags": ` + tags + `, "keys": [{"key": "alice-secret"}]}]}`
		_, err := Push(context.Background(), c, []byte(doc), "p:")
		if err == nil || !strings.Contains(err.Error(), `consumer "alice": tag `) {
			t.Errorf("tags %s: %v, want a refusal naming the consumer", tags, err)
		}
		if n, _ := c.Do(context.Background(), c.B().Dbsize().Build()).AsInt64(); n != 0 {
			t.Errorf("tags %s: %d keys written", tags, n)
		}
	}
}

// TestPushGlobPrefix: a prefix holding glob characters matches only itself.
// Other applications' keys that the unescaped pattern would match stay, and
// the prefix's own stale credential and consumer go.
func TestPushGlobPrefix(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	ctx := context.Background()
	for _, prefix := range []string{`app[v2]:`, `a*:`, `a?:`, `a\:`, `[^x]:`} {
		t.Run(prefix, func(t *testing.T) {
			redistest.Do(t, c, "FLUSHALL")
			stale := sha256.Sum256([]byte("stale-key"))
			others := []string{
				"app2:cred:" + hex.EncodeToString(stale[:]), "appv:consumer:bob", "app]:consumer:bob",
				"ab:cred:" + hex.EncodeToString(stale[:]), "ab:consumer:bob", "a:consumer:bob", `a\\:consumer:bob`,
				"y:consumer:bob", "app[v2]x:consumer:bob",
			}
			for _, k := range others {
				redistest.Do(t, c, "HSET", k, "id", "other application")
			}
			redistest.Do(t, c, "HSET", prefix+"cred:"+hex.EncodeToString(stale[:]), "consumer", "old", "id", "o")
			redistest.Do(t, c, "HSET", prefix+"consumer:old", "id", "old")
			doc := `{"consumers": [{"username": "alice", "keys": [{"key": "alice-secret"}]}]}`
			st, err := Push(ctx, c, []byte(doc), prefix)
			if err != nil {
				t.Fatal(err)
			}
			if st.Removed != 2 {
				t.Errorf("%d removed, want 2 (the prefix's stale credential and consumer)", st.Removed)
			}
			for _, k := range others {
				if k == prefix+"consumer:bob" {
					continue
				}
				if got := hgetall(t, c, k); got["id"] != "other application" {
					t.Errorf("another application's %s was touched: %v", k, got)
				}
			}
			if len(hgetall(t, c, prefix+"cred:"+hex.EncodeToString(stale[:]))) != 0 || len(hgetall(t, c, prefix+"consumer:old")) != 0 {
				t.Error("the prefix's stale credential or consumer stayed")
			}
			alice := sha256.Sum256([]byte("alice-secret"))
			if got := hgetall(t, c, prefix+"cred:"+hex.EncodeToString(alice[:])); got["consumer"] != "alice" {
				t.Errorf("alice's credential %v", got)
			}
		})
	}
}

// runPush runs `caddy key-auth push` with args and returns its error and
// output.
func runPush(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "key-auth"}
	Setup(root)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"push"}, args...))
	err := root.Execute()
	return out.String(), err
}

func pushFile(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "consumers.json")
	if err := os.WriteFile(file, []byte(`{"consumers":[{"username":"alice","keys":[{"id":"a","key":"alice-secret"}]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// --db reaches the database the source reads, and only it.
func TestPushDB(t *testing.T) {
	srv := redistest.Start(t)
	file := pushFile(t)
	c := redistest.Client(t, srv.Addr())
	redistest.Do(t, c, "HSET", "p:consumer:db0", "id", "db0") // the file does not have it
	if out, err := runPush(t, "--redis", srv.Addr(), "--file", file, "--prefix", "p:", "--db", "3"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	c3, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, SelectDB: 3, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got := hgetall(t, c3, credKey("alice-secret")); got["consumer"] != "alice" {
		t.Errorf("database 3 holds %v", got)
	}
	if got := hgetall(t, c, credKey("alice-secret")); len(got) != 0 {
		t.Error("database 0 was written")
	}
	if got := hgetall(t, c, "p:consumer:db0"); got["id"] != "db0" {
		t.Error("database 0 lost a key")
	}
}

// Username and password come from the environment, as the source's
// {env.*} placeholders would; --username overrides REDIS_USERNAME.
func TestPushACLUser(t *testing.T) {
	srv := redistest.Start(t, "--user", "default", "off", "--user", "pusher", "on", ">push-pw", "~p:*", "+@all")
	file := pushFile(t)
	t.Setenv("REDIS_USERNAME", "pusher")
	t.Setenv("REDIS_PASSWORD", "push-pw")
	if out, err := runPush(t, "--redis", srv.Addr(), "--file", file, "--prefix", "p:"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := runPush(t, "--redis", srv.Addr(), "--file", file, "--prefix", "p:", "--username", "default"); err == nil {
		t.Error("--username default (off) connected")
	}
	t.Setenv("REDIS_PASSWORD", "wrong")
	_, err := runPush(t, "--redis", srv.Addr(), "--file", file, "--prefix", "p:")
	if err == nil || !strings.Contains(err.Error(), "connecting to redis") {
		t.Errorf("a wrong password: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "wrong") {
		t.Error("the error holds the password")
	}
}

// TLS with the source's options: a CA to trust and a client certificate.
func TestPushTLS(t *testing.T) {
	srv, files := redistest.StartTLS(t)
	file := pushFile(t)
	base := []string{"--redis", srv.Addr(), "--file", file, "--prefix", "p:"}
	if out, err := runPush(t, append(base, "--tls-root-ca", files.CA,
		"--tls-client-certificate", files.ClientCert, "--tls-client-certificate-key", files.ClientKey)...); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, TLSConfig: files.ClientConfig(t), DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := hgetall(t, c, credKey("alice-secret")); got["consumer"] != "alice" {
		t.Errorf("pushed over TLS: %v", got)
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"plain text", nil, "connecting to redis"},
		{"system roots", []string{"--tls"}, "certificate"},
		{"no client certificate", []string{"--tls-root-ca", files.CA}, "connecting to redis"},
		{"a certificate without its key", []string{"--tls-root-ca", files.CA, "--tls-client-certificate", files.ClientCert},
			"--tls-client-certificate and --tls-client-certificate-key go together"},
		{"a CA file without a certificate", []string{"--tls-root-ca", files.ClientKey}, "--tls-root-ca: no certificate found in"},
	} {
		if _, err := runPush(t, append(base, tt.args...)...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestPushFlagsRefused(t *testing.T) {
	file := pushFile(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--redis", "127.0.0.1:1,127.0.0.1:2", "--db", "1"}, "--db: a Redis Cluster has only database 0"},
		{[]string{"--redis", "127.0.0.1:1", "--db", "-1"}, "--db must not be negative"},
		{[]string{"--redis", "localhost"}, `--redis: "localhost" is not host:port`},
	} {
		if _, err := runPush(t, append(tt.args, "--file", file)...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.args, err, tt.want)
		}
	}
}

// Progress is reported after each batch, the counts only growing, up to
// the final ones; drawn, it shows both phases, and the command draws
// nothing when standard error is not a terminal.
func TestPushProgress(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	var b strings.Builder
	b.WriteString(`{"consumers":[`)
	for i := range 500 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"username":"u%d","keys":[{"key":"k-%d-a"},{"key":"k-%d-b"}]}`, i, i, i)
	}
	b.WriteString(`]}`)
	for i := range 3 {
		redistest.Do(t, c, "HSET", fmt.Sprintf("p:consumer:stale%d", i), "id", "x")
	}
	var seen []Stats
	st, err := PushProgress(context.Background(), c, []byte(b.String()), "p:", func(s Stats) { seen = append(seen, s) })
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 3 || seen[len(seen)-1] != st {
		t.Fatalf("%d reports, the last %+v; want several, the last %+v", len(seen), seen[len(seen)-1], st)
	}
	for i := 1; i < len(seen); i++ {
		p, n := seen[i-1], seen[i]
		if n.Written+n.Unchanged < p.Written+p.Unchanged || n.Removed < p.Removed {
			t.Errorf("report %d went back: %+v after %+v", i, n, p)
		}
	}

	var drawn bytes.Buffer
	progress, done := newPushBars(&drawn)
	if _, err := PushProgress(context.Background(), c, []byte(`{"consumers":[]}`), "p:", progress); err != nil {
		t.Fatal(err)
	}
	done()
	progress, done = newPushBars(&drawn)
	if _, err := PushProgress(context.Background(), c, []byte(b.String()), "p:", progress); err != nil {
		t.Fatal(err)
	}
	done()
	if !strings.Contains(drawn.String(), "writing hashes") || !strings.Contains(drawn.String(), "removing stale keys") {
		t.Errorf("drawn: %q", drawn.String())
	}

	file := filepath.Join(t.TempDir(), "consumers.json")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	root := &cobra.Command{Use: "key-auth"}
	Setup(root)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"push", "--redis", srv.Addr(), "--file", file, "--prefix", "p:"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if errOut.Len() != 0 {
		t.Errorf("progress drawn on a standard error that is no terminal: %q", errOut.String())
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if progress, _ := pushProgress(f); progress != nil {
		t.Error("progress drawn on a file")
	}
}

// A credential's created_at reaches Redis in UTC, whether the document
// gives its key or its hash.
func TestPushCreatedAt(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	doc := `{"consumers": [{"username": "carol", "keys": [
		{"id": "c-1", "key": "carol-secret-1", "created_at": "2026-01-02T03:04:05+01:00"},
		{"id": "c-2", "hash": "sha256:` + strings.TrimPrefix(credKey("carol-secret-2"), "p:cred:") + `", "created_at": "2026-02-03T04:05:06Z"}]}]}`
	if _, err := Push(context.Background(), c, []byte(doc), "p:"); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]map[string]string{
		credKey("carol-secret-1"): {"consumer": "carol", "id": "c-1", "created_at": "2026-01-02T02:04:05Z"},
		credKey("carol-secret-2"): {"consumer": "carol", "id": "c-2", "created_at": "2026-02-03T04:05:06Z"},
	} {
		if got := hgetall(t, c, key); !maps.Equal(got, want) {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
}

// An address takes {env.*} as the source's does: what the check accepts is
// what push connects to.
func TestPushAddressPlaceholder(t *testing.T) {
	srv := redistest.Start(t)
	t.Setenv("KEYAUTH_TEST_PUSH_REDIS", srv.Addr())
	if out, err := runPush(t, "--redis", "{env.KEYAUTH_TEST_PUSH_REDIS}", "--file", pushFile(t), "--prefix", "p:"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := hgetall(t, redistest.Client(t, srv.Addr()), credKey("alice-secret")); got["consumer"] != "alice" {
		t.Errorf("pushed through the placeholder: %v", got)
	}
	if _, err := runPush(t, "--redis", "{env.KEYAUTH_TEST_PUSH_UNSET}", "--file", pushFile(t)); err == nil || !strings.Contains(err.Error(), `--redis: "{env.KEYAUTH_TEST_PUSH_UNSET}" is not host:port`) {
		t.Errorf("an unset variable: %v", err)
	}
}

// TestPushLimits: push writes the limits of keys and consumers and a hash
// per group with limits, rewrites them as they change and removes a group
// the document no longer describes (or no longer gives limits).
func TestPushLimits(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	ctx := context.Background()
	redistest.Do(t, c, "HSET", "p:group:stale", "limits", `{"in_flight": 1}`)
	doc := `{"groups": {
			"free": {"member_limits": {"requests": {"max": 1000, "per": "day"}, "in_flight": 2}},
			"team": {"limits": {"requests": {"max": 100000, "per": "month", "timezone": "Europe/Berlin"}}},
			"acl-only": {}},
		"consumers": [{"username": "alice", "groups": ["free", "team", "acl-only"], "limits": {"tokens": {"max": 2000000, "per": "month"}},
			"keys": [{"id": "alice-ci", "key": "alice-secret", "limits": {"requests": {"max": 100, "per": "90m"}}}]}]}`
	st, err := Push(ctx, c, []byte(doc), "p:")
	if err != nil {
		t.Fatal(err)
	}
	if st.Groups != 2 || st.Written != 4 || st.Removed != 1 {
		t.Errorf("stats %+v", st)
	}
	for key, want := range map[string]map[string]string{
		"p:group:free":          {"member_limits": `{"in_flight":2,"requests":{"max":1000,"per":"day"}}`},
		"p:group:team":          {"limits": `{"requests":{"max":100000,"per":"month","timezone":"Europe/Berlin"}}`},
		"p:group:acl-only":      {},
		"p:group:stale":         {},
		"p:consumer:alice":      {"id": "alice", "groups": "free,team,acl-only", "limits": `{"tokens":{"max":2000000,"per":"month"}}`},
		credKey("alice-secret"): {"consumer": "alice", "id": "alice-ci", "limits": `{"requests":{"max":100,"per":"1h30m"}}`},
	} {
		if got := hgetall(t, c, key); !maps.Equal(got, want) {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}

	// Again, changed: the tier loses its in_flight, the team its group
	// entry, the key its limits.
	doc2 := strings.Replace(doc, `, "in_flight": 2}}`, `}}`, 1)
	doc2 = strings.Replace(doc2, `"team": {"limits": {"requests": {"max": 100000, "per": "month", "timezone": "Europe/Berlin"}}},`, "", 1)
	doc2 = strings.Replace(doc2, `, "limits": {"requests": {"max": 100, "per": "90m"}}`, "", 1)
	st, err = Push(ctx, c, []byte(doc2), "p:")
	if err != nil {
		t.Fatal(err)
	}
	if st.Groups != 1 || st.Written != 2 || st.Unchanged != 1 || st.Removed != 1 {
		t.Errorf("second push: stats %+v", st)
	}
	for key, want := range map[string]map[string]string{
		"p:group:free":          {"member_limits": `{"requests":{"max":1000,"per":"day"}}`},
		"p:group:team":          {},
		credKey("alice-secret"): {"consumer": "alice", "id": "alice-ci"},
	} {
		if got := hgetall(t, c, key); !maps.Equal(got, want) {
			t.Errorf("second push: %s = %v, want %v", key, got, want)
		}
	}

	// Invalid limits write nothing.
	bad := strings.Replace(doc2, `"max": 1000`, `"max": -1`, 1)
	if _, err := Push(ctx, c, []byte(bad), "p:"); err == nil || !strings.Contains(err.Error(), `group "free": member_limits: meter "requests" has a negative max`) {
		t.Errorf("a document with a negative max: %v", err)
	}
	if got := hgetall(t, c, "p:group:free"); got["member_limits"] != `{"requests":{"max":1000,"per":"day"}}` {
		t.Errorf("a refused push wrote %v", got)
	}
}
