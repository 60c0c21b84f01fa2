// Package redistest starts real redis-server processes for tests: a
// standalone server or a three-master cluster on free 127.0.0.1 ports, in a
// temporary directory, stopped when the test ends.
package redistest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Require skips the test when redis-server is missing, except in CI
// (CI set), where the Redis tests must run: there it fails.
func Require(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server is required in CI: %v", err)
		}
		t.Skip("redis-server is not installed (apt-get install redis-server); the Redis tests run in CI")
	}
}

// Server is one redis-server process.
type Server struct {
	t    testing.TB
	Port int
	dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
	tls  *tls.Config // a TLS-only server's, for the readiness probe
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// FreePort finds a port no one listens on, and whose port+10000 (a cluster
// node's bus port) is free too.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+10000 > 65535 {
			continue
		}
		if b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000)); err == nil {
			b.Close()
			return port
		}
	}
	t.Fatal("no free port pair found")
	return 0
}

// Start starts a redis-server with no persistence on a free port.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	Require(t)
	s := &Server{t: t, Port: FreePort(t), dir: t.TempDir()}
	s.args = append([]string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--protected-mode", "no"}, extra...)
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// Restart starts the server again, empty, on the same port.
func (s *Server) Restart() {
	s.t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.Port)}, s.args...)
	if s.tls != nil {
		args = append([]string{"--port", "0", "--tls-port", strconv.Itoa(s.Port)}, s.args...)
	}
	s.cmd = exec.Command("redis-server", args...)
	s.cmd.Dir = s.dir
	// A test binary killed by its timeout must not leave a server behind
	// (holding, among others, any lock file descriptor it inherited).
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	log, err := os.Create(fmt.Sprintf("%s/redis-%d.log", s.dir, time.Now().UnixNano()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}(s.cmd, s.done)
	// Ready when it answers PING (NOAUTH too: it answers).
	for start := time.Now(); ; {
		if time.Since(start) > 30*time.Second {
			s.t.Fatalf("redis-server on %s does not answer", s.Addr())
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(log.Name())
			s.t.Fatalf("redis-server exited at start: %s", b)
		default:
		}
		if c, err := s.dial(); err == nil {
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if r := string(buf[:n]); r == "+PONG\r\n" || r == "-NOAUTH" {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) dial() (net.Conn, error) {
	d := &net.Dialer{Timeout: time.Second}
	if s.tls != nil {
		return tls.DialWithDialer(d, "tcp", s.Addr(), s.tls)
	}
	return d.Dial("tcp", s.Addr())
}

// Stop stops the server (a frozen one too) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Freeze stops the process without closing its connections (SIGSTOP):
// a silent partition.
func (s *Server) Freeze() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (s *Server) Thaw() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// Client is a plain client (no client-side caching) for the test's own
// writes.
func Client(t testing.TB, addrs ...string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		t.Fatalf("connecting to redis: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Do runs one command and fails the test on an error.
func Do(t testing.TB, c rueidis.Client, args ...string) rueidis.RedisResult {
	t.Helper()
	r := c.Do(context.Background(), c.B().Arbitrary(args[0]).Args(args[1:]...).Build())
	if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
		t.Fatalf("redis %s: %v", args[0], err)
	}
	return r
}

// Cluster is a Redis Cluster of three masters without replicas. Its nodes
// keep serving their own slots when another master is down
// (cluster-require-full-coverage no), as a deployment that wants live
// masters to go on answering must configure.
type Cluster struct {
	Nodes []*Server
}

// Addrs are the nodes' addresses.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr())
	}
	return out
}

// StartCluster starts three cluster-enabled servers and joins them with
// redis-cli --cluster create; a node's bus port is its port + 10000.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	Require(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-cli is required in CI: %v", err)
		}
		t.Skip("redis-cli is not installed (apt-get install redis-tools)")
	}
	c := &Cluster{}
	for range 3 {
		c.Nodes = append(c.Nodes, Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no"))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Ready when every node sees the whole cluster up.
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		ok := true
		for _, n := range c.Nodes {
			out, _ := exec.Command("redis-cli", "-p", strconv.Itoa(n.Port), "cluster", "info").Output()
			if !strings.Contains(string(out), "cluster_state:ok") {
				ok = false
			}
		}
		if ok {
			return c
		}
		if time.Since(start) > time.Minute {
			t.Fatal("the cluster never came up")
		}
	}
}

