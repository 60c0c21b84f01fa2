package usage

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// The bodies benchmarked are the real ones in testdata made long: the
// chunks of a stream repeated (as a long answer streams them), or a long
// text in the one JSON answer. Each reports MB/s (b.SetBytes) and
// allocations; written in 4 KiB pieces, as a proxy copies an upstream's.
//
//	go test -run - -bench . -benchmem ./keyauth/usage/
func BenchmarkReader(b *testing.B) {
	sse := readFixture(b, "openai-chat-stream-usage.sse")
	// The events before the one with usage, over and over, then the end.
	last := bytes.LastIndex(sse, []byte("data: {"))
	chunks := sse[:last]

	var ollama bytes.Buffer
	stream := readFixture(b, "ollama-chat-stream.ndjson")
	first := stream[:bytes.Index(stream, []byte("\n}\n"))+3]
	var compact bytes.Buffer
	_ = json.Compact(&compact, first)
	compact.WriteByte('\n')
	for ollama.Len() < 1<<20 {
		ollama.Write(compact.Bytes())
	}
	ollama.Write(stream[len(first):])

	answer := readFixture(b, "openai-chat-completion.json")
	text := strings.Repeat(`Hello! How can I assist you today?\n\"Quoted\" and \\escaped\\ text.\t`, 1<<20/70)
	long := bytes.Replace(answer, []byte("Hello! How can I assist you today?"), []byte(text), 1)

	for _, c := range []struct {
		name, ct string
		body     []byte
	}{
		{"sse-chat-chunks", "text/event-stream", append(bytes.Repeat(chunks, 1<<20/len(chunks)), sse[last:]...)},
		{"ndjson-ollama-chat", "application/x-ndjson", ollama.Bytes()},
		{"json-long-escaped-answer", "application/json", long},
	} {
		b.Run(c.name, func(b *testing.B) {
			if _, ok := read(c.ct, c.body, func() int { return 1 << 30 }); !ok {
				b.Fatal("no usage read")
			}
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			var r Reader
			for b.Loop() {
				r.Reset(c.ct)
				for p := c.body; len(p) > 0; {
					n := min(len(p), 4096)
					_, _ = r.Write(p[:n])
					p = p[n:]
				}
			}
		})
	}
}
