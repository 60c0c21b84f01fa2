package sources

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keyauth/caddy-keyauth/consumers/limits"
	"github.com/keyauth/caddy-keyauth/internal/waittest"
)

var limitsT0 = time.Date(2027, 5, 4, 12, 30, 0, 0, time.UTC)

// fakeLimitsSaver replaces the saver's ticker and clock for a test: the
// test sends the ticks.
func fakeLimitsSaver(t *testing.T) chan time.Time {
	t.Helper()
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	tick := make(chan time.Time)
	oldTicker, oldNow := limitsSaveTicker, limitsNow
	limitsSaveTicker = func() (<-chan time.Time, func()) { return tick, func() {} }
	limitsNow = func() time.Time { return limitsT0 }
	t.Cleanup(func() { limitsSaveTicker, limitsNow = oldTicker, oldNow })
	return tick
}

func provisionLocal(t *testing.T, table string) *LocalLimits {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	l := &LocalLimits{Table: table}
	if err := l.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return l
}

func hourly(scope string, max int64) limits.Charge {
	return limits.Charge{Kind: limits.Consumer, Scope: scope, Meter: "requests", Max: max, Cost: 1,
		Start: limitsT0.Truncate(time.Hour), End: limitsT0.Truncate(time.Hour).Add(time.Hour)}
}

