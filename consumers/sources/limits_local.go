package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers/limits"
)

func init() {
	caddy.RegisterModule(LocalLimits{})
}

// DefaultLimitsTable is the table of a local limits store that names none.
const DefaultLimitsTable = "default"

// LocalLimits is the limits store key_auth.limits.stores.local: the counts
// of this instance, in memory (package limits' Table). Every store of one
// table name shares one table, across handlers and config reloads: a limit
// belongs to a credential, a consumer or a group, not to a route, so a
// consumer's daily quota is one count wherever it is enforced. The table is
// saved to Caddy's data directory (key_auth/limits/<table>.counts) at most
// every second when it changed, and when the last config using it stops;
// it is read back at start, so a restart keeps the windows' usage and a
// crash loses at most the last second's (see limitsSaver for a very large
// table). In-flight slots are not saved: they belong to requests that a
// restart ended.
type LocalLimits struct {
	// Table names the table of counts; stores of different tables count
	// apart (two consumer documents whose ids overlap). Letters, digits,
	// '.', '_' and '-'. Default: "default".
	Table string `json:"table,omitempty"`

	live     *localTable
	released bool
}

// CaddyModule returns the Caddy module information.
func (LocalLimits) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "key_auth.limits.stores.local",
		New: func() caddy.Module { return new(LocalLimits) },
	}
}

var tableName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks the table's name, which names its file.
func (l *LocalLimits) Validate() error {
	if l.Table != "" && !tableName.MatchString(l.Table) {
		return fmt.Errorf("table: %q is not a table name: letters, digits, '.', '_' and '-', at most 64", l.Table)
	}
	return nil
}

func (l *LocalLimits) name() string {
	if l.Table == "" {
		return DefaultLimitsTable
	}
	return l.Table
}

// Provision joins the table of its name, or opens it: reads it back from
// the data directory and starts saving it.
func (l *LocalLimits) Provision(ctx caddy.Context) error {
	if err := l.Validate(); err != nil {
		return err
	}
	name := l.name()
	v, _, err := localTables.LoadOrNew(name, func() (caddy.Destructor, error) {
		return openLocalTable(name, LimitsDir(), ctx.Logger()), nil
	})
	if err != nil {
		return err
	}
	l.live, l.released = v.(*localTable), false
	l.live.logger.Store(ctx.Logger())
	return RegisterLimitMetrics(ctx)
}

// Admit checks and takes a request's charges (keyauth.LimitStore).
func (l *LocalLimits) Admit(_ context.Context, charges []limits.Charge) (limits.Admission, error) {
	a, err := l.live.table.Admit(charges)
	if err != nil {
		LimitStoreErrors(l.live.store).Inc()
	}
	return a, err
}

// Settle ends an admitted request (keyauth.LimitStore).
func (l *LocalLimits) Settle(_ context.Context, a limits.Admission, s limits.Settlement) error {
	return l.live.table.Settle(a, s)
}

// Usage reads counters' usage (keyauth.UsageStore).
func (l *LocalLimits) Usage(_ context.Context, counters []limits.Charge) ([]int64, error) {
	out := make([]int64, len(counters))
	for i, c := range counters {
		out[i] = l.live.table.Used(c.Kind, c.Scope, c.Meter, c.Start)
	}
	return out, nil
}

// Reset sets window counters' usage to zero (keyauth.UsageStore).
func (l *LocalLimits) Reset(_ context.Context, counters []limits.Charge) error {
	for _, c := range counters {
		if err := l.live.table.Reset(c); err != nil {
			return err
		}
	}
	return nil
}

// TopUp gives a window counter n more room in its window
// (keyauth.UsageStore).
func (l *LocalLimits) TopUp(_ context.Context, c limits.Charge, n int64) (int64, error) {
	return l.live.table.TopUp(c, n)
}

// Cleanup lets the table go with the module's config; the last config
// using it saves it. Requests still in flight in that config count on in
// memory.
func (l *LocalLimits) Cleanup() error {
	if l.live == nil || l.released {
		return nil
	}
	l.released = true
	if _, err := localTables.Delete(l.live.name); err != nil {
		caddy.Log().Error("releasing a limits table", zap.String("table", l.live.name), zap.Error(err))
	}
	return nil
}

