package docfile

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// BenchmarkWrite is what one change costs in a consumers file of n
// consumers (one hashed key each): the whole document is read, changed,
// checked and rewritten (Open, Save), then read again by the source that
// serves it (ParseFile), as the management API and the CLI do. The README
// ("Management API", what a write costs) quotes these figures:
//
//	go test -run '^$' -bench Write -benchtime 5x ./consumers/docfile/
func BenchmarkWrite(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("consumers=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "consumers.json")
			doc := &consumers.Document{Consumers: make([]consumers.ConsumerEntry, n)}
			for i := range doc.Consumers {
				doc.Consumers[i] = consumers.ConsumerEntry{
					Username: fmt.Sprintf("consumer-%07d", i),
					Groups:   []string{"free"},
					Keys: []consumers.CredentialEntry{{
						ID:        fmt.Sprintf("consumer-%07d-key", i),
						Hash:      consumers.HashKey(fmt.Sprintf("key-%07d", i)),
						CreatedAt: "2026-12-01T00:00:00Z",
					}},
				}
			}
			data, err := doc.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(data))/(1<<20), "MiB")
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				f, err := Open(path)
				if err != nil {
					b.Fatal(err)
				}
				c := &f.Doc.Consumers[i%n]
				c.Disabled = !c.Disabled
				if err := f.Save(); err != nil {
					b.Fatal(err)
				}
				if _, err := consumers.ParseFile(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
