package consumers

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Window is the calendar of a limit: the fixed windows its usage is counted
// in, reset at each boundary. The zero Window is no window (in_flight). A
// Window is a small value, compared with ==: two Windows are equal when
// they count in the same windows.
type Window struct {
	cal  *calendar // the calendar unit and timezone, shared; nil for a duration
	span int64     // the duration in nanoseconds, for a window of a duration
}

// calendar is a calendar unit in a timezone, made once per process for
// each (ParseWindow), with the window it last found: requests come in the
// same window for a day or a month, and finding it takes a hundred
// nanoseconds or more in a timezone with daylight saving time.
type calendar struct {
	unit unit
	loc  *time.Location
	last atomic.Pointer[bounds]
}

type bounds struct{ start, end time.Time }

type unit uint8

// The calendar units of a window.
const (
	unitSecond unit = iota + 1
	unitMinute
	unitHour
	unitDay
	unitWeek
	unitMonth
	unitYear
)

var unitNames = [...]string{unitSecond: "second", unitMinute: "minute", unitHour: "hour", unitDay: "day",
	unitWeek: "week", unitMonth: "month", unitYear: "year"}

// MinWindow is the shortest window of a duration: a shorter one would count
// in fractions of the store's round trip.
const MinWindow = time.Second

// ParseWindow reads a limit's per and timezone: per is second, minute,
// hour, day, week (ISO: from Monday), month or year, aligned to the
// calendar in timezone (an IANA name such as "Europe/Berlin"; "" is UTC),
// or a Go duration of at least MinWindow ("90m"), aligned to the Unix epoch
// and given without a timezone. Each timezone is loaded once per process.
// Its errors complete a sentence that starts with the limit's name.
func ParseWindow(per, timezone string) (Window, error) {
	for u, name := range unitNames {
		if name != "" && per == name {
			if timezone == "UTC" {
				timezone = ""
			}
			return calendarOf(unit(u), timezone)
		}
	}
	if per == "" {
		return Window{}, errors.New("has no per")
	}
	d, err := time.ParseDuration(per)
	if err != nil {
		return Window{}, fmt.Errorf("has per %q, which is neither second, minute, hour, day, week, month, year nor a duration such as 90m", per)
	}
	switch {
	case d < MinWindow:
		return Window{}, fmt.Errorf("has per %q, shorter than %v", per, MinWindow)
	case timezone != "":
		return Window{}, fmt.Errorf("has per %q with a timezone: a window of a duration is aligned to the Unix epoch, whatever the timezone", per)
	}
	return Window{span: int64(d)}, nil
}

type calendarKey struct {
	unit     unit
	timezone string
}

// calendars are the calendars made so far: LoadLocation reads the zone
// database each time it is called, and a Redis source builds a set for
// each key it looks up. Failures are not kept: a document's mistakes must
// not grow memory.
var calendars sync.Map // calendarKey -> *calendar

func calendarOf(u unit, timezone string) (Window, error) {
	k := calendarKey{u, timezone}
	if c, ok := calendars.Load(k); ok {
		return Window{cal: c.(*calendar)}, nil
	}
	loc := time.UTC
	if timezone != "" {
		if timezone == "Local" {
			// Local is whatever zone the machine is set to: instances of a
			// fleet would count in different windows.
			return Window{}, errors.New(`has timezone "Local", which depends on the machine; name an IANA timezone such as "Europe/Berlin"`)
		}
		var err error
		if loc, err = time.LoadLocation(timezone); err != nil {
			return Window{}, fmt.Errorf("has timezone %q, which is not an IANA timezone this machine knows", timezone)
		}
	}
	c, _ := calendars.LoadOrStore(k, &calendar{unit: u, loc: loc})
	return Window{cal: c.(*calendar)}, nil
}

// IsZero reports whether w is no window: that of in_flight.
func (w Window) IsZero() bool { return w.cal == nil && w.span == 0 }

// Per is the window as a limit's per says it: a calendar unit, or a
// duration in time.Duration's form ("1h30m0s" for "90m").
func (w Window) Per() string {
	switch {
	case w.cal != nil:
		return unitNames[w.cal.unit]
	case w.span != 0:
		// Without Duration.String's trailing zero units: "1h30m", "2h".
		d := time.Duration(w.span).String()
		d, _ = strings.CutSuffix(d, "m0s")
		if len(d) < len(time.Duration(w.span).String()) {
			d += "m"
		}
		d, _ = strings.CutSuffix(d, "h0m")
		if !strings.HasSuffix(d, "s") && !strings.HasSuffix(d, "m") {
			d += "h"
		}
		return d
	}
	return ""
}

// Timezone is the IANA name of the window's timezone, or "" for UTC and for
// a window of a duration.
func (w Window) Timezone() string {
	if w.cal == nil || w.cal.loc == time.UTC {
		return ""
	}
	return w.cal.loc.String()
}

// String is the window for people: "day", "month in Europe/Berlin", "1h30m0s".
func (w Window) String() string {
	if tz := w.Timezone(); tz != "" {
		return w.Per() + " in " + tz
	}
	return w.Per()
}

