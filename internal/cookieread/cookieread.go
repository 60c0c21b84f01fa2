// Package cookieread reads a request's Cookie header lines the ways
// upstream applications do, for tests: which cookie names would an upstream
// written with Go, Python's http.cookies, Werkzeug, Django or Starlette, or
// an old RFC 2965 parser, find there? It is an oracle written apart from
// the handler's own reading, each reader a port of its parser's rules.
package cookieread

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// A Reader returns the names of the cookies that one parser reads in one
// Cookie header value with a value that is not empty (a key never is).
type Reader struct {
	Name string
	Read func(line string) []string
}

// Readers are the parsers emulated.
var Readers = []Reader{
	{"go net/http", goNetHTTP},
	{"python http.cookies", pythonSimpleCookie},
	{"werkzeug", werkzeug},
	{"django (utf-8, str.strip)", func(l string) []string { return splitStrip(l, utf8Runes) }},
	{"starlette (latin-1, str.strip)", func(l string) []string { return splitStrip(l, latin1Runes) }},
	{"rfc 2965 (';' and ',')", rfc2965},
}

// Names returns every cookie name some Reader finds in the lines, one by
// one and joined as upstreams join them (HTTP/2 with "; ", CGI and WSGI
// servers with ", "), sorted, each once.
func Names(lines []string) []string {
	var all []string
	inputs := append(slices.Clone(lines), strings.Join(lines, "; "), strings.Join(lines, ", "))
	for _, r := range Readers {
		for _, in := range inputs {
			all = append(all, r.Read(in)...)
		}
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// Holds reports which Readers find a cookie named name in the lines, in the
// same ways as Names.
func Holds(lines []string, name string) []string {
	var who []string
	inputs := append(slices.Clone(lines), strings.Join(lines, "; "), strings.Join(lines, ", "))
	for _, r := range Readers {
		for _, in := range inputs {
			if slices.Contains(r.Read(in), name) {
				who = append(who, r.Name)
				break
			}
		}
	}
	return who
}

// goNetHTTP is net/http's Request.Cookies: split at ';', the name trimmed
// of ASCII space, a valid token.
func goNetHTTP(line string) []string {
	r := http.Request{Header: http.Header{"Cookie": {line}}}
	var names []string
	for _, c := range r.Cookies() {
		if c.Value != "" {
			names = append(names, c.Name)
		}
	}
	return names
}

// pyWS is Python's \s under re.ASCII.
const pyWS = `[ \t\n\r\f\v]`

// simpleCookiePattern is http.cookies._CookiePattern (CPython 3.11 to 3.13),
// anchored, with \s and \w as under re.ASCII.
var simpleCookiePattern = regexp.MustCompile(`^` + pyWS + `*` +
	"(?P<key>[0-9A-Za-z_!#%&'~`><@,:/$*+\\-.^|)(?}{=]+?)" +
	`(` + pyWS + `*=` + pyWS + `*` +
	`(?P<val>"(?:[^\\"]|\\.)*"` +
	`|[0-9A-Za-z_]{3},` + pyWS + `[0-9A-Za-z_ \t\n\r\f\v-]{9,11}` + pyWS + `[0-9:]{8}` + pyWS + `GMT` +
	"|[0-9A-Za-z_!#%&'~`><@,:/$*+\\-.^|)(?}{=\\[\\]]*)" +
	`)?` + pyWS + `*(` + pyWS + `+|;|$)`)

var morselReserved = []string{"expires", "path", "comment", "domain", "max-age", "secure", "httponly", "version", "samesite", "partitioned"}

// pythonSimpleCookie is http.cookies.SimpleCookie.load: pairs end at ';' or
// at white space, and a string it finds invalid yields nothing.
func pythonSimpleCookie(line string) []string {
	key, val := simpleCookiePattern.SubexpIndex("key"), simpleCookiePattern.SubexpIndex("val")
	var names []string
	seen := false
	for i := 0; i < len(line); {
		m := simpleCookiePattern.FindStringSubmatchIndex(line[i:])
		if m == nil {
			break
		}
		k, v := line[i+m[2*key]:i+m[2*key+1]], ""
		hasVal := m[2*val] >= 0
		if hasVal {
			v = line[i+m[2*val] : i+m[2*val+1]]
		}
		i += m[1]
		switch {
		case k[0] == '$':
		case slices.Contains(morselReserved, strings.ToLower(k)):
			if lk := strings.ToLower(k); !seen || !hasVal && lk != "secure" && lk != "httponly" && lk != "partitioned" {
				return nil
			}
		case hasVal:
			if v != "" && v != `""` {
				names = append(names, k)
			}
			seen = true
		default:
			return nil
		}
	}
	return names
}

// werkzeugPattern is werkzeug.sansio.http._cookie_re (Werkzeug 2.3 to 3.1).
var werkzeugPattern = regexp.MustCompile(`([^=;]*)(?:` + pyWS + `*=` + pyWS + `*("(?:[^\\"]|\\.)*"|.*?))?` + pyWS + `*;` + pyWS + `*`)

// werkzeug is werkzeug.http.parse_cookie: the header as UTF-8, pairs found
// by its pattern, names stripped as Python's str.strip does.
func werkzeug(line string) []string {
	var names []string
	for _, m := range werkzeugPattern.FindAllStringSubmatch(line+";", -1) {
		v := pyStrip(utf8Runes(m[2]))
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if k := pyStrip(utf8Runes(m[1])); k != "" && v != "" {
			names = append(names, k)
		}
	}
	return names
}

// splitStrip is Django's parse_cookie, which Starlette copies: split at
// ';', a chunk without '=' is a value without a name, the name stripped.
func splitStrip(line string, decode func(string) []rune) []string {
	var names []string
	for chunk := range strings.SplitSeq(line, ";") {
		k, v, ok := strings.Cut(chunk, "=")
		if !ok {
			continue
		}
		if k = pyStrip(decode(k)); k != "" && pyStrip(decode(v)) != "" {
			names = append(names, k)
		}
	}
	return names
}

// rfc2965 splits at ';' and ',', as the Cookie grammar of RFC 2965 allowed
// and old servlet containers still read it.
func rfc2965(line string) []string {
	var names []string
	for chunk := range strings.FieldsFuncSeq(line, func(r rune) bool { return r == ';' || r == ',' }) {
		if k, v, ok := strings.Cut(chunk, "="); ok {
			if k = strings.Trim(k, " \t"); k != "" && strings.Trim(v, " \t") != "" {
				names = append(names, k)
			}
		}
	}
	return names
}

func utf8Runes(s string) []rune { return []rune(s) }

// latin1Runes decodes s as Latin-1, as WSGI and ASGI servers decode header
// bytes.
func latin1Runes(s string) []rune {
	r := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		r[i] = rune(s[i])
	}
	return r
}

// pyStrip is Python's str.strip on the decoded text, the result encoded
// back as UTF-8 (a name that decoded from Latin-1 stays comparable only
// when it is ASCII, which key names are).
func pyStrip(rs []rune) string {
	isSpace := func(r rune) bool { return unicode.IsSpace(r) || 0x1c <= r && r <= 0x1f }
	for len(rs) > 0 && isSpace(rs[0]) {
		rs = rs[1:]
	}
	for len(rs) > 0 && isSpace(rs[len(rs)-1]) {
		rs = rs[:len(rs)-1]
	}
	return string(rs)
}
