package consumers

import (
	"errors"
	"os"
	"runtime/debug"
	"syscall"
)

// testHookAfterMap lets a test change the file once it is mapped.
var testHookAfterMap = func() {}

// mapAbove is the size from which a consumers file is mapped rather than
// read: below it, a read costs less than the mapping.
const mapAbove = 4 << 20

// ParseFile parses a consumers file. A large file is mapped, and the pages
// the parser has passed are dropped as it goes, so a reload holds the old
// set and the new one but never the whole file besides.
func ParseFile(path string) (set *Set, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, ReadError{err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, ReadError{err}
	}
	size := fi.Size()
	if size < mapAbove || size > 1<<40 {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, ReadError{err}
		}
		return Parse(data)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_PRIVATE)
	if err != nil {
		return nil, ReadError{err}
	}
	defer syscall.Munmap(data)
	testHookAfterMap()

	// A writer that truncates the file in place while it is mapped makes
	// the pages past its new end fault: that is an error to report, not a
	// reason for Caddy to crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			set, err = nil, ReadError{errors.New("the file changed while it was read")}
		}
	}()
	const page = 4096
	return parse(data, func(from, to int) {
		// Dropped pages of a private, unwritten mapping read back from
		// the file if touched again (an error message's line count).
		from = (from + page - 1) &^ (page - 1)
		to &^= page - 1
		if to > from {
			_ = syscall.Madvise(data[from:to], syscall.MADV_DONTNEED)
		}
	})
}
