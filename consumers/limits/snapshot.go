package limits

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// The snapshot format: the magic, then one record per counter, a zero byte,
// and the CRC-32 (IEEE, little endian) of all that precedes it. A record is
// the scope kind (one byte, never zero), the scope and the meter (each a
// uvarint length and the bytes), the window's start (varint, Unix
// nanoseconds), its length (uvarint, nanoseconds) and the usage (uvarint).
// Unlike encoding/gob it costs about 30 bytes and 30 ns a counter, which
// matters for a table of a million counters saved every second.
const snapshotMagic = "KALIMIT\x02"

// snapshotMagicV1 starts a snapshot whose usages are uvarints.
const snapshotMagicV1 = "KALIMIT\x01"

// record is a counter as a snapshot holds it.
type record struct {
	key
	used, end int64
}

// Snapshot writes the counters of windows that have not ended by now, not
// the in-flight slots (a restarted instance serves none of the requests
// that held them); it reports how many it wrote. Each shard is copied under
// its lock and written after, so admissions wait for a copy, never for w.
func (t *Table) Snapshot(w io.Writer, now time.Time) (int, error) {
	at := now.UnixNano()
	crc := crc32.NewIEEE()
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 64<<10)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return 0, err
	}
	var recs []record
	var buf []byte
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		recs = recs[:0]
		sh.mu.Lock()
		sh.each(func(p *counter) {
			used := p.used.Load()
			if (p.meter == InFlight && p.start == 0) || p.end <= at || used == 0 {
				return
			}
			recs = append(recs, record{p.key, used, p.end})
		})
		sh.mu.Unlock()
		for _, r := range recs {
			buf = append(buf[:0], byte(r.kind))
			buf = binary.AppendUvarint(buf, uint64(len(r.scope)))
			buf = append(buf, r.scope...)
			buf = binary.AppendUvarint(buf, uint64(len(r.meter)))
			buf = append(buf, r.meter...)
			buf = binary.AppendVarint(buf, r.start)
			buf = binary.AppendUvarint(buf, uint64(r.end-r.start))
			buf = binary.AppendVarint(buf, r.used)
			if _, err := bw.Write(buf); err != nil {
				return n, err
			}
			n++
		}
	}
	if err := bw.WriteByte(0); err != nil {
		return n, err
	}
	if err := bw.Flush(); err != nil {
		return n, err
	}
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], crc.Sum32())
	_, err := w.Write(sum[:])
	return n, err
}

// ErrBadSnapshot is wrapped by Restore's error for data that is not a
// whole snapshot.
var ErrBadSnapshot = errors.New("not a limits snapshot, or a damaged one")

// Restore adds the counters of a snapshot whose window has not ended by
// now; a counter the table holds already keeps the larger usage. It reads
// all of r, and changes nothing when the snapshot is damaged.
func (t *Table) Restore(r io.Reader, now time.Time) (int, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, fmt.Errorf("reading a limits snapshot: %w", err)
	}
	if len(b) < len(snapshotMagic)+5 {
		return 0, ErrBadSnapshot
	}
	v1 := string(b[:len(snapshotMagicV1)]) == snapshotMagicV1
	if !v1 && string(b[:len(snapshotMagic)]) != snapshotMagic {
		return 0, ErrBadSnapshot
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return 0, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	recs, err := parseSnapshot(body[len(snapshotMagic):], v1)
	if err != nil {
		return 0, err
	}
	at := now.UnixNano()
	n := 0
	for _, rec := range recs {
		if rec.end <= at {
			continue
		}
		s, h := t.locate(&rec.key)
		sh := &t.shards[s]
		sh.mu.Lock()
		if p := sh.find(h, &rec.key); p != nil {
			addClamped(&p.used, max(0, rec.used-p.used.Load()))
			p.end = max(p.end, rec.end)
		} else {
			p := &counter{key: rec.key, end: rec.end}
			p.used.Store(rec.used)
			sh.add(h, p)
		}
		sh.mu.Unlock()
		n++
	}
	if n > 0 {
		t.touch()
	}
	return n, nil
}

func parseSnapshot(b []byte, v1 bool) ([]record, error) {
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrBadSnapshot, what) }
	// One string per meter (there are few), and one per scope for the
	// records of one scope that follow each other.
	meters := map[string]string{}
	var last string
	str := func(b []byte, meter bool) string {
		if meter {
			if s, ok := meters[string(b)]; ok {
				return s
			}
			s := string(b)
			if len(meters) < 256 {
				meters[s] = s
			}
			return s
		}
		if string(b) != last {
			last = string(b)
		}
		return last
	}
	r := bytes.NewReader(b)
	var out []record
	for {
		kind, err := r.ReadByte()
		if err != nil {
			return nil, bad("no end mark")
		}
		if kind == 0 {
			if r.Len() != 0 {
				return nil, bad("data after the end mark")
			}
			return out, nil
		}
		if ScopeKind(kind) > Group {
			return nil, bad("unknown scope kind")
		}
		var rec record
		rec.kind = ScopeKind(kind)
		for j, s := range [2]*string{&rec.scope, &rec.meter} {
			l, err := binary.ReadUvarint(r)
			if err != nil || l > uint64(r.Len()) {
				return nil, bad("truncated record")
			}
			off := len(b) - r.Len()
			*s = str(b[off:off+int(l)], j == 1)
			_, _ = r.Seek(int64(l), io.SeekCurrent)
		}
		start, err1 := binary.ReadVarint(r)
		length, err2 := binary.ReadUvarint(r)
		var used int64
		var err3 error
		if v1 {
			var u uint64
			u, err3 = binary.ReadUvarint(r)
			used = int64(min(u, 1<<62+1)) // over 1<<62 is refused below
		} else {
			used, err3 = binary.ReadVarint(r)
		}
		if err := errors.Join(err1, err2, err3); err != nil || length == 0 || length > 1<<62 || used > 1<<62 || used < minUsed {
			return nil, bad("truncated record")
		}
		rec.start, rec.end, rec.used = start, start+int64(length), used
		out = append(out, rec)
	}
}