func mustAdmit(t *testing.T, l *LocalLimits, charges ...limits.Charge) limits.Admission {
	t.Helper()
	a, err := l.Admit(context.Background(), charges)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestLocalLimitsReloadRestart: a reload keeps the table (the new config
// joins it before the old one lets it go), the last config to go saves it,
// and the next start reads the windows' usage back, without the in-flight
// slots.
func TestLocalLimitsReloadRestart(t *testing.T) {
	fakeLimitsSaver(t)
	old := provisionLocal(t, "")
	for range 3 {
		if a := mustAdmit(t, old, hourly("alice", 5)); !a.Allowed {
			t.Fatal("refused")
		}
	}
	reloaded := provisionLocal(t, "")
	if reloaded.live != old.live {
		t.Fatal("a reload made a new table")
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	slot := limits.Charge{Kind: limits.Consumer, Scope: "alice", Meter: limits.InFlight, Max: 1, Cost: 1}
	a := mustAdmit(t, reloaded, hourly("alice", 5), slot)
	if !a.Allowed || a.Remaining[0] != 1 {
		t.Fatalf("after the reload: %+v", a)
	}
	other := provisionLocal(t, "other")
	if a := mustAdmit(t, other, hourly("alice", 5)); a.Remaining[0] != 4 {
		t.Errorf("the table \"other\" counts with the default one: %+v", a)
	}
	_ = other.Cleanup()
	if _, err := os.Stat(LimitsFile(LimitsDir(), DefaultLimitsTable)); err == nil {
		t.Fatal("saved before the last config went, with no tick")
	}
	if err := reloaded.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(LimitsFile(LimitsDir(), DefaultLimitsTable)); err != nil {
		t.Fatalf("not saved at the end: %v", err)
	}

	restarted := provisionLocal(t, "")
	defer restarted.Cleanup()
	if restarted.live == reloaded.live {
		t.Fatal("the table outlived its last config")
	}
	a = mustAdmit(t, restarted, hourly("alice", 5), slot)
	if !a.Allowed || a.Remaining[0] != 0 || a.Remaining[1] != 0 {
		t.Errorf("after a restart: %+v, want the hour's 4 kept and the slot free", a)
	}
}

// TestLocalLimitsSaver: the saver writes on a tick only when the table
// changed, logs a failed write once and tries again at the next tick, and
// sweeps ended windows.
func TestLocalLimitsSaver(t *testing.T) {
	tick := fakeLimitsSaver(t)
	l := provisionLocal(t, "saver")
	defer l.Cleanup()
	logs, observed := observer.New(zap.InfoLevel)
	l.live.logger.Store(zap.New(logs))
	path := LimitsFile(LimitsDir(), "saver")

	tick <- limitsT0
	tick <- limitsT0.Add(time.Second) // the first tick is done once the second is taken
	if _, err := os.Stat(path); err == nil {
		t.Fatal("an unchanged table was saved")
	}
	mustAdmit(t, l, hourly("bob", 10))
	tick <- limitsT0.Add(2 * time.Second)
	waittest.Until(t, "the save", func() bool { _, err := os.Stat(path); return err == nil })
	if n := restoredUse(t, path, "bob"); n != 1 {
		t.Errorf("saved %d, want 1", n)
	}

	// A data directory that cannot be written: one error, kept trying.
	if err := os.Rename(filepath.Dir(path), filepath.Dir(path)+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Dir(path), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mustAdmit(t, l, hourly("bob", 10))
	for i := range 3 {
		tick <- limitsT0.Add(time.Duration(3+i) * time.Second)
	}
	waittest.Until(t, "the failure's log", func() bool { return observed.FilterMessageSnippet("saving a limits table").Len() > 0 })
	if n := observed.FilterMessageSnippet("saving a limits table").Len(); n != 1 {
		t.Errorf("%d error lines for one cause, want 1", n)
	}
	if err := os.Remove(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	tick <- limitsT0.Add(10 * time.Second)
	waittest.Until(t, "the save after the failure", func() bool { _, err := os.Stat(path); return err == nil })
	if n := restoredUse(t, path, "bob"); n != 2 {
		t.Errorf("saved %d after the failure, want 2", n)
	}
	waittest.Until(t, "the recovery's log", func() bool { return observed.FilterMessageSnippet("saved again").Len() == 1 })

	// An ended window is swept from memory, and not saved.
	tick <- limitsT0.Add(2 * time.Hour)
	tick <- limitsT0.Add(2*time.Hour + time.Second)
	if n := l.live.table.Len(); n != 0 {
		t.Errorf("%d counters after their window, want 0", n)
	}
}

func restoredUse(t *testing.T, path, scope string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tb := limits.NewTable()
	if _, err := tb.Restore(f, limitsT0); err != nil {
		t.Fatal(err)
	}
	return tb.Used(limits.Consumer, scope, "requests", limitsT0.Truncate(time.Hour))
}

// TestLocalLimitsDamagedFile: a damaged file is kept aside, not
// overwritten, and counting starts from zero.
func TestLocalLimitsDamagedFile(t *testing.T) {
	fakeLimitsSaver(t)
	path := LimitsFile(LimitsDir(), DefaultLimitsTable)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("KALIMIT\x01 not really"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := provisionLocal(t, "")
	if a := mustAdmit(t, l, hourly("carol", 3)); a.Remaining[0] != 2 {
		t.Errorf("%+v", a)
	}
	if b, err := os.ReadFile(path + ".damaged"); err != nil || !strings.Contains(string(b), "not really") {
		t.Errorf("the damaged file is not kept aside: %q, %v", b, err)
	}
	_ = l.Cleanup()
	if n := restoredUse(t, path, "carol"); n != 1 {
		t.Errorf("saved %d, want 1", n)
	}
}

func TestLocalLimitsCaddyfile(t *testing.T) {
	for in, want := range map[string]string{"local": "", "local team-a": "team-a"} {
		var l LocalLimits
		if err := l.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil || l.Table != want {
			t.Errorf("%q: table %q, %v", in, l.Table, err)
		}
	}
	for in, want := range map[string]string{
		"local a b":         "wrong argument count",
		"local {\n  x\n}":   "takes no block",
		"local ../etc":      `table: "../etc" is not a table name`,
		"local " + "-dash":  "is not a table name",
		"local a {\n  x\n}": "takes no block",
	} {
		var l LocalLimits
		err := l.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: error %v, want %q at file:line", in, err, want)
		}
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	l := &LocalLimits{Table: "a/b"}
	if err := l.Provision(ctx); err == nil {
		t.Error("a table name with a slash provisioned")
	}
	_ = l.Cleanup()
}
