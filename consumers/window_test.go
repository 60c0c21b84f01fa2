package consumers

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func mustWindow(t testing.TB, per, tz string) Window {
	t.Helper()
	w, err := ParseWindow(per, tz)
	if err != nil {
		t.Fatalf("ParseWindow(%q, %q): %v", per, tz, err)
	}
	return w
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestWindowBounds: windows by the calendar of their timezone, across the
// days the clocks change, and windows of a duration from the Unix epoch.
func TestWindowBounds(t *testing.T) {
	for _, tt := range []struct {
		per, tz, now string
		start, end   string // UTC
	}{
		{"second", "", "2026-05-17T10:11:12.9Z", "2026-05-17T10:11:12Z", "2026-05-17T10:11:13Z"},
		{"minute", "", "2026-05-17T10:11:12Z", "2026-05-17T10:11:00Z", "2026-05-17T10:12:00Z"},
		{"hour", "", "2026-05-17T10:11:12Z", "2026-05-17T10:00:00Z", "2026-05-17T11:00:00Z"},
		{"day", "", "2026-05-17T10:11:12Z", "2026-05-17T00:00:00Z", "2026-05-18T00:00:00Z"},
		{"day", "", "2026-05-17T00:00:00Z", "2026-05-17T00:00:00Z", "2026-05-18T00:00:00Z"},
		// ISO weeks start on Monday; 2026-05-17 is a Sunday.
		{"week", "", "2026-05-17T23:59:59Z", "2026-05-11T00:00:00Z", "2026-05-18T00:00:00Z"},
		{"week", "", "2026-05-18T00:00:00Z", "2026-05-18T00:00:00Z", "2026-05-25T00:00:00Z"},
		{"week", "", "2026-01-01T12:00:00Z", "2025-12-29T00:00:00Z", "2026-01-05T00:00:00Z"},
		{"month", "", "2026-02-28T23:59:59Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"},
		{"month", "", "2024-12-31T23:00:00Z", "2024-12-01T00:00:00Z", "2025-01-01T00:00:00Z"},
		{"year", "", "2024-12-31T23:00:00Z", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"},
		// Europe/Berlin: 2026-03-29 has 23 hours, 2026-10-25 has 25.
		{"day", "Europe/Berlin", "2026-03-29T12:00:00Z", "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"},
		{"day", "Europe/Berlin", "2026-10-25T12:00:00Z", "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"},
		{"day", "Europe/Berlin", "2026-10-25T22:59:59Z", "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"},
		{"day", "Europe/Berlin", "2026-03-28T23:00:00Z", "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"},
		{"week", "Europe/Berlin", "2026-03-29T21:59:59Z", "2026-03-22T23:00:00Z", "2026-03-29T22:00:00Z"},
		{"week", "Europe/Berlin", "2026-03-30T10:00:00Z", "2026-03-29T22:00:00Z", "2026-04-05T22:00:00Z"},
		{"month", "Europe/Berlin", "2026-03-31T21:59:59Z", "2026-02-28T23:00:00Z", "2026-03-31T22:00:00Z"},
		{"month", "Europe/Berlin", "2026-10-31T23:30:00Z", "2026-10-31T23:00:00Z", "2026-11-30T23:00:00Z"},
		{"year", "Europe/Berlin", "2026-12-31T23:30:00Z", "2026-12-31T23:00:00Z", "2027-12-31T23:00:00Z"},
		// The hour the clocks repeat is two hours of the calendar.
		{"hour", "Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z"},
		{"hour", "Europe/Berlin", "2026-10-25T01:30:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"},
		{"hour", "Europe/Berlin", "2026-03-29T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"},
		// An hour in India starts at :30 UTC; in Nepal (+5:45) at :15.
		{"hour", "Asia/Kolkata", "2026-05-17T10:11:12Z", "2026-05-17T09:30:00Z", "2026-05-17T10:30:00Z"},
		{"hour", "Asia/Kathmandu", "2026-05-17T10:11:12Z", "2026-05-17T09:15:00Z", "2026-05-17T10:15:00Z"},
		{"day", "Asia/Kolkata", "2026-05-17T20:00:00Z", "2026-05-17T18:30:00Z", "2026-05-18T18:30:00Z"},
		// Lord Howe Island moves its clocks by half an hour (2:00 -> 2:30 on
		// 2026-10-04): the hour they skip into is cut short.
		{"hour", "Australia/Lord_Howe", "2026-10-03T15:45:00Z", "2026-10-03T15:30:00Z", "2026-10-03T16:00:00Z"},
		{"hour", "Australia/Lord_Howe", "2026-10-03T15:29:59Z", "2026-10-03T14:30:00Z", "2026-10-03T15:30:00Z"},
		// Havana skips midnight in March (00:00 -> 01:00) and repeats it
		// in November (01:00 -> 00:00).
		{"day", "America/Havana", "2025-03-09T12:00:00Z", "2025-03-09T05:00:00Z", "2025-03-10T04:00:00Z"},
		{"day", "America/Havana", "2025-03-09T04:59:59Z", "2025-03-08T05:00:00Z", "2025-03-09T05:00:00Z"},
		{"day", "America/Havana", "2025-11-02T04:30:00Z", "2025-11-02T04:00:00Z", "2025-11-03T05:00:00Z"},
		{"day", "America/Havana", "2025-11-02T05:30:00Z", "2025-11-02T04:00:00Z", "2025-11-03T05:00:00Z"},
		{"day", "America/Havana", "2025-11-01T12:00:00Z", "2025-11-01T04:00:00Z", "2025-11-02T04:00:00Z"},
		// Santiago turns 00:00 back to 23:00 of the day before, in April:
		// that day has 25 hours, and the repeated hour belongs to it.
		{"day", "America/Santiago", "2025-04-06T03:30:00Z", "2025-04-05T03:00:00Z", "2025-04-06T04:00:00Z"},
		{"day", "America/Santiago", "2025-04-06T04:00:00Z", "2025-04-06T04:00:00Z", "2025-04-07T04:00:00Z"},
		{"day", "America/Santiago", "2025-09-07T12:00:00Z", "2025-09-07T04:00:00Z", "2025-09-08T03:00:00Z"},
		{"month", "America/Santiago", "2025-09-07T12:00:00Z", "2025-09-01T04:00:00Z", "2025-10-01T03:00:00Z"},
		// A duration is aligned to the Unix epoch, not to year 1.
		{"90m", "", "1970-01-01T02:00:00Z", "1970-01-01T01:30:00Z", "1970-01-01T03:00:00Z"},
		{"90m", "", "2026-05-17T10:11:12Z", "2026-05-17T09:00:00Z", "2026-05-17T10:30:00Z"},
		{"7s", "", "1969-12-31T23:59:59Z", "1969-12-31T23:59:53Z", "1970-01-01T00:00:00Z"},
		{"168h", "", "2026-05-17T10:11:12Z", "2026-05-14T00:00:00Z", "2026-05-21T00:00:00Z"}, // the epoch was a Thursday
	} {
		w := mustWindow(t, tt.per, tt.tz)
		s, e := w.Bounds(utc(tt.now))
		if !s.Equal(utc(tt.start)) || !e.Equal(utc(tt.end)) {
			t.Errorf("%s in %q at %s: [%s, %s), want [%s, %s)", tt.per, tt.tz, tt.now,
				s.UTC().Format(time.RFC3339), e.UTC().Format(time.RFC3339), tt.start, tt.end)
		}
	}
}

// TestWindowPartition: for any time in many timezones, the windows are
// consecutive and contain it, and a calendar window starts at a local
// midnight (or the first instant after one the clocks skip).
func TestWindowPartition(t *testing.T) {
	zones := []string{"", "UTC", "Europe/Berlin", "America/New_York", "America/Havana", "America/Santiago",
		"Asia/Beirut", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Apia", "Pacific/Chatham", "America/St_Johns",
		"Africa/Casablanca", "Asia/Tehran", "Antarctica/Troll", "Etc/GMT+12"}
	r := rand.New(rand.NewPCG(7, 8))
	lo, hi := utc("1990-01-01T00:00:00Z").Unix(), utc("2045-01-01T00:00:00Z").Unix()
	for _, tz := range zones {
		for _, per := range []string{"second", "minute", "hour", "day", "week", "month", "year"} {
			w := mustWindow(t, per, tz)
			for range 300 {
				now := time.Unix(lo+r.Int64N(hi-lo), r.Int64N(1e9))
				checkPartition(t, w, now)
			}
		}
	}
	// Every change of the clocks of these zones, and the seconds around it.
	for _, tz := range zones[2:] {
		loc, _ := time.LoadLocation(tz)
		for at := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC); at.Year() < 2031; {
			_, end := at.In(loc).ZoneBounds()
			if end.IsZero() {
				break
			}
			for _, per := range []string{"hour", "day", "week", "month"} {
				w := mustWindow(t, per, tz)
				for _, d := range []time.Duration{-25 * time.Hour, -time.Hour, -time.Second, 0, time.Second, time.Hour, 25 * time.Hour} {
					checkPartition(t, w, end.Add(d))
				}
			}
			at = end
		}
	}
}

func checkPartition(t *testing.T, w Window, now time.Time) {
	t.Helper()
	s, e := w.Bounds(now)
	// Bounds may answer from its calendar's last window: the same as
	// computing it afresh.
	if c := w.cal; c.loc != time.UTC || c.unit > unitHour {
		find := c.dateBounds
		if c.unit <= unitHour {
			find = c.clockBounds
		}
		fs, fe := find(now)
		if !fs.Equal(s) || !fe.Equal(e) {
			t.Fatalf("%s at %s: Bounds [%s, %s), computed afresh [%s, %s)", w, now.UTC(), s.UTC(), e.UTC(), fs.UTC(), fe.UTC())
		}
	}
	switch {
	case now.Before(s) || !now.Before(e):
		t.Fatalf("%s: %s is outside its window [%s, %s)", w, now.UTC().Format(time.RFC3339Nano), s.UTC(), e.UTC())
	case e.Sub(s) > 367*24*time.Hour+2*time.Hour:
		t.Fatalf("%s: window [%s, %s) is too long", w, s.UTC(), e.UTC())
	}
	if s2, e2 := w.Bounds(s); !s2.Equal(s) || !e2.Equal(e) {
		t.Fatalf("%s: the window of its own start %s is [%s, %s)", w, s.UTC(), s2.UTC(), e2.UTC())
	}
	if s2, e2 := w.Bounds(e.Add(-time.Nanosecond)); !s2.Equal(s) || !e2.Equal(e) {
		t.Fatalf("%s: the window of its last instant is another one", w)
	}
	if s2, _ := w.Bounds(e); !s2.Equal(e) {
		t.Fatalf("%s: the window after [%s, %s) starts at %s", w, s.UTC(), e.UTC(), s2.UTC())
	}
	if s2, _ := w.Bounds(s.Add(-time.Nanosecond)); !s2.Before(s) {
		t.Fatalf("%s: the window before [%s, %s) starts at %s", w, s.UTC(), e.UTC(), s2.UTC())
	}
	if u := w.cal.unit; u >= unitDay {
		local := s.In(w.cal.loc)
		if h, m, sec := local.Clock(); h|m|sec != 0 {
			// Only where the clocks skip that midnight: the instant before
			// is still the day before.
			if prev := s.Add(-time.Second).In(w.cal.loc); prev.Day() == local.Day() {
				t.Fatalf("%s: window starts at %s, not at a midnight", w, local)
			}
		}
		if u == unitWeek && local.Weekday() != time.Monday {
			t.Fatalf("%s: week starts on %s", w, local.Weekday())
		}
		if u >= unitMonth && local.Day() != 1 {
			t.Fatalf("%s: window starts on day %d", w, local.Day())
		}
	}
}

func TestParseWindowRefused(t *testing.T) {
	for _, tt := range []struct{ per, tz, want string }{
		{"", "", "has no per"},
		{"days", "", `has per "days", which is neither`},
		{"Day", "", `has per "Day", which is neither`},
		{"1d", "", `has per "1d", which is neither`},
		{"500ms", "", `has per "500ms", shorter than 1s`},
		{"0s", "", `shorter than 1s`},
		{"-1h", "", `shorter than 1s`},
		{"1h", "Europe/Berlin", "with a timezone"},
		{"day", "Mars/Olympus", `has timezone "Mars/Olympus", which is not an IANA timezone`},
		{"day", "Local", `has timezone "Local", which depends on the machine`},
		{"day", "../etc/passwd", `has timezone "../etc/passwd"`},
	} {
		_, err := ParseWindow(tt.per, tt.tz)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseWindow(%q, %q): %v, want %q", tt.per, tt.tz, err, tt.want)
		}
	}
	w := mustWindow(t, "90m", "")
	if w.Per() != "1h30m" || w.Timezone() != "" || w.String() != "1h30m" {
		t.Errorf("90m: Per %q, Timezone %q, String %q", w.Per(), w.Timezone(), w.String())
	}
	w = mustWindow(t, "month", "Europe/Berlin")
	if w.Per() != "month" || w.Timezone() != "Europe/Berlin" || w.String() != "month in Europe/Berlin" {
		t.Errorf("month in Berlin: Per %q, Timezone %q, String %q", w.Per(), w.Timezone(), w.String())
	}
	if w := mustWindow(t, "day", "UTC"); w.Timezone() != "" || w != mustWindow(t, "day", "") {
		t.Errorf("day in UTC is not day: %v", w)
	}
	if !(Window{}).IsZero() || w.IsZero() {
		t.Error("IsZero")
	}
	if s, e := (Window{}).Bounds(time.Now()); !s.IsZero() || !e.IsZero() {
		t.Error("no window has bounds")
	}
}

