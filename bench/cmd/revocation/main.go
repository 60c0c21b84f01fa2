// Command revocation measures how fast a revocation in Redis reaches two
// Caddy processes under load: it starts a redis-server and two Caddy
// processes with the Redis source, keeps both busy with valid keys, then
// deletes 100 credential hashes one by one, and then 100 consumer hashes,
// and for each reports the time from the DEL returning until both
// instances reject the key. It prints p50 and p99 of each.
//
//	revocation -caddy ./caddy [-load 8]
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/rueidis"
)

const n = 100

func main() {
	caddy := flag.String("caddy", "", "a Caddy binary with the key_auth module")
	workers := flag.Int("load", 8, "concurrent requests kept going against each instance")
	flag.Parse()
	if *caddy == "" {
		log.Fatal("-caddy is required")
	}
	dir, err := os.MkdirTemp("", "revocation-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
			_ = p.Wait()
		}
	}()
	start := func(name string, args ...string) {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		out, _ := os.Create(filepath.Join(dir, filepath.Base(name)+strconv.Itoa(len(procs))+".log"))
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			log.Fatal(err)
		}
		procs = append(procs, cmd)
	}

	redisPort := freePort()
	start("redis-server", "--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	addr := "127.0.0.1:" + strconv.Itoa(redisPort)
	var rc rueidis.Client
	for range 100 {
		if rc, err = rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true}); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		log.Fatalf("redis: %v", err)
	}
	defer rc.Close()
	ctx := context.Background()
	do := func(args ...string) {
		if err := rc.Do(ctx, rc.B().Arbitrary(args[0]).Args(args[1:]...).Build()).Error(); err != nil {
			log.Fatalf("redis %s: %v", args[0], err)
		}
	}
	key := func(kind string, i int) string { return fmt.Sprintf("bench-%s-%d", kind, i) }
	cred := func(k string) string {
		d := sha256.Sum256([]byte(k))
		return "keyauth:cred:" + hex.EncodeToString(d[:])
	}
	for i := range n {
		do("HSET", "keyauth:consumer:u"+strconv.Itoa(i), "id", "u"+strconv.Itoa(i))
		do("HSET", "keyauth:consumer:load", "id", "load")
		for _, kind := range []string{"del", "cons", "load"} {
			owner := "u" + strconv.Itoa(i)
			if kind == "load" {
				owner = "load"
			}
			do("HSET", cred(key(kind, i)), "consumer", owner, "id", key(kind, i)+"-id")
		}
	}

	var sites []string
	for i := range 2 {
		port, admin := freePort(), freePort()
		cfg := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tauto_https off\n}\n"+
			"http://127.0.0.1:%d {\n\tkey_auth {\n\t\tconsumers redis %s\n\t}\n\trespond 200\n}\n", admin, port, addr)
		file := filepath.Join(dir, fmt.Sprintf("Caddyfile%d", i))
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			log.Fatal(err)
		}
		start(*caddy, "run", "--config", file, "--adapter", "caddyfile")
		sites = append(sites, fmt.Sprintf("http://127.0.0.1:%d/", port))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *workers + 2}, Timeout: 5 * time.Second}
	status := func(site, k string) int {
		req, _ := http.NewRequest(http.MethodGet, site, nil)
		req.Header.Set("apikey", k)
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, s := range sites {
		for deadline := time.Now().Add(time.Minute); status(s, key("load", 0)) != 200; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				log.Fatalf("%s does not serve", s)
			}
		}
		for i := range n {
			for _, kind := range []string{"del", "cons", "load"} {
				if st := status(s, key(kind, i)); st != 200 {
					log.Fatalf("warming %s: %d", s, st)
				}
			}
		}
	}

	// Load: workers per instance, valid keys in a loop.
	var stop atomic.Bool
	var served atomic.Int64
	for _, s := range sites {
		for w := range *workers {
			go func() {
				for i := w; !stop.Load(); i++ {
					if status(s, key("load", i%n)) == 200 {
						served.Add(1)
					}
				}
			}()
		}
	}
	time.Sleep(time.Second)

	measure := func(what string, del func(i int), kind string) {
		var took []time.Duration
		for i := range n {
			del(i)
			t0 := time.Now()
			for _, s := range sites {
				for status(s, key(kind, i)) != http.StatusUnauthorized {
				}
			}
			took = append(took, time.Since(t0))
		}
		slices.Sort(took)
		fmt.Printf("%-22s p50 %8v   p99 %8v   max %8v\n", what, took[n/2].Round(time.Microsecond),
			took[n*99/100].Round(time.Microsecond), took[n-1].Round(time.Microsecond))
	}
	before := served.Load()
	t := time.Now()
	measure("DEL of a credential", func(i int) { do("DEL", cred(key("del", i))) }, "del")
	measure("DEL of a consumer", func(i int) { do("DEL", "keyauth:consumer:u"+strconv.Itoa(i)) }, "cons")
	fmt.Printf("load meanwhile: %.0f requests/s over both instances\n", float64(served.Load()-before)/time.Since(t).Seconds())
	stop.Store(true)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
