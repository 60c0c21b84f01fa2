package command

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// pushProgress shows a push's progress on w when w is a terminal: a bar
// over the hashes to write, then a count of the stale keys removed. On
// anything else (a pipe, a log, CI) it shows nothing, and progress is nil.
func pushProgress(w io.Writer) (progress func(Stats), done func()) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, func() {}
	}
	return newPushBars(w)
}

// newPushBars draws the progress of a push on w.
func newPushBars(w io.Writer) (progress func(Stats), done func()) {
	opts := func(desc string) []progressbar.Option {
		return []progressbar.Option{
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(100 * time.Millisecond),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetWidth(30),
		}
	}
	var writing, removing *progressbar.ProgressBar
	progress = func(st Stats) {
		if total, n := st.Consumers+st.Keys, st.Written+st.Unchanged; n < total {
			if writing == nil {
				writing = progressbar.NewOptions(total, opts("writing hashes")...)
			}
			_ = writing.Set(n)
			return
		}
		if removing == nil { // every hash is written: the scan for stale keys
			if writing != nil {
				_ = writing.Finish()
			}
			removing = progressbar.NewOptions(-1, opts("removing stale keys")...)
		}
		_ = removing.Set(st.Removed)
	}
	done = func() {
		for _, b := range []*progressbar.ProgressBar{writing, removing} {
			if b != nil {
				_ = b.Finish()
			}
		}
	}
	return progress, done
}
