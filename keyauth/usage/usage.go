// Package usage reads how many tokens an LLM answer used from the answer's
// body as it goes by, so that key_auth settles a token budget with the real
// figure (issue 18): usage.total_tokens of an OpenAI-compatible JSON answer,
// of the last server-sent event that carries usage (a Chat Completions
// stream with stream_options.include_usage, a Responses API stream's
// response.usage), or Ollama's prompt_eval_count + eval_count (the final
// object of its NDJSON stream, or its one JSON object).
//
// A Reader never holds the body: it is a fixed-size state machine fed each
// write of the body (Write), whatever the cut between writes, and keeps
// nothing of what it saw but the figure. It does not validate JSON: it
// follows the structure only as deep as the figures are (the top-level
// object, its usage and response objects, response.usage) and skips
// everything else by counting brackets outside strings, which is what keeps
// it fast and its memory bounded. A JSON library could not do that here:
// the standard decoders (encoding/json, go-json-experiment's jsontext) pull
// from an io.Reader, which a response writer's pushed writes would have to
// feed through a pipe and a goroutine per request, and they hold each token
// whole (a 1 MB string of generated text is a 1 MB token).
//
// Package usage is Caddy-free, as package consumers is.
package usage

import (
	"bytes"
	"math"
	"strings"
)

// Reader reads the token usage of one response body. The zero value reads
// nothing; Reset readies it for a body of a content type. It is not safe for
// concurrent use (a response is written by one goroutine at a time).
type Reader struct {
	mode mode

	// Server-sent events: the field of the current line and how much of
	// its name was read.
	sse sseState

	js scanner

	tokens int64
	found  bool
}

type mode uint8

const (
	modeOff  mode = iota // a body that carries no usage to read
	modeJSON             // one JSON value or a sequence of them (NDJSON)
	modeSSE              // text/event-stream: each event's data is JSON
)

// Reset readies r for a new body of the given Content-Type: text/event-stream
// is read as server-sent events; JSON (application/json, any +json type),
// NDJSON (application/x-ndjson, application/ndjson, application/jsonl) and a
// missing type as a sequence of JSON values; anything else is not read (no
// usage). It reports whether the body will be read.
func (r *Reader) Reset(contentType string) bool {
	*r = Reader{mode: modeOf(contentType)}
	r.js.reset()
	return r.mode != modeOff
}

// modeOf is how a body of the Content-Type ct is read. (Its media type is
// the part before any ';': mime.ParseMediaType would allocate a map of the
// parameters on every response.)
func modeOf(ct string) mode {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	switch {
	case mt == "":
		return modeJSON
	case strings.EqualFold(mt, "text/event-stream"):
		return modeSSE
	case strings.EqualFold(mt, "application/json"),
		len(mt) > 5 && strings.EqualFold(mt[len(mt)-5:], "+json"),
		strings.EqualFold(mt, "application/x-ndjson"),
		strings.EqualFold(mt, "application/ndjson"),
		strings.EqualFold(mt, "application/jsonl"),
		strings.EqualFold(mt, "application/x-jsonlines"):
		return modeJSON
	}
	return modeOff
}

// Write reads the next bytes of the body. It never fails and never keeps p.
func (r *Reader) Write(p []byte) (int, error) {
	switch r.mode {
	case modeJSON:
		r.js.feed(r, p)
	case modeSSE:
		r.feedSSE(p)
	}
	return len(p), nil
}

// Tokens is the usage read so far: the figure of the last value (event,
// NDJSON line or the one JSON answer) that carried usage, and whether one
// did.
func (r *Reader) Tokens() (int64, bool) { return r.tokens, r.found }

// commit records the usage of a value just completed.
func (r *Reader) commit(c *counts) {
	if n, ok := c.tokens(); ok {
		r.tokens, r.found = n, true
	}
}

// counts are the figures one top-level value carried.
type counts struct {
	v   [numFigures]int64
	has uint16 // a bit per figure seen
}

// figure is a number the scanner looks for, and where.
type figure uint8

const (
	figNone             figure = iota
	figTotal                   // usage.total_tokens
	figPrompt                  // usage.prompt_tokens (Chat Completions)
	figCompletion              // usage.completion_tokens
	figInput                   // usage.input_tokens (Responses API)
	figOutput                  // usage.output_tokens
	figOllamaPromptEval        // prompt_eval_count (Ollama, top level)
	figOllamaEval              // eval_count
	numFigures
)

