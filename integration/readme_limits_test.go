package integration

// The README's "Limits and groups", run as written: its document loads,
// each key is charged the limits the README lists, and its refused variant
// fails `caddy key-auth check` with the error the README shows.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/limits"
)

// readmeSection is the README's section under heading (a "### " line), up
// to the next heading of its level or above.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start := strings.Index(s, "\n"+heading+"\n")
	if start < 0 {
		t.Fatalf("README.md has no %q", heading)
	}
	s = s[start+1+len(heading):]
	if end := regexp.MustCompile(`\n#{2,3} `).FindStringIndex(s); end != nil {
		s = s[:end[0]]
	}
	return s
}

func fenced(t *testing.T, section, lang string) []string {
	t.Helper()
	var out []string
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(section, -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatalf("no %s block in the section", lang)
	}
	return out
}

func TestReadmeLimits(t *testing.T) {
	section := readmeSection(t, "### Limits and groups")
	doc := fenced(t, section, "json")[0]
	set, err := consumers.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("the README's document is refused: %v", err)
	}

	// The text block: per key, the limits it is charged, in EachLimit's
	// order.
	var got strings.Builder
	_, nk := set.Len()
	for i := range nk {
		cr := set.CredentialAt(i)
		label := fmt.Sprintf("%-14s", cr.ID()+":")
		n := 0
		cr.EachLimit(func(k limits.ScopeKind, scope, meter string, l consumers.Limit) bool {
			if n > 0 {
				label = strings.Repeat(" ", 14)
			}
			n++
			fmt.Fprintf(&got, "%s%s %s: %s %d", label, k, scope, meter, l.Max)
			if !l.Window.IsZero() {
				fmt.Fprintf(&got, " per %s", l.Window)
			}
			got.WriteString("\n")
			return true
		})
		if n == 0 {
			fmt.Fprintf(&got, "%snone\n", label)
		}
	}
	if want := fenced(t, section, "text")[0]; got.String() != want {
		t.Errorf("the README says a request is charged\n%s\nEachLimit yields\n%s", want, got.String())
	}

	// The console block: check on the document with alice's tokens per
	// months.
	console := fenced(t, section, "console")[0]
	lines := strings.Split(strings.TrimSpace(console), "\n")
	if lines[0] != "$ caddy key-auth check consumers.json" {
		t.Fatalf("the console block runs %q", lines[0])
	}
	bad := strings.Replace(doc, `{"tokens": {"max": 2000000, "per": "month"}}`, `{"tokens": {"max": 2000000, "per": "months"}}`, 1)
	if bad == doc {
		t.Fatal("alice's tokens limit is not in the README's document")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "consumers.json"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := cli(t, dir, "", nil, "check", "consumers.json")
	if err == nil {
		t.Error("check accepted the refused document")
	}
	if want := strings.Join(lines[1:], "\n") + "\n"; out != want {
		t.Errorf("check says\n%s\nthe README\n%s", out, want)
	}
}
