package cookieread

import (
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// lines are Cookie header values whose readings the tests pin.
var lines = []string{
	"apikey=KEY",
	"apikey =KEY",
	" apikey=KEY",
	"apikey= KEY",
	"apikey\t=\tKEY",
	"a=1 apikey=KEY",
	`a=1; apikey ="KEY"; b=2`,
	"a=1 2; apikey=KEY",
	`a="x apikey=K"`,
	"a=1, apikey=KEY",
	"a=1,apikey=KEY",
	"apikey = KEY ; b=2",
	"$apikey=KEY",
	"path=1; apikey=K",
	"a=1;path=/; apikey=K",
	"apikey\u00a0=K",
	"apikey\xa0=K",
	"\u3000apikey=K",
	`session=s1;theme="dark mode"; lang=en`,
	"apikey",
	"apikey=; a=1",
	`apikey=""; a=1`,
	"",
}

// The readers agree with what the parsers read, as run by hand with
// CPython 3.11 and Werkzeug 3.1 (and by TestAgainstPython where they are
// installed).
func TestReaders(t *testing.T) {
	want := map[string]map[string][]string{
		"apikey =KEY":          {"go net/http": {"apikey"}, "python http.cookies": {"apikey"}, "werkzeug": {"apikey"}},
		"a=1 apikey=KEY":       {"go net/http": {"a"}, "python http.cookies": {"a", "apikey"}, "werkzeug": {"a"}},
		"a=1 2; apikey=KEY":    {"python http.cookies": nil, "werkzeug": {"a", "apikey"}},
		"a=1, apikey=KEY":      {"python http.cookies": {"a", "apikey"}, "rfc 2965 (';' and ',')": {"a", "apikey"}, "werkzeug": {"a"}},
		"a=1,apikey=KEY":       {"python http.cookies": {"a"}, "rfc 2965 (';' and ',')": {"a", "apikey"}},
		`a="x apikey=K"`:       {"python http.cookies": {"a"}, "werkzeug": {"a"}, "go net/http": {"a"}},
		"path=1; apikey=K":     {"python http.cookies": nil},
		"apikey\u00a0=K":       {"werkzeug": {"apikey"}, "django (utf-8, str.strip)": {"apikey"}, "python http.cookies": nil, "go net/http": nil},
		"apikey\xa0=K":         {"starlette (latin-1, str.strip)": {"apikey"}, "django (utf-8, str.strip)": {"apikey\ufffd"}},
		"apikey":               {"go net/http": nil, "python http.cookies": nil, "werkzeug": nil}, // no value
		"apikey=; a=1":         {"go net/http": {"a"}, "python http.cookies": {"a"}, "werkzeug": {"a"}},
		"apikey\t=\tKEY":       {"go net/http": nil, "python http.cookies": {"apikey"}}, // Go refuses the tab in the value
		"$apikey=KEY":          {"python http.cookies": nil, "go net/http": {"$apikey"}},
		"a=1;path=/; apikey=K": {"python http.cookies": {"a", "apikey"}},
	}
	for line, byReader := range want {
		for _, r := range Readers {
			w, ok := byReader[r.Name]
			if !ok {
				continue
			}
			if got := r.Read(line); !slices.Equal(got, w) {
				t.Errorf("%s reads %q as %q, want %q", r.Name, line, got, w)
			}
		}
	}
	if got := Names([]string{"a=1", "apikey =K", "b"}); !slices.Equal(got, []string{"a", "apikey"}) {
		t.Errorf("Names = %q", got)
	}
	if got := Holds([]string{"x=1 apikey=K"}, "apikey"); !slices.Equal(got, []string{"python http.cookies"}) {
		t.Errorf("Holds = %q", got)
	}
}

// TestAgainstPython runs CPython's http.cookies, and Werkzeug when it is
// installed, on the lines and compares the names with the readers'.
func TestAgainstPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	const script = `
import json, sys
from http.cookies import SimpleCookie
try:
    from werkzeug.http import parse_cookie
except ImportError:
    parse_cookie = None
out = []
for h in json.load(sys.stdin):
    s = bytes.fromhex(h).decode("latin-1")  # as WSGI hands the header over
    c = SimpleCookie()
    try:
        c.load(s)
        simple = [k for k, m in c.items() if m.value != ""]
    except Exception:
        simple = []
    wz = None
    if parse_cookie is not None:
        try:
            wz = [k.encode("utf-8").hex() for k, v in parse_cookie(s).items(multi=True) if v != ""]
        except UnicodeDecodeError:
            wz = []
    out.append({"simple": simple, "werkzeug": wz})
print(json.dumps(out))
`
	var in []string
	for _, l := range lines {
		in = append(in, hex.EncodeToString([]byte(l)))
	}
	stdin, _ := json.Marshal(in)
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = strings.NewReader(string(stdin))
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var got []struct {
		Simple   []string  `json:"simple"`
		Werkzeug *[]string `json:"werkzeug"`
	}
	if err := json.Unmarshal(res, &got); err != nil {
		t.Fatal(err)
	}
	for i, l := range lines {
		if w := pythonSimpleCookie(l); !sameSet(got[i].Simple, w) {
			t.Errorf("http.cookies reads %q as %q, the port as %q", l, got[i].Simple, w)
		}
		if got[i].Werkzeug == nil {
			continue
		}
		var wz []string
		for _, h := range *got[i].Werkzeug {
			b, _ := hex.DecodeString(h)
			wz = append(wz, string(b))
		}
		// Werkzeug refuses a header that is not UTF-8.
		if port := werkzeug(l); utf8.ValidString(l) && !sameSet(wz, port) {
			t.Errorf("Werkzeug reads %q as %q, the port as %q", l, wz, port)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