func (c *counts) set(f figure, n int64) {
	c.v[f] = n
	c.has |= 1 << f
}

func (c *counts) seen(f figure) bool { return c.has&(1<<f) != 0 }

// tokens is what a value's figures say it used: total_tokens when given,
// else the sum of the parts a server gave (some OpenAI-compatible servers
// leave total_tokens out), else Ollama's counts (either may be missing: a
// prompt served from cache has no prompt_eval_count).
func (c *counts) tokens() (int64, bool) {
	switch {
	case c.seen(figTotal):
		return c.v[figTotal], true
	case c.seen(figPrompt) || c.seen(figCompletion):
		return add(c.v[figPrompt], c.v[figCompletion]), true
	case c.seen(figInput) || c.seen(figOutput):
		return add(c.v[figInput], c.v[figOutput]), true
	case c.seen(figOllamaPromptEval) || c.seen(figOllamaEval):
		return add(c.v[figOllamaPromptEval], c.v[figOllamaEval]), true
	}
	return 0, false
}

// add is a+b of two non-negative figures, at most math.MaxInt64.
func add(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// sseState is where the reader is in a line of an event stream.
type sseState struct {
	// field is how much of "data" the line's field name matched so far
	// (0-4), fieldData once the line is a data line past its colon,
	// fieldOther for any other field or a comment.
	field    uint8
	started  bool // the line has a byte
	space    bool // a data line's value may begin with one space to drop
	afterCR  bool // the last line ended with CR: an LF now ends nothing
	hasEvent bool // the event has a data line
}

const (
	fieldData  = 5
	fieldOther = 6
)

var dataName = [4]byte{'d', 'a', 't', 'a'}

// feedSSE reads an event stream: each data line's value goes to the JSON
// scanner, a line break between data lines as "\n" (as an event's data is
// joined), and a blank line ends the event, so a value cut short there
// carries nothing into the next event.
func (r *Reader) feedSSE(p []byte) {
	s := &r.sse
	for i := 0; i < len(p); {
		c := p[i]
		if s.afterCR {
			s.afterCR = false
			if c == '\n' {
				i++
				continue
			}
		}
		if c == '\n' || c == '\r' {
			r.endLine()
			s.afterCR = c == '\r'
			i++
			continue
		}
		switch {
		case s.field == fieldData:
			// The value runs to the end of the line.
			if s.space {
				s.space = false
				if c == ' ' {
					i++
					continue
				}
			}
			j := lineEnd(p[i:])
			if j < 0 {
				r.js.feed(r, p[i:])
				return
			}
			r.js.feed(r, p[i:i+j])
			i += j
		case s.field == fieldOther:
			j := lineEnd(p[i:])
			if j < 0 {
				return
			}
			i += j
		case c == ':' && s.field == 4:
			s.field, s.space, s.started, s.hasEvent = fieldData, true, true, true
			i++
		case s.field < 4 && c == dataName[s.field]:
			s.field++
			s.started = true
			i++
		default:
			s.field, s.started = fieldOther, true
			i++
		}
	}
}

// endLine ends a line of an event stream; its end is a line break the
// reader just met.
func (r *Reader) endLine() {
	s := &r.sse
	switch {
	case s.field == 4:
		// "data" without a colon: a data line with an empty value.
		s.hasEvent = true
		r.js.feed(r, newline)
	case s.field == fieldData:
		r.js.feed(r, newline)
	case !s.started:
		// A blank line ends the event.
		if s.hasEvent {
			r.js.reset()
		}
		s.hasEvent = false
	}
	s.field, s.started, s.space = 0, false, false
}

var newline = []byte{'\n'}

// lineEnd is the index of the first CR or LF in p, or -1. (Two IndexByte
// calls, each vectorized, beat one bytes.IndexAny: the CR is looked for only
// in the line the LF ends.)
func lineEnd(p []byte) int {
	j := bytes.IndexByte(p, '\n')
	in := p
	if j >= 0 {
		in = p[:j]
	}
	if k := bytes.IndexByte(in, '\r'); k >= 0 {
		return k
	}
	return j
}
