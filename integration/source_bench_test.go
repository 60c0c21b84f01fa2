package integration

// Issue 3: a config reload with an unchanged 1,000,000-consumer source costs
// under 100 ms more than the same reload with 10 consumers.

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// writeManyConsumers writes a consumers file of n consumers with one random
// key each, and returns the first key.
func writeManyConsumers(b testing.TB, path string, n int) string {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	first := ""
	w.WriteString(`{"consumers": [`)
	for i := range n {
		if i > 0 {
			w.WriteString(",\n")
		}
		key := randomKey()
		if i == 0 {
			first = key
		}
		fmt.Fprintf(w, `{"username": "user%07d", "keys": [{"id": "cred%07d", "key": %q}]}`, i, i, key)
	}
	w.WriteString("]}\n")
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return first
}

func BenchmarkReload(b *testing.B) {
	dir := b.TempDir()
	files := []struct {
		name string
		n    int
		path string
		key  string
	}{
		{name: "10", n: 10},
		{name: "1M", n: 1_000_000},
	}
	for i := range files {
		files[i].path = filepath.Join(dir, "consumers-"+files[i].name+".json")
		files[i].key = writeManyConsumers(b, files[i].path, files[i].n)
	}
	cfg := func(path string, i int) string {
		return jsonConfig(sitePort[0], jsonRoute("/*", fileSourceJSON(path, "1h"), fmt.Sprintf("reload %d", i)))
	}
	// A Caddyfile start, as caddytest logs JSON configs in full.
	startCaddy(b, globalOptions("")+fmt.Sprintf("http://:%d {\n\trespond plain\n}\n", sitePort[0]), "caddyfile")
	b.Cleanup(func() { _, _, _ = loadConfig(idleConfig, "json") })

	msPerReload := make([]float64, len(files))
	b.ResetTimer()
	for fi, f := range files {
		b.StopTimer()
		// The first load reads the file; then a few warm-up reloads.
		start := time.Now()
		mustLoad(b, cfg(f.path, -1), "json")
		b.Logf("%s consumers: first load %s", f.name, time.Since(start))
		expect(b, site+"/", f.key, 200, "reload -1 user0000000")
		for i := range 3 {
			mustLoad(b, cfg(f.path, -2-i), "json")
		}
		runtime.GC()
		b.StartTimer()

		var total time.Duration
		for i := range b.N {
			start := time.Now()
			mustLoad(b, cfg(f.path, i), "json")
			total += time.Since(start)
		}
		b.StopTimer()
		expect(b, site+"/", f.key, 200, fmt.Sprintf("reload %d user0000000", b.N-1))
		msPerReload[fi] = float64(total) / float64(b.N) / float64(time.Millisecond)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(msPerReload[0], "ms/reload-10")
	b.ReportMetric(msPerReload[1], "ms/reload-1M")
	b.ReportMetric(msPerReload[1]-msPerReload[0], "ms-more-1M")
	b.Logf("reload: %.2f ms with 10 consumers, %.2f ms with 1,000,000 (%+.2f ms)", msPerReload[0], msPerReload[1], msPerReload[1]-msPerReload[0])
}
