package manage

import (
	"net/http/httptest"
	"testing"
)

// Paths are read relative to where the handler is mounted; names are
// percent-decoded, so a username may hold a '/'.
func TestRoute(t *testing.T) {
	for _, tc := range []struct {
		path             string
		res              resource
		username, credID string
		status           int // of a refusal; 0 for none
		meter            string
	}{
		{"/self", resSelf, "", "", 0, ""},
		{"/consumers", resConsumers, "", "", 0, ""},
		{"/consumers?limit=2", resConsumers, "", "", 0, ""},
		{"/consumers/tom", resConsumer, "tom", "", 0, ""},
		{"/consumers/a%2Fb%20c", resConsumer, "a/b c", "", 0, ""},
		{"/consumers/keys", resConsumer, "keys", "", 0, ""},
		{"/consumers/tom/keys", resKeys, "tom", "", 0, ""},
		{"/consumers/tom/keys/tom%231", resKey, "tom", "tom#1", 0, ""},
		{"/consumers/tom/keys/k1/roll", resRoll, "tom", "k1", 0, ""},
		{"/", 0, "", "", 404, ""},
		{"/self/x", 0, "", "", 404, ""},
		{"/keys/consumers", 0, "", "", 404, ""},
		{"/consumers/", 0, "", "", 400, ""},
		{"/consumers/tom/", 0, "", "", 404, ""},
		{"/consumers/tom/key", 0, "", "", 404, ""},
		{"/consumers/tom/keys/", 0, "", "", 400, ""},
		{"/consumers/tom/keys/k1/roll/x", 0, "", "", 404, ""},
		{"/consumers/tom/keys/k1/rotate", 0, "", "", 404, ""},
		{"/consumers/tom/usage", resUsage, "tom", "", 0, ""},
		{"/consumers/tom/usage/requests", resUsageMeter, "tom", "", 0, "requests"},
		{"/consumers/tom/usage/", 0, "", "", 400, ""},
		{"/consumers/tom/usage/requests/x", 0, "", "", 404, ""},
	} {
		r := httptest.NewRequest("GET", tc.path, nil)
		res, u, c, m, e := route(r)
		if m != tc.meter {
			t.Errorf("%s: meter %q, want %q", tc.path, m, tc.meter)
		}
		switch {
		case tc.status != 0 && (e == nil || e.status != tc.status):
			t.Errorf("%s: %v, want %d", tc.path, e, tc.status)
		case tc.status == 0 && (e != nil || res != tc.res || u != tc.username || c != tc.credID):
			t.Errorf("%s: %v %q %q %v, want %v %q %q", tc.path, res, u, c, e, tc.res, tc.username, tc.credID)
		}
	}
}