// KeyNode is the index of the node that holds key, which must exist.
func (c *Cluster) KeyNode(t testing.TB, key string) int {
	t.Helper()
	out, err := exec.Command("redis-cli", "-p", strconv.Itoa(c.Nodes[0].Port), "cluster", "keyslot", key).Output()
	if err != nil {
		t.Fatal(err)
	}
	slot := strings.TrimSpace(string(out))
	for i, n := range c.Nodes {
		out, err := exec.Command("redis-cli", "-p", strconv.Itoa(n.Port), "cluster", "countkeysinslot", slot).Output()
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(out)) != "0" {
			return i
		}
	}
	t.Fatalf("no node holds %s", key)
	return -1
}

// KeySlot is the hash slot of key.
func (c *Cluster) KeySlot(t testing.TB, key string) int {
	t.Helper()
	out, err := exec.Command("redis-cli", "-p", strconv.Itoa(c.Nodes[0].Port), "cluster", "keyslot", key).Output()
	if err != nil {
		t.Fatal(err)
	}
	slot, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("cluster keyslot %s: %q", key, out)
	}
	return slot
}

// SlotOwner is the index of the master that serves slot, as node 0 sees it.
func (c *Cluster) SlotOwner(t testing.TB, slot int) int {
	t.Helper()
	out, err := exec.Command("redis-cli", "-p", strconv.Itoa(c.Nodes[0].Port), "cluster", "slots").Output()
	if err != nil {
		t.Fatal(err)
	}
	// Each range is "start\nend\nhost\nport\nid\n..." in redis-cli's plain
	// output; the first node of a range is its master.
	f := strings.Fields(string(out))
	for i := 0; i+3 < len(f); i++ {
		lo, err1 := strconv.Atoi(f[i])
		hi, err2 := strconv.Atoi(f[i+1])
		if err1 != nil || err2 != nil || f[i+2] != "127.0.0.1" || lo > hi {
			continue
		}
		if slot >= lo && slot <= hi {
			port, _ := strconv.Atoi(f[i+3])
			for n, s := range c.Nodes {
				if s.Port == port {
					return n
				}
			}
		}
	}
	t.Fatalf("no master serves slot %d: %s", slot, out)
	return -1
}

// nodeID is the cluster node id of node i.
func (c *Cluster) nodeID(t testing.TB, i int) string {
	t.Helper()
	out, err := exec.Command("redis-cli", "-p", strconv.Itoa(c.Nodes[i].Port), "cluster", "myid").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// MoveSlot gives slot, which must hold no key, to master to, as a
// resharding does once a slot's keys have migrated: the new owner first,
// then the others (CLUSTER SETSLOT <slot> NODE), and waits until every
// node agrees.
func (c *Cluster) MoveSlot(t testing.TB, slot, to int) {
	t.Helper()
	id := c.nodeID(t, to)
	order := []int{to}
	for i := range c.Nodes {
		if i != to {
			order = append(order, i)
		}
	}
	for _, i := range order {
		out, err := exec.Command("redis-cli", "-p", strconv.Itoa(c.Nodes[i].Port), "cluster", "setslot",
			strconv.Itoa(slot), "node", id).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "OK" {
			t.Fatalf("cluster setslot %d node %s on node %d: %v %s", slot, id, i, err, out)
		}
	}
	for start := time.Now(); c.SlotOwner(t, slot) != to; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			t.Fatalf("slot %d never moved to node %d", slot, to)
		}
	}
}
