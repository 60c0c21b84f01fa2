package usage

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixtures are the real answers in testdata (see testdata/SOURCES.md) and
// the usage each carries.
var fixtures = []struct {
	file        string
	contentType string
	want        int64
}{
	{"ollama-generate-stream.ndjson", "application/x-ndjson", 26 + 259},
	{"ollama-generate.json", "application/json; charset=utf-8", 26 + 290},
	{"ollama-chat-stream.ndjson", "application/x-ndjson", 26 + 282},
	{"ollama-chat-tools-stream.ndjson", "application/x-ndjson", 169 + 15},
	{"openai-chat-completion.json", "application/json", 29},
	{"openai-chat-stream-usage.sse", "text/event-stream; charset=utf-8", 15},
	{"openai-responses-stream.sse", "text/event-stream", 48},
	{"openai-image-generation-stream.sse", "text/event-stream", 100},
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := readFixtureFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readFixtureFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("testdata", name))
}

// read feeds body to a Reader in pieces of the sizes cut returns.
func read(ct string, body []byte, cut func() int) (int64, bool) {
	var r Reader
	r.Reset(ct)
	for len(body) > 0 {
		n := min(max(cut(), 1), len(body))
		_, _ = r.Write(body[:n])
		body = body[n:]
	}
	return r.Tokens()
}

// cuts are the ways a body is written: whole, a byte at a time, in random
// pieces (as an upstream flushes).
func cuts(seed uint64) map[string]func() int {
	rng := rand.New(rand.NewPCG(seed, 1))
	return map[string]func() int{
		"whole":  func() int { return 1 << 30 },
		"bytes":  func() int { return 1 },
		"random": func() int { return 1 + rng.IntN(64) },
	}
}

func TestFixtures(t *testing.T) {
	for _, f := range fixtures {
		body := readFixture(t, f.file)
		for name, cut := range cuts(uint64(len(body))) {
			got, ok := read(f.contentType, body, cut)
			if !ok || got != f.want {
				t.Errorf("%s written %s: got %d (found %v), want %d", f.file, name, got, ok, f.want)
			}
		}
	}
}

// TestOllamaNDJSON reads Ollama's streams as its server writes them: each
// object compacted onto a line of its own.
func TestOllamaNDJSON(t *testing.T) {
	for _, f := range fixtures {
		if !strings.HasSuffix(f.file, ".ndjson") {
			continue
		}
		var lines bytes.Buffer
		dec := json.NewDecoder(bytes.NewReader(readFixture(t, f.file)))
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				t.Fatal(err)
			}
			if err := json.Compact(&lines, raw); err != nil {
				t.Fatal(err)
			}
			lines.WriteByte('\n')
		}
		for name, cut := range cuts(7) {
			got, ok := read(f.contentType, lines.Bytes(), cut)
			if !ok || got != f.want {
				t.Errorf("%s as NDJSON written %s: got %d (found %v), want %d", f.file, name, got, ok, f.want)
			}
		}
	}
}

// TestNoUsage: an answer that carries no usage says so, and the figure is
// the last event's that carried one.
func TestNoUsage(t *testing.T) {
	stream := readFixture(t, "openai-chat-stream-usage.sse")
	// Every event before the one with usage has "usage":null.
	cut := bytes.LastIndex(stream, []byte("data: {"))
	if _, ok := read("text/event-stream", stream[:cut], cuts(1)["whole"]); ok {
		t.Error("a stream without its usage event read usage")
	}
	chunk := readFixture(t, "ollama-chat-stream.ndjson")
	first := chunk[:bytes.Index(chunk, []byte("\n}\n"))+3]
	if _, ok := read("application/x-ndjson", first, cuts(1)["whole"]); ok {
		t.Error("an Ollama stream cut before its final object read usage")
	}
	for _, ct := range []string{"text/plain", "text/html; charset=utf-8", "application/octet-stream"} {
		var r Reader
		if r.Reset(ct) {
			t.Errorf("Reset(%q) reads the body", ct)
		}
		_, _ = r.Write(readFixture(t, "openai-chat-completion.json"))
		if _, ok := r.Tokens(); ok {
			t.Errorf("a %s body read usage", ct)
		}
	}
}

