package integration

// The management API over the Redis source (README: Management API), with a
// real redis-server: every endpoint, two instances sharing one Redis, and
// Redis down.

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/keyauth/caddy-keyauth/internal/redistest"
	"github.com/keyauth/caddy-keyauth/keyauth/command"
)

// manageRedisSites is manageSites over Redis, and {{.Site3}} another
// instance: a key_auth and an API on the same Redis through a client and a
// cache of their own (another cache size is another source state), as a
// second Caddy has.
const manageRedisSites = `{{.Global}}
{{.Site}} {
	key_auth {
		anonymous guest
		hide_credentials
		{{.Managers}}
	}
	handle_path /keys/* {
		key_auth_api {
			consumers redis {{.Redis}} {
				prefix m:
			}
			manage_group key-admins
			{{.Scope}}
		}
	}
	respond "not the API"
}
{{.Site2}} {
	key_auth {
		hide_credentials
		consumers redis {{.Redis}} {
			prefix m:
		}
	}
	reverse_proxy {{.Up}}
}
{{.Site3}} {
	key_auth {
		hide_credentials
		consumers redis {{.Redis}} {
			prefix m:
			cache 1MB
		}
	}
	handle_path /keys/* {
		key_auth_api {
			consumers redis {{.Redis}} {
				prefix m:
				cache 1MB
			}
			manage_group key-admins
		}
	}
	reverse_proxy {{.Up}}
}
`

// redisManagers is the source of the API site's key_auth: the managed
// Redis.
const redisManagers = "consumers redis {{.Redis}} {\n\t\t\tprefix m:\n\t\t}"

// newManageRedisEnv runs manageRedisSites on a new redis-server holding
// manageDoc, pushed as `caddy key-auth push` does; managers is the
// consumers line of the API site's key_auth.
func newManageRedisEnv(t *testing.T, managers string) (*manageEnv, *redistest.Server) {
	t.Helper()
	needWriter(t, "redis")
	srv := redistest.Start(t)
	c := redistest.Client(t, srv.Addr())
	if _, err := command.Push(context.Background(), c, []byte(manageDoc), "m:"); err != nil {
		t.Fatal(err)
	}
	m := &manageEnv{env: newEnv(t), keys: []string{keyRoot, keyAnn, keyGus, keyAcme, keyGlobex, keyLost}}
	m.vars["Redis"] = srv.Addr()
	m.vars["Scope"] = ""
	m.vars["Managers"] = strings.NewReplacer("{{.Redis}}", srv.Addr(), "{{.Consumers}}", m.consumers).Replace(managers)
	m.writeConsumers(manageDoc)
	m.load(manageRedisSites, "caddyfile")
	t.Cleanup(func() { m.noKeyInLogs() })
	eventually(t, "the API to reach Redis", func() bool {
		return m.api(http.MethodGet, "/consumers/root", keyRoot, "").status == http.StatusOK
	})
	return m, srv
}

// Every endpoint against Redis: each change answered at once by the
// key_auth that shares the API's source.
func TestManageEndpointsRedis(t *testing.T) {
	m, _ := newManageRedisEnv(t, redisManagers)
	m.endpoints()
}

// Two instances on one Redis: a change made through one's API is answered
// by the other's key_auth (within its revocation latency, as Redis tells
// its cache) and read at once through the other's API.
func TestManageRedisTwoInstances(t *testing.T) {
	m, _ := newManageRedisEnv(t, redisManagers)
	other := func(method, path, body string) *response {
		var hdr = []string{"apikey", keyRoot}
		var r *response
		if body != "" {
			r = do(t, req(method, site3+"/keys"+path, strings.NewReader(body), hdr...))
		} else {
			r = do(t, req(method, site3+"/keys"+path, nil, hdr...))
		}
		return r
	}
	works := func(base, key string) bool { return get(t, base+"/", "apikey", key).status == http.StatusOK }
	const keyZed = "zed-secret-0001"
	m.keys = append(m.keys, keyZed)
	// Both caches hold zed's key as unknown.
	if works(site2, keyZed) || works(site3, keyZed) {
		t.Fatal("zed's key works before zed exists")
	}
	// Created through the other instance.
	m.want(other(http.MethodPut, "/consumers/zed", `{"keys": [{"id": "zed-key", "key": "`+keyZed+`"}]}`), http.StatusCreated, nil)
	if !works(site3, keyZed) {
		t.Error("zed's key does not work at once on the instance that wrote it")
	}
	eventually(t, "zed's key to work on the first instance", func() bool { return works(site2, keyZed) })
	var c consumerOut
	m.want(m.api(http.MethodGet, "/consumers/zed", keyRoot, ""), http.StatusOK, &c)
	if len(c.Keys) != 1 || c.Keys[0].ID != "zed-key" {
		t.Errorf("zed through the first instance's API: %+v", c)
	}
	// Disabled through the first: stops there at once, on the other soon.
	m.want(m.api(http.MethodPatch, "/consumers/zed", keyRoot, `{"disabled": true}`), http.StatusOK, nil)
	m.protected(keyZed, "")
	eventually(t, "zed's key to stop on the other instance", func() bool { return !works(site3, keyZed) })
	m.want(other(http.MethodGet, "/consumers/zed", ""), http.StatusOK, &c)
	if !c.Disabled {
		t.Errorf("zed through the other instance's API: %+v", c)
	}
	// The fleet's last use, kept in Redis across a restart: ann's key
	// used on the other instance, written to Redis when it stops, shows in
	// the API once Caddy runs again.
	if !works(site3, keyAnn) {
		t.Fatal("ann's key does not work on the other instance")
	}
	unload(t)
	m.load(manageRedisSites, "caddyfile")
	eventually(t, "the API to reach Redis", func() bool {
		return m.api(http.MethodGet, "/consumers/root", keyRoot, "").status == http.StatusOK
	})
	m.want(m.api(http.MethodGet, "/consumers/ann", keyRoot, ""), http.StatusOK, &c)
	if !recent(c.Keys[0].LastUsed) {
		t.Errorf("ann-key's last use after a restart: %q", c.Keys[0].LastUsed)
	}
}

// Redis down: a change is 503, saying nothing was changed, and its audit
// line says unavailable; so is a read. The managers here are in a file.
func TestManageRedisDown(t *testing.T) {
	m, srv := newManageRedisEnv(t, "consumers file {{.Consumers}}")
	srv.Stop()
	m.wantMessage(m.api(http.MethodPatch, "/consumers/gus", keyRoot, `{"disabled": true}`), http.StatusServiceUnavailable,
		"unavailable; nothing was changed")
	m.wantMessage(m.api(http.MethodGet, "/consumers", keyRoot, ""), http.StatusServiceUnavailable, "unavailable")
	lines := m.auditLines()
	if len(lines) != 1 || lines[0].str("result") != "unavailable" || lines[0].str("consumer") != "gus" {
		t.Errorf("audit lines: %v", lines)
	}
	// Who manages is known without Redis: /self answers.
	m.want(m.api(http.MethodGet, "/self", keyRoot, ""), http.StatusOK, nil)
}
