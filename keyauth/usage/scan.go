package usage

import (
	"bytes"
	"math"
)

// scanner follows a sequence of JSON values fed in pieces. It tracks the
// objects that can hold a figure (see kind) member by member, and skips
// every other value whole: a string to its closing quote, a container to
// its closing bracket (a counter, not a stack), a literal to its end.
// Input that breaks the structure of a tracked object makes it wait for the
// next line, where an NDJSON stream's next value starts.
type scanner struct {
	st    state
	depth uint8          // tracked objects open: 0 at the top level
	kinds [maxDepth]kind // the tracked objects open, outermost first

	key    [maxKey]byte // the member name being read
	keyLen uint8        // its length; maxKey+1 when too long to be one of ours
	fig    figure       // the figure the current member's value is

	num   int64 // the number being read
	numOK bool  // it is still a non-negative integer in range

	skip int // containers open in a value being skipped

	c counts // the current top-level value's figures
}

// kind is what a tracked object is.
type kind uint8

const (
	kindTop      kind = iota // a top-level object: an answer, a chunk, an event
	kindUsage                // its usage, or response.usage
	kindResponse             // its response (the Responses API's events)
)

const (
	maxDepth = 3  // top, response, response.usage
	maxKey   = 17 // the longest name looked for: prompt_eval_count, completion_tokens
)

type state uint8

const (
	stValue        state = iota // a top-level value may start
	stKey                       // in a tracked object: a member name or its end
	stKeyString                 // in a member name
	stKeyEscape                 // after a backslash in a member name
	stColon                     // after a member name
	stMember                    // a member's value may start
	stNumber                    // in a figure's number
	stAfter                     // after a member's value: ',' or the end
	stString                    // in a string skipped
	stStringEscape              // after a backslash in it
	stNested                    // in a container skipped
	stNestedString              // in a string in it
	stNestedEscape              // after a backslash in that
	stScalar                    // in a literal or number skipped
	stBroken                    // lost: wait for a line break
)

func (s *scanner) reset() { *s = scanner{} }

// feed reads the next bytes of the values; r gets the figures of each
// top-level object that closes.
func (s *scanner) feed(r *Reader, p []byte) {
	quote := -1 // the next '"' in p at or after i, when not below i
	for i := 0; i < len(p); {
		c := p[i]
		switch s.st {
		case stValue:
			switch c {
			case ' ', '\t', '\n', '\r':
			case '{':
				s.c = counts{}
				s.open(kindTop)
			default:
				s.startSkip(c)
			}
			i++

		case stKey:
			switch c {
			case ' ', '\t', '\n', '\r', ',':
				// A comma after a comma or the brace is not JSON, but
				// nothing here depends on it.
			case '"':
				s.keyLen = 0
				s.st = stKeyString
			case '}':
				s.close(r)
			default:
				s.st = stBroken
				continue
			}
			i++

		case stKeyString:
			// A member name is short: byte by byte.
			switch c {
			case '"':
				s.fig = s.figureOf()
				s.st = stColon
			case '\\':
				s.keyLen = maxKey + 1 // an escaped name is none of ours
				s.st = stKeyEscape
			default:
				if s.keyLen < maxKey {
					s.key[s.keyLen] = c
					s.keyLen++
				} else {
					s.keyLen = maxKey + 1
				}
			}
			i++

		case stKeyEscape:
			s.st = stKeyString
			i++

		case stColon:
			switch c {
			case ' ', '\t', '\n', '\r':
			case ':':
				s.st = stMember
			default:
				s.st = stBroken
				continue
			}
			i++

		case stMember:
			switch c {
			case ' ', '\t', '\n', '\r':
			case '{':
				if k, ok := s.child(); ok {
					s.open(k)
				} else {
					s.skip = 1
					s.st = stNested
				}
			default:
				if s.fig != figNone && c >= '0' && c <= '9' {
					s.num, s.numOK = int64(c-'0'), true
					s.st = stNumber
				} else {
					s.startSkip(c)
				}
			}
			i++

		case stNumber:
			switch {
			case c >= '0' && c <= '9':
				d := int64(c - '0')
				if s.num > (math.MaxInt64-d)/10 {
					s.numOK = false
				} else {
					s.num = s.num*10 + d
				}
				i++
			case c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-':
				// Not an integer: not a count of tokens.
				s.numOK = false
				i++
			default:
				if s.numOK {
					s.c.set(s.fig, s.num)
				}
				s.valueDone()
				// c ends the number and is read again after it.
			}

		case stAfter:
			switch c {
			case ' ', '\t', '\n', '\r':
			case ',':
				s.st = stKey
			case '}':
				s.close(r)
			default:
				s.st = stBroken
				continue
			}
			i++

		case stString, stNestedString:
			// The bulk of an answer is text in strings: find its end with
			// IndexByte rather than byte by byte. The quote found is
			// remembered (quote), so that a string of many escapes is not
			// searched again to its end at each one.
			if quote < i {
				quote = len(p)
				if q := bytes.IndexByte(p[i:], '"'); q >= 0 {
					quote = i + q
				}
			}
			if e := bytes.IndexByte(p[i:quote], '\\'); e >= 0 {
				i += e + 1
				if s.st == stString {
					s.st = stStringEscape
				} else {
					s.st = stNestedEscape
				}
				continue
			}
			if quote == len(p) {
				return
			}
			i = quote + 1
			if s.st == stString {
				s.valueDone()
			} else {
				s.st = stNested
			}

		case stStringEscape:
			s.st = stString
			i++

		case stNestedEscape:
			s.st = stNestedString
			i++

		case stNested:
			for i < len(p) && !structural[p[i]] {
				i++
			}
			if i == len(p) {
				return
			}
			switch p[i] {
			case '"':
				s.st = stNestedString
			case '{', '[':
				s.skip++
			default:
				s.skip--
				if s.skip == 0 {
					s.valueDone()
				}
			}
			i++

		case stScalar:
			switch c {
			case ' ', '\t', '\n', '\r', ',', '}', ']', '{', '[', '"':
				s.valueDone()
				// c ends the literal and is read again after it.
			default:
				i++
			}

		case stBroken:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				return
			}
			i += j + 1
			s.depth = 0
			s.st = stValue
		}
	}
}

