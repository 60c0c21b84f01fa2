package consumers

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseFileMapped parses a file large enough to be mapped, page by page
// dropped, and finds what Parse finds in memory.
func TestParseFileMapped(t *testing.T) {
	var doc bytes.Buffer
	doc.WriteString(`{"consumers": [`)
	for i := range 200_000 {
		if i > 0 {
			doc.WriteByte(',')
		}
		fmt.Fprintf(&doc, `{"username": "user-%07d", "keys": [{"key": "key-%07d-%s"}]}`, i, i, "0123456789abcdef")
	}
	doc.WriteString("]}")
	if doc.Len() < mapAbove {
		t.Fatalf("document of %d bytes is not mapped", doc.Len())
	}
	path := filepath.Join(t.TempDir(), "consumers.json")
	if err := os.WriteFile(path, doc.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Parse(doc.Bytes())
	if c, k := set.Len(); c != 200_000 || k != 200_000 {
		t.Fatalf("%d consumers, %d keys", c, k)
	}
	if set.arena != want.arena {
		t.Fatal("the mapped parse differs from the in-memory one")
	}
	// An error near the end still has its line, from pages read back.
	broken := append(bytes.Clone(doc.Bytes()[:doc.Len()-2]), []byte("\n\n}")...)
	if err := os.WriteFile(path, broken, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ParseFile(path)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("line 3")) {
		t.Fatalf("error %v, want one on line 3", err)
	}
}

// TestParseFileTruncated: a file truncated in place while it is mapped is an
// error (and one that is read again at the next poll), not a crash.
func TestParseFileTruncated(t *testing.T) {
	var doc bytes.Buffer
	doc.WriteString(`{"consumers": [`)
	for i := range 100_000 {
		if i > 0 {
			doc.WriteByte(',')
		}
		fmt.Fprintf(&doc, `{"username": "user-%07d", "keys": [{"key": "key-%07d-0123456789"}]}`, i, i)
	}
	doc.WriteString("]}")
	path := filepath.Join(t.TempDir(), "consumers.json")
	if err := os.WriteFile(path, doc.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	testHookAfterMap = func() {
		// Whole pages, so the parser runs past the file's new end.
		if err := os.Truncate(path, 8192); err != nil {
			t.Error(err)
		}
	}
	defer func() { testHookAfterMap = func() {} }()
	_, err := ParseFile(path)
	if err == nil || !errors.As(err, new(ReadError)) || !strings.Contains(err.Error(), "changed while it was read") {
		t.Fatalf("error %v, want a read error", err)
	}
}