func TestCases(t *testing.T) {
	for _, c := range []struct {
		name, ct, body string
		want           int64 // -1: no usage
	}{
		{"last event wins", "text/event-stream", "data: {\"usage\":{\"total_tokens\":5}}\n\ndata: {\"usage\":{\"total_tokens\":7}}\n\n", 7},
		{"null usage keeps the last", "text/event-stream", "data: {\"usage\":{\"total_tokens\":5}}\n\ndata: {\"usage\":null}\n\n", 5},
		{"parts without total", "text/event-stream", "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n", 7},
		{"responses parts", "application/json", `{"response":{"usage":{"input_tokens":3,"output_tokens":4}}}`, 7},
		{"usage in a choice is not the answer's", "application/json", `{"choices":[{"usage":{"total_tokens":9}}]}`, -1},
		{"nested usage is not the answer's", "application/json", `{"x":{"usage":{"total_tokens":9}}}`, -1},
		{"text that looks like usage", "application/json", `{"content":"{\"usage\":{\"total_tokens\":9}}"}`, -1},
		{"escaped quote before usage", "application/json", `{"a":"x\"y\\","usage":{"total_tokens":11}}`, 11},
		{"multi-line data", "text/event-stream", "data: {\"usage\":\ndata: {\"total_tokens\":12}}\n\n", 12},
		{"CRLF", "text/event-stream", "data: {\"usage\":{\"total_tokens\":13}}\r\n\r\n", 13},
		{"CR", "text/event-stream", "data:{\"usage\":{\"total_tokens\":14}}\r\r", 14},
		{"comment and fields", "text/event-stream", ": ping\nevent: x\nid: 1\nretry: 5\ndata: {\"usage\":{\"total_tokens\":15}}\n\n", 15},
		{"field named like data", "text/event-stream", "datax: {\"usage\":{\"total_tokens\":15}}\n\n", -1},
		{"an event cut short does not spill", "text/event-stream", "data: {\"usage\":{\"total_tokens\":16\n\ndata: {\"a\":1}\n\n", -1},
		{"float is no count", "application/json", `{"usage":{"total_tokens":1.5}}`, -1},
		{"negative is no count", "application/json", `{"usage":{"total_tokens":-1}}`, -1},
		{"overflow is no count", "application/json", `{"usage":{"total_tokens":99999999999999999999}}`, -1},
		{"max int64", "application/json", `{"usage":{"total_tokens":9223372036854775807}}`, 9223372036854775807},
		{"ollama eval only", "application/x-ndjson", "{\"done\":false}\n{\"done\":true,\"eval_count\":8}\n", 8},
		{"ollama sum saturates", "application/x-ndjson", `{"prompt_eval_count":9223372036854775807,"eval_count":9}`, 9223372036854775807},
		{"garbage line then NDJSON", "application/x-ndjson", "{\"a\" x}\n{\"eval_count\":3}\n", 3},
		{"top-level array", "application/json", `[{"usage":{"total_tokens":9}}]`, -1},
		{"missing content type", "", `{"usage":{"total_tokens":17}}`, 17},
		{"json suffix", "application/vnd.api+json", `{"usage":{"total_tokens":18}}`, 18},
		{"long names are skipped", "application/json", `{"a_very_long_member_name_indeed":{"usage":1},"usage":{"total_tokens":19}}`, 19},
		{"escaped name is not ours", "application/json", `{"\u0075sage":{"total_tokens":20}}`, -1},
	} {
		for name, cut := range cuts(3) {
			got, ok := read(c.ct, []byte(c.body), cut)
			if c.want < 0 {
				if ok {
					t.Errorf("%s (%s): read %d, want no usage", c.name, name, got)
				}
				continue
			}
			if !ok || got != c.want {
				t.Errorf("%s (%s): got %d (found %v), want %d", c.name, name, got, ok, c.want)
			}
		}
	}
}

// TestNoAllocs: reading a body allocates nothing, however it is cut.
func TestNoAllocs(t *testing.T) {
	for _, f := range fixtures {
		body := readFixture(t, f.file)
		var r Reader
		allocs := testing.AllocsPerRun(20, func() {
			r.Reset(f.contentType)
			for i := 0; i < len(body); i += 7 {
				_, _ = r.Write(body[i:min(i+7, len(body))])
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations, want 0", f.file, allocs)
		}
	}
}
