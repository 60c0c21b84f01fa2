package integration

import "testing"

func TestSmoke(t *testing.T) {
	e := newEnv(t)
	e.load(`{{.Global}}
http://localhost:9081 {
	key_auth {
		consumers file {{.Consumers}}
	}
	reverse_proxy {{.Up}}
}
`, "caddyfile")
	wantIdentity(t, get(t, site+"/x", "apikey", keyAlice), idAlice)
	want401(t, get(t, site+"/x"), msgNoKey)
}
