// Command benchtool is a helper of the benchmark scripts in bench/: it writes
// consumers files and measures what loading one costs in Go.
//
//	benchtool gen -n 1000000 -seed 1 -stable 1000 -o consumers.json -keys keys.txt
//	benchtool parse -f consumers.json -runs 3
//	benchtool resp -from 0 -to 1000000 -per 10 | redis-cli --pipe
//	benchtool keys -n 100000
//
// gen writes n consumers shaped like
//
//	{"username": "user-42", "custom_id": "c-42", "keys": [{"key": "<32 hex digits>"}]}
//
// The first -stable consumers have keys derived from their index alone, so two
// files written with different seeds share them (a load keeps working across a
// reload from one file to the other) and differ in every other key. -keys
// writes the stable keys, one a line.
//
// parse reports, as key=value lines, the time consumers.Parse takes on the
// file's bytes and the live heap the parsed Set holds.
//
// resp writes credentials [from, to) (key i is stable consumer i's key; per
// credentials to a consumer) as RESP commands in the Redis source's layout;
// keys writes the keys of credentials [0, n), one a line.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/keyauth/caddy-keyauth/consumers"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "parse":
		err = parse(os.Args[2:])
	case "resp":
		err = resp(os.Args[2:])
	case "keys":
		err = keys(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: benchtool gen -n N [-seed S] [-stable K] -o FILE [-keys FILE]")
	fmt.Fprintln(os.Stderr, "       benchtool parse -f FILE [-runs R]")
	fmt.Fprintln(os.Stderr, "       benchtool resp [-from I] -to J [-per P] [-prefix keyauth:] | redis-cli --pipe")
	fmt.Fprintln(os.Stderr, "       benchtool keys -n N")
	os.Exit(2)
}

// stableKey is the key of stable consumer i: the same in every file.
func stableKey(i int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "caddy-keyauth-bench-%d", i))
	return hex.EncodeToString(sum[:16])
}

func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	n := fs.Int("n", 1000, "number of consumers")
	seed := fs.Uint64("seed", 1, "seed of the random keys")
	stable := fs.Int("stable", 1000, "number of leading consumers whose keys do not depend on the seed")
	out := fs.String("o", "", "consumers file to write")
	keysOut := fs.String("keys", "", "file to write the stable keys to, one a line")
	limits := fs.String("limits", "", `a limits object every consumer gets, e.g. {"requests": {"max": 1000000000, "per": "day"}}`)
	_ = fs.Parse(args)
	if *out == "" || *n < 1 {
		usage()
	}
	extra := ""
	if *limits != "" {
		if !json.Valid([]byte(*limits)) {
			return fmt.Errorf("-limits is not JSON: %s", *limits)
		}
		extra = `, "limits": ` + *limits
	}
	rng := rand.New(rand.NewChaCha8(seedBytes(*seed)))
	tmp := *out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var keys []string
	raw := make([]byte, 16)
	w.WriteString(`{"consumers": [` + "\n")
	for i := range *n {
		var key string
		if i < *stable {
			key = stableKey(i)
			keys = append(keys, key)
		} else {
			for j := 0; j < len(raw); j += 8 {
				v := rng.Uint64()
				for b := range 8 {
					raw[j+b] = byte(v >> (8 * b))
				}
			}
			key = hex.EncodeToString(raw)
		}
		if i > 0 {
			w.WriteString(",\n")
		}
		fmt.Fprintf(w, `{"username": "user-%d", "custom_id": "c-%d", "keys": [{"key": "%s"}]%s}`, i, i, key, extra)
	}
	w.WriteString("\n]}\n")
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, *out); err != nil {
		return err
	}
	if *keysOut != "" {
		kf, err := os.Create(*keysOut)
		if err != nil {
			return err
		}
		kw := bufio.NewWriter(kf)
		for _, k := range keys {
			kw.WriteString(k + "\n")
		}
		if err := kw.Flush(); err != nil {
			kf.Close()
			return err
		}
		return kf.Close()
	}
	return nil
}

func seedBytes(s uint64) (b [32]byte) {
	for i := range 8 {
		b[i] = byte(s >> (8 * i))
	}
	return b
}

func parse(args []string) error {
	fs := flag.NewFlagSet("parse", flag.ExitOnError)
	file := fs.String("f", "", "consumers file")
	runs := fs.Int("runs", 3, "timed parses after the first")
	_ = fs.Parse(args)
	if *file == "" {
		usage()
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return err
	}

	// The first parse: its time, and the live heap of its Set, measured with
	// the document's bytes alive on both sides so they cancel out.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	set, err := consumers.Parse(data)
	first := time.Since(start)
	if err != nil {
		return err
	}
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	runtime.GC()
	runtime.ReadMemStats(&after)
	nc, nk := set.Len()
	live := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	runtime.KeepAlive(set)
	runtime.KeepAlive(data)

	// More parses, each with the previous Set garbage, as on a reload.
	var times []time.Duration
	for range *runs {
		runtime.GC()
		start := time.Now()
		s, err := consumers.Parse(data)
		times = append(times, time.Since(start))
		if err != nil {
			return err
		}
		runtime.KeepAlive(s)
	}
	slices.Sort(times)
	med := first
	if len(times) > 0 {
		med = times[len(times)/2]
	}

	fmt.Printf("file_bytes=%d\n", len(data))
	fmt.Printf("consumers=%d\n", nc)
	fmt.Printf("keys=%d\n", nk)
	fmt.Printf("parse_first_ms=%.0f\n", ms(first))
	fmt.Printf("parse_median_ms=%.0f\n", ms(med))
	fmt.Printf("parse_runs=%d\n", len(times))
	fmt.Printf("parse_alloc_bytes=%d\n", during.TotalAlloc-before.TotalAlloc)
	fmt.Printf("heap_bytes=%d\n", live)
	fmt.Printf("heap_per_consumer=%.1f\n", float64(live)/float64(max(nc, 1)))
	fmt.Printf("gomaxprocs=%d\n", runtime.GOMAXPROCS(0))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
