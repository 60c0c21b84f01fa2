package integration

import (
	"fmt"
	"strings"
	"testing"
)

// matrixLocation is a place a key may be sent, as the matrix sends it.
type matrixLocation struct {
	name   string
	option string              // the key_auth option that turns it on
	put    func(*call, string) // adds the key to a call
}

// matrixLocations are the locations of rule 2, in the order key_auth
// searches them: a fifth location is one more entry here.
var matrixLocations = []matrixLocation{
	{"header", "key_in_header", func(c *call, key string) { c.hdr = append(c.hdr, "apikey", key) }},
	{"cookie", "key_in_cookie", func(c *call, key string) { c.hdr = append(c.hdr, "Cookie", "a=1; apikey="+key) }},
	{"query", "key_in_query", func(c *call, key string) { c.path += "&apikey=" + key }},
	{"body", "key_in_body", func(c *call, key string) { c.body += "&apikey=" + key }},
}

// The location-precedence matrix of rule 2: every on/off combination of
// the locations, against the key right, wrong or absent in each of them.
// The expected outcome is worked out from the rule, not listed: the first
// enabled location, in the order header, cookie, query, body, where the key
// is present decides.
func TestLocationMatrix(t *testing.T) {
	type value int
	const (
		missing value = iota
		right
		wrong
	)
	names := [...]string{"absent", "right", "wrong"}
	locs := matrixLocations
	n := len(locs)
	combos, cells := 1<<n, 1
	for range n {
		cells *= 3
	}
	// on is the combination's flags, the first location first.
	on := func(combo int) []bool {
		flags := make([]bool, n)
		for i := range n {
			flags[i] = combo&(1<<(n-1-i)) != 0
		}
		return flags
	}

	// One site with a route per combination, at /<flags>/ with each flag
	// 0 or 1.
	var routes strings.Builder
	for combo := range combos {
		flags := on(combo)
		fmt.Fprintf(&routes, "\thandle /%s/* {\n\t\tkey_auth {\n", comboPath(flags))
		for i, l := range locs {
			fmt.Fprintf(&routes, "\t\t\t%s %v\n", l.option, flags[i])
		}
		fmt.Fprintf(&routes, "\t\t\tconsumers file {{.Consumers}}\n\t\t}\n\t\treverse_proxy {{.Up}}\n\t}\n")
	}
	e := newEnv(t)
	e.load(`{{.Global}}
{{.Site}} {
`+routes.String()+`}
`, "caddyfile")
	// All off is allowed, with a warning.
	e.waitLog("caddy.log", func(l logEntry) bool {
		return l.str("level") == "warn" && l.str("logger") == "http.handlers.key_auth" && strings.Contains(l.str("msg"), "all off")
	})

	keyOf := map[value]string{right: keyAlice, wrong: keyWrong}
	for combo := range combos {
		flags := on(combo)
		for cell := range cells {
			vals := make([]value, n)
			for i, rest := n-1, cell; i >= 0; i, rest = i-1, rest/3 {
				vals[i] = value(rest % 3)
			}

			// The rule.
			want := reject(msgNoKey)
			for i := range n {
				if !flags[i] || vals[i] == missing {
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
			for i, l := range locs {
				state := "off"
				if flags[i] {
					state = "on"
				}
				desc = append(desc, fmt.Sprintf("%s(%s)=%s", l.name, state, names[vals[i]]))
			}
			t.Run(strings.Join(desc, ","), func(t *testing.T) {
				c := call{path: "/" + comboPath(flags) + "/x?a=1", ctype: formType, body: "b=2"}
				for i, l := range locs {
					if vals[i] != missing {
						l.put(&c, keyOf[vals[i]])
					}
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
				for i := 0; i < len(c.hdr); i += 2 {
					if got := got.Header.Get(c.hdr[i]); got != c.hdr[i+1] {
						t.Errorf("upstream got %s %q, want %q", c.hdr[i], got, c.hdr[i+1])
					}
				}
			})
		}
	}
}

func comboPath(on []bool) string {
	b := []byte(strings.Repeat("0", len(on)))
	for i, v := range on {
		if v {
			b[i] = '1'
		}
	}
	return string(b)
}
