package integration

import (
	"fmt"
	"strings"
	"testing"
)

// The location-precedence matrix of rule 2: every on/off combination of
// key_in_header, key_in_query and key_in_body, against the key right, wrong
// or absent in each of the three locations. The expected outcome is worked
// out from the rule, not listed: the first enabled location, in the order
// header, query, body, where the key is present decides.
func TestLocationMatrix(t *testing.T) {
	type value int
	const (
		missing value = iota
		right
		wrong
	)
	names := [...]string{"absent", "right", "wrong"}
	locations := [...]string{"header", "query", "body"}

	// One site with a route per combination, at /<header><query><body>/
	// with each flag 0 or 1.
	var routes strings.Builder
	for combo := range 8 {
		on := [3]bool{combo&4 != 0, combo&2 != 0, combo&1 != 0}
		fmt.Fprintf(&routes, "\thandle /%s/* {\n\t\tkey_auth {\n", comboPath(on))
		fmt.Fprintf(&routes, "\t\t\tkey_in_header %v\n\t\t\tkey_in_query %v\n\t\t\tkey_in_body %v\n", on[0], on[1], on[2])
		fmt.Fprintf(&routes, "\t\t\tconsumers file {{.Consumers}}\n\t\t}\n\t\treverse_proxy {{.Up}}\n\t}\n")
	}
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
`+routes.String()+`}
`, "caddyfile")
	// All three off is allowed, with a warning.
	e.waitLog("caddy.log", func(l logEntry) bool {
		return l.str("level") == "warn" && l.str("logger") == "http.handlers.key_auth" && strings.Contains(l.str("msg"), "all off")
	})

	keyOf := map[value]string{right: keyAlice, wrong: keyWrong}
	for combo := range 8 {
		on := [3]bool{combo&4 != 0, combo&2 != 0, combo&1 != 0}
		for cell := range 27 {
			vals := [3]value{value(cell / 9), value(cell / 3 % 3), value(cell % 3)}

			// The rule.
			want := reject(msgNoKey)
			for i := range 3 {
				if !on[i] || vals[i] == missing {
					continue
				}
				if vals[i] == right {
					want = pass(idAlice)
				} else {
					want = reject(msgInvalid)
				}
				break
			}

			var desc []string
			for i := range 3 {
				state := "off"
				if on[i] {
					state = "on"
				}
				desc = append(desc, fmt.Sprintf("%s(%s)=%s", locations[i], state, names[vals[i]]))
			}
			t.Run(strings.Join(desc, ","), func(t *testing.T) {
				c := call{path: "/" + comboPath(on) + "/x?a=1", ctype: formType, body: "b=2"}
				if vals[0] != missing {
					c.hdr = []string{"apikey", keyOf[vals[0]]}
				}
				if vals[1] != missing {
					c.path += "&apikey=" + keyOf[vals[1]]
				}
				if vals[2] != missing {
					c.body += "&apikey=" + keyOf[vals[2]]
				}
				got := want.check(t, c.send(t, site), "Key")
				if got == nil {
					return
				}
				// Without hide_credentials, everything reaches the upstream.
				if got.URI != c.path {
					t.Errorf("upstream got %q, want %q", got.URI, c.path)
				}
				wantBody(t, got, []byte(c.body))
				if vals[0] != missing && got.Header.Get("Apikey") != keyOf[vals[0]] {
					t.Errorf("upstream got apikey header %q", got.Header.Get("Apikey"))
				}
			})
		}
	}
}

func comboPath(on [3]bool) string {
	b := []byte("000")
	for i, v := range on {
		if v {
			b[i] = '1'
		}
	}
	return string(b)
}
