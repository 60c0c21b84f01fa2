package sources

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keyauth/caddy-keyauth/consumers"
	"go.uber.org/zap/zaptest/observer"
)

// fakeClock is a store's time in tests: Now moves only when a test moves
// it or fires a timer, and every timer the poller asks for is handed to the
// test on waits, so the test sees the schedule and fires it at will.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits chan fakeTimer
	asked []time.Duration // every timer asked for
	quit  chan struct{}   // closed to let a poller blocked in Timer go
}

type fakeTimer struct {
	d time.Duration
	c chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), waits: make(chan fakeTimer), quit: make(chan struct{})}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func (f *fakeClock) Timer(d time.Duration) (<-chan time.Time, func() bool) {
	f.mu.Lock()
	f.asked = append(f.asked, d)
	f.mu.Unlock()
	t := fakeTimer{d, make(chan time.Time, 1)}
	select {
	case f.waits <- t:
	case <-f.quit:
	}
	return t.c, func() bool { return true }
}

// next is the next timer the poller asks for. The bound only keeps a broken
// poller from hanging the test; no result depends on it.
func (f *fakeClock) next(t *testing.T) fakeTimer {
	t.Helper()
	select {
	case w := <-f.waits:
		return w
	case <-time.After(30 * time.Second):
		t.Fatal("the poller asked for no timer")
		return fakeTimer{}
	}
}

// fire lets the time of w pass and the poller go on.
func (f *fakeClock) fire(w fakeTimer) {
	f.advance(w.d)
	w.c <- f.Now()
}

// scriptFetcher plays a list of fetch outcomes (nil: a new set); its
// store takes its schedule from an HTTP source's (httpPolling).
type scriptFetcher struct {
	mu     sync.Mutex
	script []error
	calls  int
}

func (f *scriptFetcher) Load(context.Context, bool) (*consumers.Set, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.script) == 0 {
		return nil, nil // unchanged
	}
	err := f.script[0]
	f.script = f.script[1:]
	if err != nil {
		return nil, err
	}
	return consumers.Parse([]byte(fileDoc(fmt.Sprintf("c%d", f.calls))))
}

func (f *scriptFetcher) Info() SourceInfo {
	return SourceInfo{Kind: "http", Location: "http://source.test/c.json"}
}

func newScriptStore(t *testing.T, refresh time.Duration, eachError bool, script ...error) (*Store, *fakeClock, *observer.ObservedLogs) {
	t.Helper()
	f := &scriptFetcher{script: script}
	core, logs := observer.New(zap.DebugLevel)
	p := httpPolling(refresh)
	p.EachError = eachError
	s := NewStore(f, p, nil)
	s.logger.Store(zap.New(core))
	fc := newFakeClock()
	s.clock = fc
	t.Cleanup(func() {
		close(fc.quit)
		_ = s.Destruct()
	})
	return s, fc, logs
}

// The failure kinds a source may alternate between on every poll.
var (
	err500     = errors.New("consumers source http://source.test/c.json: status 500")
	errJSON    = errors.New("consumers source http://source.test/c.json: line 1, column 9: unexpected end of the document")
	errDupUser = errors.New(`consumers source http://source.test/c.json: line 3: consumer "dup" is listed twice (consumers #1 and #2)`)
)

// logLine is what a test checks of a log line.
type logLine struct {
	level    zapcore.Level
	msg      string
	failures int64 // failed_attempts, 0 when absent
	failing  time.Duration
	err      string
}

func takeLines(logs *observer.ObservedLogs) []logLine {
	var out []logLine
	for _, e := range logs.TakeAll() {
		l := logLine{level: e.Level, msg: e.Message}
		for _, f := range e.Context {
			switch f.Key {
			case "failed_attempts":
				l.failures = f.Integer
			case "failing_for":
				l.failing = time.Duration(f.Integer)
			case "error":
				l.err = f.Interface.(error).Error()
			}
		}
		out = append(out, l)
	}
	return out
}

func wantLines(t *testing.T, when string, got []logLine, want ...logLine) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d log lines, want %d:\n got %+v\nwant %+v", when, len(got), len(want), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: log line %d:\n got %+v\nwant %+v", when, i+1, got[i], want[i])
		}
	}
}

