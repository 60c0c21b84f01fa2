package integration

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The README's curl examples, run against Caddyfile.example with its ports
// moved to this process's free ports: each answer must be the one the README shows,
// where "..." stands for anything.
func TestReadmeExamples(t *testing.T) {
	root := repoRoot(t)
	example, err := os.ReadFile(filepath.Join(root, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	port := func(i int) string { return ":" + strconv.Itoa(sitePort[i]) }
	ports := strings.NewReplacer("localhost:2019", adminAddr, ":8080", port(0), ":8081", port(1), ":8082", port(2))
	cfg := ports.Replace(string(example))
	cfg = strings.Replace(cfg, "admin "+adminAddr, "admin "+adminAddr+"\n\tpersist_config off", 1)
	cfg = strings.ReplaceAll(cfg, "examples/consumers.json", filepath.Join(root, "examples", "consumers.json"))
	if !strings.Contains(cfg, "localhost"+port(0)) || strings.Contains(cfg, "localhost:2019") {
		t.Fatalf("Caddyfile.example is not the one this test knows:\n%s", cfg)
	}
	e := newEnv(t)
	e.load(strings.ReplaceAll(cfg, "{{", "{{`{{`}}"), "caddyfile")

	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	examples := curlExamples(string(readme))
	if len(examples) < 5 {
		t.Fatalf("found %d curl examples in README.md", len(examples))
	}
	for _, ex := range examples {
		t.Run(ex.cmd, func(t *testing.T) {
			r := ex.run(t, ports)
			got := strings.TrimRight(string(r.body), "\n")
			if ex.include {
				if ex.status != "" && r.status != statusCode(ex.status) {
					t.Errorf("status %d, README says %q", r.status, ex.status)
				}
				for _, h := range ex.headers {
					name, value, _ := strings.Cut(h, ": ")
					if !slices.Contains(r.header.Values(name), value) {
						t.Errorf("header %s: %q, README says %q", name, r.header.Values(name), value)
					}
				}
			}
			if !globMatch(ex.body, got) {
				t.Errorf("answer\n%s\nREADME says\n%s", got, ex.body)
			}
		})
	}
}

// curlExample is a `$ curl ...` line of the README and the answer shown
// after it.
type curlExample struct {
	cmd     string
	args    []string
	include bool     // -i: the answer starts with the status and headers
	status  string   // "HTTP/1.1 401 Unauthorized"
	headers []string // "Name: value"
	body    string
}

func curlExamples(readme string) []curlExample {
	var out []curlExample
	sc := bufio.NewScanner(strings.NewReader(readme))
	var cur *curlExample
	var lines []string
	flush := func() {
		if cur == nil {
			return
		}
		if cur.include && len(lines) > 0 {
			cur.status, lines = lines[0], lines[1:]
			for len(lines) > 1 && strings.Contains(lines[0], ": ") {
				cur.headers, lines = append(cur.headers, lines[0]), lines[1:]
			}
			if len(lines) > 1 && lines[0] == "..." {
				lines = lines[1:]
			}
		}
		cur.body = strings.Join(lines, "\n")
		out = append(out, *cur)
		cur, lines = nil, nil
	}
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "$ curl "):
			flush()
			cur = &curlExample{cmd: strings.TrimPrefix(l, "$ "), args: shellWords(strings.TrimPrefix(l, "$ curl "))}
			for _, a := range cur.args {
				if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.Contains(a, "i") {
					cur.include = true
				}
			}
		case cur != nil && (l == "" || strings.HasPrefix(l, "```") || strings.HasPrefix(l, "$")):
			flush()
		case cur != nil:
			lines = append(lines, l)
		}
	}
	flush()
	return out
}

// run sends the example's request: the -H headers and the URL, with its
// port moved.
func (ex curlExample) run(t *testing.T, ports *strings.Replacer) *response {
	t.Helper()
	var hdr []string
	var url string
	for i := 0; i < len(ex.args); i++ {
		switch a := ex.args[i]; {
		case a == "-H" && i+1 < len(ex.args):
			name, value, _ := strings.Cut(ex.args[i+1], ":")
			hdr = append(hdr, name, strings.TrimSpace(value))
			i++
		case strings.HasPrefix(a, "-"):
		default:
			url = a
		}
	}
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	return do(t, req(http.MethodGet, ports.Replace(url), nil, hdr...))
}

// shellWords splits a command line as a POSIX shell would for the simple
// quoting the README uses.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	in, inWord := byte(0), false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in != 0 && c == in:
			in = 0
		case in != 0:
			w.WriteByte(c)
		case c == '\'' || c == '"':
			in, inWord = c, true
		case c == ' ' || c == '\t':
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// globMatch matches s against pattern, where "..." stands for anything.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "...")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(`(?s)\A` + strings.Join(parts, ".*") + `\z`).MatchString(s)
}

func statusCode(statusLine string) int {
	f := strings.Fields(statusLine)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}
