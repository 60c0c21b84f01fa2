package usage

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"testing"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"
)

// FuzzReader feeds any body, cut anywhere, and holds the reader to three
// things: it never panics; how the body is cut never changes the figure;
// and on valid JSON (and events whose data is valid JSON) the figure is
// what a real JSON decoder (jsontext) finds walking the same members.
// Memory is bounded by construction (a Reader is a fixed-size value that
// keeps nothing it is fed; TestNoAllocs holds it to no allocation).
func FuzzReader(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(fx.contentType, mustRead(fx.file), uint64(1))
	}
	f.Add("application/json", []byte(`{"usage":{"total_tokens":1},"usage":{"prompt_tokens":2}}`), uint64(2))
	f.Add("text/event-stream", []byte("data: {\"usage\":\r\ndata: {\"total_tokens\":3}}\r\n\r\n"), uint64(3))
	f.Add("application/x-ndjson", []byte("{\"a\":[1,{\"b\":\"\\\"}\"}]}\n{\"eval_count\":4}\n"), uint64(4))
	f.Fuzz(func(t *testing.T, ct string, body []byte, seed uint64) {
		whole, wholeOK := read(ct, body, func() int { return 1 << 30 })
		rng := rand.New(rand.NewPCG(seed, 2))
		cut, cutOK := read(ct, body, func() int { return 1 + rng.IntN(16) })
		if whole != cut || wholeOK != cutOK {
			t.Fatalf("whole: %d %v; cut: %d %v", whole, wholeOK, cut, cutOK)
		}
		var want int64
		var wantOK, valid bool
		switch modeOf(ct) {
		case modeJSON:
			want, wantOK, valid = refJSON(body)
		case modeSSE:
			want, wantOK, valid = refSSE(body)
		default:
			want, wantOK, valid = 0, false, true
		}
		if valid && (want != whole || wantOK != wholeOK) {
			t.Fatalf("read %d %v, a decoder finds %d %v", whole, wholeOK, want, wantOK)
		}
	})
}

func mustRead(name string) []byte {
	b, err := readFixtureFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

// TestReaderSize pins the bound on a Reader's memory: it is all there is.
func TestReaderSize(t *testing.T) {
	if n := unsafe.Sizeof(Reader{}); n > 160 {
		t.Errorf("a Reader is %d bytes, want at most 160", n)
	}
}

// refJSON is the figure of a sequence of JSON values by a real decoder;
// valid is false when the body is not such a sequence.
func refJSON(body []byte) (n int64, ok, valid bool) {
	d := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	for {
		var c counts
		k := d.PeekKind()
		if k == 0 {
			_, err := d.ReadToken()
			return n, ok, errors.Is(err, io.EOF)
		}
		if k == '{' {
			if !refObject(d, kindTop, &c) {
				return 0, false, false
			}
			if v, has := c.tokens(); has {
				n, ok = v, true
			}
			continue
		}
		if d.SkipValue() != nil {
			return 0, false, false
		}
	}
}

// refObject walks an object of kind k, the next value of d.
func refObject(d *jsontext.Decoder, k kind, c *counts) bool {
	if _, err := d.ReadToken(); err != nil {
		return false
	}
	for d.PeekKind() != '}' {
		name, err := d.ReadValue() // the raw name: an escaped one is none of ours
		if err != nil || len(name) < 2 {
			return false
		}
		raw := string(name[1 : len(name)-1])
		if bytes.IndexByte(name, '\\') >= 0 {
			raw = "\\"
		}
		child, isChild := childOf(k, raw)
		fig := figureOfName(k, raw)
		switch {
		case isChild && d.PeekKind() == '{':
			if !refObject(d, child, c) {
				return false
			}
		case fig != figNone && d.PeekKind() == '0':
			v, err := d.ReadValue()
			if err != nil {
				return false
			}
			if i, err := strconv.ParseInt(string(v), 10, 64); err == nil && v[0] != '-' {
				c.set(fig, i)
			}
		default:
			if d.SkipValue() != nil {
				return false
			}
		}
	}
	_, err := d.ReadToken()
	return err == nil
}

func childOf(k kind, name string) (kind, bool) {
	var s scanner
	s.kinds[0], s.depth = k, 1
	s.keyLen = uint8(copy(s.key[:], name))
	if len(name) > maxKey {
		s.keyLen = maxKey + 1
	}
	return s.child()
}

func figureOfName(k kind, name string) figure {
	var s scanner
	s.kinds[0], s.depth = k, 1
	s.keyLen = uint8(copy(s.key[:], name))
	if len(name) > maxKey {
		s.keyLen = maxKey + 1
	}
	return s.figureOf()
}

// refSSE is the figure of an event stream read by the letter of the
// HTML standard's parser: the last event whose data has one; valid is
// false when an event's data is not a sequence of JSON values.
func refSSE(body []byte) (n int64, ok, valid bool) {
	var data []byte
	var has bool
	flush := func() bool {
		if !has {
			return true
		}
		v, vok, valid := refJSON(data)
		if !valid {
			return false
		}
		if vok {
			n, ok = v, true
		}
		data, has = data[:0], false
		return true
	}
	for len(body) > 0 {
		end := bytes.IndexAny(body, "\r\n")
		line := body
		rest := []byte(nil)
		if end >= 0 {
			line, rest = body[:end], body[end+1:]
			if body[end] == '\r' && len(rest) > 0 && rest[0] == '\n' {
				rest = rest[1:]
			}
		}
		body = rest
		switch {
		case len(line) == 0:
			if !flush() {
				return 0, false, false
			}
		case bytes.Equal(line, []byte("data")):
			data, has = append(data, '\n'), true
		case bytes.HasPrefix(line, []byte("data:")):
			v := line[5:]
			if len(v) > 0 && v[0] == ' ' {
				v = v[1:]
			}
			data, has = append(append(data, v...), '\n'), true
		}
	}
	// An event the stream ended in the middle of: its values that closed
	// count (a reader cannot know the stream ends).
	if !flush() {
		return 0, false, false
	}
	return n, ok, true
}