// TestStoreFailureStreakLogging: a streak of failures logs one line when it
// starts and one when it ends, however its errors alternate, and in
// between one reminder every FailureReminderEvery with the count and the
// latest error. Before a first load, the line says requests get 503.
func TestStoreFailureStreakLogging(t *testing.T) {
	ctx := context.Background()
	s, fc, logs := newScriptStore(t, 30*time.Second, false)
	f := s.loader.(*scriptFetcher)
	poll := func(err error) {
		t.Helper()
		f.mu.Lock()
		f.script = append(f.script, err)
		f.mu.Unlock()
		if got := s.refresh(ctx, false); !errors.Is(got, err) {
			t.Fatalf("refresh returned %v, want %v", got, err)
		}
	}
	const notLoaded = "consumers not loaded; requests get 503 until a load succeeds"
	const notReloaded = "consumers not reloaded; the last good set keeps serving"
	const stillFailing = "consumers source still failing; the last good set keeps serving"
	const recovered = "consumers source recovered"

	// Nothing loaded yet: the failure says so, not "the last good set".
	poll(err500)
	fc.advance(time.Second)
	poll(errJSON)
	wantLines(t, "before a first load", takeLines(logs),
		logLine{level: zapcore.ErrorLevel, msg: notLoaded, failures: 1, err: err500.Error()})
	fc.advance(2 * time.Second)
	poll(nil)
	wantLines(t, "the first load", takeLines(logs),
		logLine{level: zapcore.InfoLevel, msg: recovered, failures: 2, failing: 3 * time.Second},
		logLine{level: zapcore.InfoLevel, msg: "consumers loaded"})

	// A streak whose kind changes on every poll, one poll every 30s: one
	// line at its start, then a reminder every five minutes exactly.
	kinds := []error{err500, errJSON, errDupUser}
	var got []logLine
	n := 0
	for range 24 { // 12 minutes
		fc.advance(30 * time.Second)
		poll(kinds[n%3])
		n++
		got = append(got, takeLines(logs)...)
	}
	// The start at 0, reminders at 5m (poll 11) and 10m (poll 21).
	wantLines(t, "a 12-minute streak of alternating errors", got,
		logLine{level: zapcore.ErrorLevel, msg: notReloaded, failures: 1, err: err500.Error()},
		logLine{level: zapcore.ErrorLevel, msg: stillFailing, failures: 11, failing: 5 * time.Minute, err: kinds[10%3].Error()},
		logLine{level: zapcore.ErrorLevel, msg: stillFailing, failures: 21, failing: 10 * time.Minute, err: kinds[20%3].Error()})
	if st := s.Status(); st.Failures != 24 || st.LastError != kinds[23%3].Error() {
		t.Errorf("status during the streak: %d failures, last error %q", st.Failures, st.LastError)
	}

	// The end: one line with the count; the set is unchanged (304).
	fc.advance(30 * time.Second)
	f.mu.Lock()
	f.script = nil
	f.mu.Unlock()
	if err := s.refresh(ctx, false); err != nil {
		t.Fatal(err)
	}
	wantLines(t, "the recovery", takeLines(logs),
		logLine{level: zapcore.InfoLevel, msg: recovered, failures: 24, failing: 12 * time.Minute})

	// A new streak is a new start, at once.
	fc.advance(30 * time.Second)
	poll(errDupUser)
	wantLines(t, "a second streak", takeLines(logs),
		logLine{level: zapcore.ErrorLevel, msg: notReloaded, failures: 1, err: errDupUser.Error()})

	// An admin refresh is a fetch like any other: inside the streak, no
	// line before the reminder is due.
	f.mu.Lock()
	f.script = append(f.script, err500)
	f.mu.Unlock()
	if err := s.Refresh(ctx); !errors.Is(err, err500) {
		t.Fatalf("admin refresh: %v", err)
	}
	wantLines(t, "an admin refresh inside a streak", takeLines(logs))
}

// TestStoreFailureEachErrorLogged: a source whose errors change only when
// someone edits it (a file) logs each new error at once, a repeated one
// only as a reminder.
func TestStoreFailureEachErrorLogged(t *testing.T) {
	ctx := context.Background()
	s, fc, logs := newScriptStore(t, 5*time.Second, true, nil)
	if err := s.refresh(ctx, true); err != nil {
		t.Fatal(err)
	}
	takeLines(logs)
	f := s.loader.(*scriptFetcher)
	f.script = []error{errDupUser, errDupUser, errDupUser, errJSON, errJSON}
	for range 5 {
		fc.advance(5 * time.Second)
		_ = s.refresh(ctx, false)
	}
	got := takeLines(logs)
	wantLines(t, "two refused versions, each seen again", got,
		logLine{level: zapcore.ErrorLevel, msg: "consumers not reloaded; the last good set keeps serving", failures: 1, err: errDupUser.Error()},
		logLine{level: zapcore.ErrorLevel, msg: "consumers not reloaded; the last good set keeps serving", failures: 4, failing: 15 * time.Second, err: errJSON.Error()})
	f.script = []error{errJSON}
	fc.advance(FailureReminderEvery)
	_ = s.refresh(ctx, false)
	wantLines(t, "the same error five minutes on", takeLines(logs),
		logLine{level: zapcore.ErrorLevel, msg: "consumers source still failing; the last good set keeps serving", failures: 6,
			failing: 20*time.Second + FailureReminderEvery, err: errJSON.Error()})
}