// Bounds is the window now falls in: start <= now < end. A day is the span
// from one local midnight to the next, 23 or 25 hours long on the days the
// clocks change (a day whose midnight the clocks skip starts when they
// resume); a week starts on Monday; a window of a duration is aligned to
// the Unix epoch. Both are zero for no window. It allocates nothing, but
// when a calendar moves on to its next window, once per process.
func (w Window) Bounds(now time.Time) (start, end time.Time) {
	c := w.cal
	if c == nil {
		if w.span == 0 {
			return time.Time{}, time.Time{}
		}
		n := now.UnixNano()
		s := n - floorMod(n, w.span)
		return time.Unix(0, s), time.Unix(0, s+w.span)
	}
	if c.unit <= unitHour && c.loc == time.UTC {
		size := unitSeconds[c.unit]
		u := now.Unix()
		s := u - floorMod(u, size)
		return time.Unix(s, 0), time.Unix(s+size, 0)
	}
	if b := c.last.Load(); b != nil && !now.Before(b.start) && now.Before(b.end) {
		return b.start, b.end
	}
	if c.unit <= unitHour {
		start, end = c.clockBounds(now)
	} else {
		start, end = c.dateBounds(now)
	}
	c.last.Store(&bounds{start, end})
	return start, end
}

func (c *calendar) dateBounds(now time.Time) (s, e time.Time) {
	t := now.In(c.loc)
	y, m, d := t.Date()
	switch c.unit {
	case unitDay:
		s, e = c.midnight(y, m, d), c.midnight(y, m, d+1)
	case unitWeek:
		d -= (int(t.Weekday()) + 6) % 7 // back to Monday
		s, e = c.midnight(y, m, d), c.midnight(y, m, d+7)
	case unitMonth:
		s, e = c.midnight(y, m, 1), c.midnight(y, m+1, 1)
	default:
		s, e = c.midnight(y, 1, 1), c.midnight(y+1, 1, 1)
	}
	// Where the clocks go back across midnight, now's local date can be
	// the day before the window it falls in. (Bounded: a zone database
	// gone mad must not hang a request.)
	for i := 0; i < 3 && !now.Before(e); i++ {
		s, e = e, c.next(e)
	}
	return s, e
}

// next is the start of the window after the one that starts at s.
func (c *calendar) next(s time.Time) time.Time {
	y, m, d := s.In(c.loc).Date()
	switch c.unit {
	case unitDay:
		return c.midnight(y, m, d+1)
	case unitWeek:
		return c.midnight(y, m, d+7)
	case unitMonth:
		return c.midnight(y, m+1, 1)
	}
	return c.midnight(y+1, 1, 1)
}

var unitSeconds = [...]int64{unitSecond: 1, unitMinute: 60, unitHour: 3600}

// clockBounds is the second, minute or hour of now on the clocks of the
// calendar's timezone (an hour in Asia/Kolkata starts at :30 UTC), cut short
// where the clocks change within it.
func (c *calendar) clockBounds(now time.Time) (time.Time, time.Time) {
	size := unitSeconds[c.unit]
	u := now.Unix()
	t := now.In(c.loc)
	_, off := t.Zone()
	s := u - floorMod(u+int64(off), size)
	e := s + size
	zs, ze := t.ZoneBounds()
	if !zs.IsZero() && s < zs.Unix() {
		s = zs.Unix()
	}
	if !ze.IsZero() && e > ze.Unix() {
		e = ze.Unix()
	}
	return time.Unix(s, 0), time.Unix(e, 0)
}

// midnight is the first instant of a local date (normalized as time.Date
// normalizes it): its midnight, unless the clocks skip or repeat it.
func (c *calendar) midnight(y int, m time.Month, d int) time.Time {
	t := time.Date(y, m, d, 0, 0, 0, 0, c.loc)
	if c.loc == time.UTC {
		return t
	}
	// The midnight wanted, in seconds of a clock that reads UTC.
	want := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()
	// time.Date moves a local time that never occurs (to another day,
	// where a whole day is skipped), and picks either instant of one that
	// occurs twice; the day starts at the first.
	if _, off := t.Zone(); t.Unix()+int64(off) == want {
		zs, _ := t.ZoneBounds()
		if zs.IsZero() || t.Sub(zs) >= 24*time.Hour {
			return t // no change of the clocks just before: regular
		}
		// The clocks went back by delta at zs: if that repeated the
		// midnight, it first occurred delta earlier.
		_, before := zs.Add(-time.Second).Zone()
		if delta := time.Duration(before-off) * time.Second; delta > 0 && t.Add(-delta).Before(zs) {
			return t.Add(-delta)
		}
		return t
	}
	// The clocks skip the midnight: search the day's first instant, the
	// first second whose local date is the day or later, within a day and
	// some on either side (zones change on whole seconds).
	lo, hi := t.Unix()-27*3600, t.Unix()+27*3600
	for lo < hi {
		mid := lo + (hi-lo)/2
		ly, lm, ld := time.Unix(mid, 0).In(c.loc).Date()
		if time.Date(ly, lm, ld, 0, 0, 0, 0, time.UTC).Unix() >= want {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return time.Unix(lo, 0).In(c.loc)
}

// floorMod is n mod d rounded toward minus infinity, for d > 0: times
// before the epoch are aligned like those after.
func floorMod(n, d int64) int64 {
	r := n % d
	if r < 0 {
		r += d
	}
	return r
}