// UnmarshalCaddyfile reads `store local [<table>]` of a limits block.
func (l *LocalLimits) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the store's name
	if d.NextArg() {
		l.Table = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Err("limits store local takes no block")
	}
	if err := l.Validate(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// LimitsDir is where local limits stores save their tables: in Caddy's
// data directory.
func LimitsDir() string { return filepath.Join(caddy.AppDataDir(), "key_auth", "limits") }

// LimitsFile is the file of the table name in dir.
func LimitsFile(dir, name string) string { return filepath.Join(dir, name+".counts") }

// localTables are the tables in use, by name; a reload provisions the new
// config before it cleans up the old one, so a table in both lives on.
var localTables = caddy.NewUsagePool()

// localTable is a table and its saver, shared by every store of its name.
type localTable struct {
	name, path, store string
	table             *limits.Table
	logger            atomic.Pointer[zap.Logger]

	cancel context.CancelFunc
	done   chan struct{}
	saveMu sync.Mutex // one save at a time: the saver's and the last one
	failed string     // the last save error logged, under saveMu
}

// The saver's schedule, replaced by tests: a tick every second, and the
// clock.
var (
	limitsSaveTicker = func() (<-chan time.Time, func()) {
		t := time.NewTicker(time.Second)
		return t.C, t.Stop
	}
	limitsNow = time.Now
)

// limitsSweepEvery is how often the saver drops the counters of ended
// windows.
const limitsSweepEvery = 10 * time.Second

func openLocalTable(name, dir string, logger *zap.Logger) *localTable {
	lt := &localTable{name: name, path: LimitsFile(dir, name), store: "local " + name, table: limits.NewTable(), done: make(chan struct{})}
	lt.logger.Store(logger)
	lt.restore()
	var ctx context.Context
	ctx, lt.cancel = context.WithCancel(context.Background())
	tick, stop := limitsSaveTicker()
	go lt.saver(ctx, tick, stop)
	TrackInFlight(lt, lt.store, lt.table.InFlight)
	return lt
}

func (lt *localTable) log() *zap.Logger { return lt.logger.Load() }

// restore reads the table's file back. A damaged one is moved aside
// (<file>.damaged), never overwritten, and the table starts empty.
func (lt *localTable) restore() {
	b, err := os.ReadFile(lt.path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		var n int
		n, err = lt.table.Restore(bytes.NewReader(b), limitsNow())
		if err == nil {
			lt.table.Changed() // what was just read needs no saving
			lt.log().Info("limits table restored", zap.String("table", lt.name), zap.Int("counters", n))
			return
		}
	}
	aside := lt.path + ".damaged"
	if rerr := os.Rename(lt.path, aside); rerr != nil {
		lt.log().Error("limits table not restored; counting starts from zero, and the file will be replaced",
			zap.String("table", lt.name), zap.String("file", lt.path), zap.Error(errors.Join(err, rerr)))
		return
	}
	lt.log().Error("limits table not restored; counting starts from zero, and the file is kept aside",
		zap.String("table", lt.name), zap.String("file", aside), zap.Error(err))
}

// saver saves the table at most every tick when it changed, and sweeps it
// now and then. A save never holds a request up: it copies the counters a
// shard at a time and writes off the request path. The pace keeps saving
// under a tenth of one core however large the table: after a save that
// took d, the next one waits at least 9d (for a million counters, about
// 0.3 s to save here, every 3 s; a crash then loses those seconds).
func (lt *localTable) saver(ctx context.Context, tick <-chan time.Time, stop func()) {
	defer close(lt.done)
	defer stop()
	var next, swept time.Time
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case now = <-tick:
		}
		if now.Sub(swept) >= limitsSweepEvery {
			lt.table.Sweep(now)
			swept = now
		}
		if now.Before(next) {
			continue
		}
		start := time.Now()
		lt.save(now)
		next = now.Add(9 * time.Since(start))
	}
}

// save writes the table when it changed, through a temporary file renamed
// over the last one.
func (lt *localTable) save(now time.Time) {
	lt.saveMu.Lock()
	defer lt.saveMu.Unlock()
	if !lt.table.Changed() {
		return
	}
	var buf bytes.Buffer
	_, err := lt.table.Snapshot(&buf, now)
	if err == nil {
		err = writeAtomic(lt.path, buf.Bytes())
	}
	if err != nil {
		lt.table.MarkChanged() // the next tick tries again
		if msg := err.Error(); msg != lt.failed {
			lt.failed = msg
			lt.log().Error("saving a limits table; it counts on in memory", zap.String("table", lt.name), zap.Error(err))
		}
		return
	}
	if lt.failed != "" {
		lt.failed = ""
		lt.log().Info("limits table saved again", zap.String("table", lt.name))
	}
}

// Destruct stops the saver when the last config using the table goes, and
// saves the table a last time.
func (lt *localTable) Destruct() error {
	lt.cancel()
	<-lt.done
	lt.save(limitsNow())
	UntrackInFlight(lt)
	return nil
}

var (
	_ caddy.Provisioner     = (*LocalLimits)(nil)
	_ caddy.Validator       = (*LocalLimits)(nil)
	_ caddy.CleanerUpper    = (*LocalLimits)(nil)
	_ caddyfile.Unmarshaler = (*LocalLimits)(nil)
	_ caddy.Destructor      = (*localTable)(nil)
)