// structural marks the bytes a skipped container's end depends on.
var structural = [256]bool{'"': true, '{': true, '}': true, '[': true, ']': true}

// startSkip starts skipping a value whose first byte c was.
func (s *scanner) startSkip(c byte) {
	switch c {
	case '"':
		s.st = stString
	case '[', '{':
		s.skip = 1
		s.st = stNested
	case '}', ']':
		if s.depth == 0 {
			return // stray at the top level: nothing to follow
		}
		s.st = stBroken
	default:
		s.st = stScalar
	}
}

// valueDone ends a value: the member's, or a top-level one.
func (s *scanner) valueDone() {
	if s.depth == 0 {
		s.st = stValue
	} else {
		s.st = stAfter
	}
}

// open enters a tracked object.
func (s *scanner) open(k kind) {
	s.kinds[s.depth] = k
	s.depth++
	s.st = stKey
}

// close leaves the innermost tracked object; closing a top-level one hands
// its figures to r.
func (s *scanner) close(r *Reader) {
	s.depth--
	if s.depth == 0 {
		r.commit(&s.c)
	}
	s.valueDone()
}

// child is the tracked object a member's object value is, if any: usage and
// response at the top level, usage in response.
func (s *scanner) child() (kind, bool) {
	if s.keyLen > maxKey {
		return 0, false
	}
	switch s.kinds[s.depth-1] {
	case kindTop:
		switch string(s.key[:s.keyLen]) {
		case "usage":
			return kindUsage, true
		case "response":
			return kindResponse, true
		}
	case kindResponse:
		if string(s.key[:s.keyLen]) == "usage" {
			return kindUsage, true
		}
	}
	return 0, false
}

// figureOf is the figure the member just named holds, in the object it is
// in.
func (s *scanner) figureOf() figure {
	if s.keyLen > maxKey {
		return figNone
	}
	switch s.kinds[s.depth-1] {
	case kindTop:
		switch string(s.key[:s.keyLen]) {
		case "prompt_eval_count":
			return figOllamaPromptEval
		case "eval_count":
			return figOllamaEval
		}
	case kindUsage:
		switch string(s.key[:s.keyLen]) {
		case "total_tokens":
			return figTotal
		case "prompt_tokens":
			return figPrompt
		case "completion_tokens":
			return figCompletion
		case "input_tokens":
			return figInput
		case "output_tokens":
			return figOutput
		}
	}
	return figNone
}