// TestHTTPRetryAfter is the HTTP source's back-off: after failures, from
// the poll interval (at most a second), doubling, up to the interval or a
// minute, whichever is longer.
func TestHTTPRetryAfter(t *testing.T) {
	s, ms := time.Second, time.Millisecond
	for _, tc := range []struct {
		refresh time.Duration
		want    []time.Duration // for 0, 1, 2, ... failures
	}{
		{30 * s, []time.Duration{30 * s, 1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 60 * s, 60 * s}},
		{200 * ms, []time.Duration{200 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 12800 * ms, 25600 * ms, 51200 * ms, 60 * s, 60 * s}},
		{5 * time.Minute, []time.Duration{300 * s, 1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 64 * s, 128 * s, 256 * s, 300 * s, 300 * s}},
		{0, []time.Duration{0, 1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 60 * s}},
	} {
		p := httpPolling(tc.refresh)
		for failures, want := range tc.want {
			if got := p.wait(failures); got != want {
				t.Errorf("refresh %s, %d failures: retry after %s, want %s", tc.refresh, failures, got, want)
			}
		}
		if got := p.wait(1 << 20); got != max(tc.refresh, time.Minute) {
			t.Errorf("refresh %s, a million failures: retry after %s", tc.refresh, got)
		}
	}
}

// TestPollSchedule runs the poller on a fake clock: it asks for the
// interval after a success, the back-off after failures (counted from the
// status, so the next success resets it), each plus its jitter of up to
// 10%.
func TestPollSchedule(t *testing.T) {
	s, ms := time.Second, time.Millisecond
	for _, tc := range []struct {
		name    string
		refresh time.Duration
		jitter  func(n int64) int64
		want    []time.Duration // each timer asked for
	}{
		{"30s, most jitter", 30 * s, func(n int64) int64 { return n - 1 },
			[]time.Duration{33 * s, 1100 * ms, 2200 * ms, 4400 * ms, 8800 * ms, 17600 * ms, 35200 * ms, 66 * s, 66 * s, 33 * s, 33 * s}},
		{"30s, no jitter", 30 * s, func(int64) int64 { return 0 },
			[]time.Duration{30 * s, 1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 60 * s, 60 * s, 30 * s, 30 * s}},
		{"200ms, most jitter", 200 * ms, func(n int64) int64 { return n - 1 },
			[]time.Duration{220 * ms, 220 * ms, 440 * ms, 880 * ms, 1760 * ms, 3520 * ms, 7040 * ms, 14080 * ms, 28160 * ms, 220 * ms, 220 * ms}},
		{"5m, half jitter", 5 * time.Minute, func(n int64) int64 { return n / 2 },
			[]time.Duration{315 * s, 1050 * ms, 2100 * ms, 4200 * ms, 8400 * ms, 16800 * ms, 33600 * ms, 67200 * ms, 134400 * ms, 315 * s, 315 * s}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A first fetch that succeeds, eight failures, then successes.
			script := []error{nil}
			for i := range 8 {
				script = append(script, []error{err500, errJSON}[i%2])
			}
			st, fc, _ := newScriptStore(t, tc.refresh, false, append(script, nil)...)
			st.jitter = tc.jitter
			st.start()
			for i, want := range tc.want {
				w := fc.next(t)
				if w.d != want {
					t.Errorf("timer %d: %s, want %s", i+1, w.d, want)
				}
				fc.fire(w)
			}
			fc.next(t) // the poller is waiting again: every fetch above is done
			f := st.loader.(*scriptFetcher)
			f.mu.Lock()
			calls := f.calls
			f.mu.Unlock()
			if calls != len(tc.want)+1 {
				t.Errorf("%d fetches, want %d", calls, len(tc.want)+1)
			}
			if st := st.Status(); st.Failures != 0 || !st.Loaded {
				t.Errorf("status at the end: %+v", st)
			}
		})
	}
}

// TestPollScheduleRefreshZero: refresh 0 fetches once, at start, and asks
// for no timer.
func TestPollScheduleRefreshZero(t *testing.T) {
	for _, first := range []error{nil, err500} {
		st, fc, logs := newScriptStore(t, 0, false, first, nil)
		st.start()
		if first != nil {
			// A failed first fetch is retried, with the back-off.
			w := fc.next(t)
			if w.d < time.Second || w.d > 1100*time.Millisecond {
				t.Errorf("retry after a failed first fetch: %s, want 1s plus jitter", w.d)
			}
			fc.fire(w)
		}
		close(fc.quit)
		_ = st.Destruct()
		fc.quit = make(chan struct{}) // for the cleanup
		fc.mu.Lock()
		asked := len(fc.asked)
		fc.mu.Unlock()
		wantAsked := 0
		if first != nil {
			wantAsked = 1
		}
		if asked != wantAsked || !st.Status().Loaded {
			t.Errorf("first fetch %v: %d timers asked for, want %d; status %+v", first, asked, wantAsked, st.Status())
		}
		for _, l := range takeLines(logs) {
			if strings.Contains(l.msg, "still failing") {
				t.Errorf("a reminder: %+v", l)
			}
		}
	}
}