func TestWindowBoundsNoAllocs(t *testing.T) {
	now := utc("2026-03-29T12:00:00Z")
	for _, w := range []Window{mustWindow(t, "day", ""), mustWindow(t, "month", "Europe/Berlin"),
		mustWindow(t, "hour", "Asia/Kolkata"), mustWindow(t, "90m", ""), mustWindow(t, "day", "America/Havana")} {
		if n := testing.AllocsPerRun(100, func() { w.Bounds(now) }); n != 0 {
			t.Errorf("%s: %v allocations", w, n)
		}
	}
}

// BenchmarkWindowBounds: the cost per request and limit of finding its
// window. "berlin_other_year" is a time outside the zone period cached at
// load, where Go computes the zone from its rule.
func BenchmarkWindowBounds(b *testing.B) {
	now := time.Now()
	for _, tt := range []struct {
		name, per, tz string
		at            time.Time
	}{
		{"duration", "90m", "", now},
		{"hour_utc", "hour", "", now},
		{"day_utc", "day", "", now},
		{"month_utc", "month", "", now},
		{"hour_berlin", "hour", "Europe/Berlin", now},
		{"day_berlin", "day", "Europe/Berlin", now},
		{"week_berlin", "week", "Europe/Berlin", now},
		{"month_berlin", "month", "Europe/Berlin", now},
		{"day_berlin_other_year", "day", "Europe/Berlin", now.AddDate(3, 0, 0)},
		{"day_havana_skipped_midnight", "day", "America/Havana", utc("2025-03-09T12:00:00Z")},
	} {
		w := mustWindow(b, tt.per, tt.tz)
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w.Bounds(tt.at)
			}
		})
		if c := w.cal; c != nil && (c.loc != time.UTC || c.unit > unitHour) {
			// The first request of each window finds it afresh.
			find := c.dateBounds
			if c.unit <= unitHour {
				find = c.clockBounds
			}
			b.Run(tt.name+"_afresh", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					find(tt.at)
				}
			})
		}
	}
}
