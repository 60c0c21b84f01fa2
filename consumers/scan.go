package consumers

import (
	"bytes"
	"fmt"
	"math"
	"unicode/utf16"
	"unicode/utf8"
)

// SyntaxError is a consumers document that is not the JSON it should be. It
// gives a position and never quotes the document, which holds keys.
type SyntaxError struct {
	Line, Column int
	Msg          string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// label names a part of the document in errors. It is built only when an
// error needs it: formatting it for every consumer would double the work of
// parsing a large document.
type label struct {
	fixed                   string
	consumer, key, previous int // 1-based; 0 when not about a consumer, key or previous secret
}

func (l label) String() string {
	switch {
	case l.previous > 0:
		return fmt.Sprintf("previous secret #%d of key #%d of consumer #%d", l.previous, l.key, l.consumer)
	case l.key > 0:
		return fmt.Sprintf("key #%d of consumer #%d", l.key, l.consumer)
	case l.consumer > 0:
		return fmt.Sprintf("consumer #%d", l.consumer)
	}
	return l.fixed
}

func fixed(s string) label { return label{fixed: s} }

func (p *parser) errAt(pos int, format string, args ...any) error {
	line, col := 1, 1
	for _, c := range p.data[:min(pos, len(p.data))] {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return &SyntaxError{Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) lineOf(pos int) int { return bytes.Count(p.data[:pos], []byte{'\n'}) + 1 }

func (p *parser) ws() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, or 0 at the end.
func (p *parser) peek() byte {
	p.ws()
	if p.pos >= len(p.data) {
		return 0
	}
	return p.data[p.pos]
}

func (p *parser) expect(c byte, what label) error {
	if p.peek() != c {
		if p.pos >= len(p.data) {
			return p.errAt(p.pos, "unexpected end of document, expected %s", what)
		}
		return p.errAt(p.pos, "expected %s", what)
	}
	p.pos++
	return nil
}

// null consumes a JSON null if one comes next.
func (p *parser) null() bool {
	if p.peek() == 'n' && bytes.HasPrefix(p.data[p.pos:], []byte("null")) {
		p.pos += 4
		return true
	}
	return false
}

// object walks the members of an object; field is called with the member's
// name, positioned at its value.
func (p *parser) object(what label, field func(name []byte, at int) error) error {
	if p.peek() != '{' { // checked first: the message is built only for an error
		return p.expect('{', fixed(what.String()+" (an object)"))
	}
	p.pos++
	if p.peek() == '}' {
		p.pos++
		return nil
	}
	for {
		p.ws()
		at := p.pos // the field name, for errors about the field
		name, err := p.str(fixed("a field name"))
		if err != nil {
			return err
		}
		if err := p.expect(':', fixed("':' after a field name")); err != nil {
			return err
		}
		p.ws()
		if err := field(name, at); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return nil
		default:
			return p.expect('}', fixed("',' or '}' in "+what.String()))
		}
	}
}

// array walks the elements of an array; null counts as an empty one.
func (p *parser) array(what label, elem func(i int) error) error {
	if p.null() {
		return nil
	}
	if p.peek() != '[' {
		return p.expect('[', fixed(what.String()+" (an array)"))
	}
	p.pos++
	if p.peek() == ']' {
		p.pos++
		return nil
	}
	for i := 0; ; i++ {
		p.ws()
		if err := elem(i); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return nil
		default:
			return p.expect(']', fixed("',' or ']' in "+what.String()))
		}
	}
}

// str reads a string. The bytes it returns are valid until the next call.
func (p *parser) str(what label) ([]byte, error) {
	if p.peek() != '"' {
		return nil, p.expect('"', fixed(what.String()+" (a string)"))
	}
	p.pos++
	start := p.pos
	for i := start; i < len(p.data); i++ {
		switch c := p.data[i]; {
		case c == '"':
			p.pos = i + 1
			return p.data[start:i], nil
		case c == '\\' || c >= utf8.RuneSelf:
			return p.strSlow(start)
		case c < 0x20:
			return nil, p.errAt(i, "control character in string")
		}
	}
	return nil, p.errAt(len(p.data), "unexpected end of document in a string")
}

func (p *parser) strSlow(start int) ([]byte, error) {
	out := append(p.scratch[:0], p.data[start:p.pos]...)
	i := start
	for i < len(p.data) {
		c := p.data[i]
		switch {
		case c == '"':
			p.pos = i + 1
			p.scratch = out
			return out, nil
		case c < 0x20:
			return nil, p.errAt(i, "control character in string")
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(p.data[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, p.errAt(i, "invalid UTF-8 in string")
			}
			out = append(out, p.data[i:i+size]...)
			i += size
		case c != '\\':
			out = append(out, c)
			i++
		default:
			if i+1 >= len(p.data) {
				return nil, p.errAt(i, "unexpected end of document in a string")
			}
			esc := p.data[i+1]
			i += 2
			switch esc {
			case '"', '\\', '/':
				out = append(out, esc)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := p.hex4(i)
				if !ok {
					return nil, p.errAt(i-2, "invalid \\u escape in string")
				}
				i += 4
				if utf16.IsSurrogate(r) {
					r2, ok := rune(0), false
					if i+1 < len(p.data) && p.data[i] == '\\' && p.data[i+1] == 'u' {
						r2, ok = p.hex4(i + 2)
					}
					if dec := utf16.DecodeRune(r, r2); ok && dec != utf8.RuneError {
						r = dec
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				out = utf8.AppendRune(out, r)
			default:
				return nil, p.errAt(i-2, "invalid escape in string")
			}
		}
	}
	return nil, p.errAt(len(p.data), "unexpected end of document in a string")
}

func (p *parser) hex4(i int) (rune, bool) {
	if i+4 > len(p.data) {
		return 0, false
	}
	var r rune
	for _, c := range p.data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// optBool reads true, false or null (false) into dst.
func (p *parser) optBool(what string, dst *bool) error {
	p.ws()
	for _, lit := range [...]string{"true", "false", "null"} {
		if bytes.HasPrefix(p.data[p.pos:], []byte(lit)) {
			p.pos += len(lit)
			*dst = lit == "true"
			return nil
		}
	}
	if p.pos >= len(p.data) {
		return p.errAt(p.pos, "unexpected end of document, expected %s (true or false)", what)
	}
	return p.errAt(p.pos, "expected %s (true or false)", what)
}

// optStr reads a string or null into the draft; it reports whether a string
// was there.
func (p *parser) optStr(what label, dst *span) (bool, error) {
	if p.null() {
		return false, nil
	}
	s, err := p.str(what)
	if err != nil {
		return false, err
	}
	*dst = p.keep(s)
	return true, nil
}

// keep copies a string into the draft being read (p.out).
func (p *parser) keep(s []byte) span {
	start := len(*p.out)
	*p.out = append(*p.out, s...)
	return span{start, len(*p.out)}
}

// integer reads a JSON number that is an integer: no fraction or exponent,
// within int64.
func (p *parser) integer(what label) (int64, error) {
	p.ws()
	start, i := p.pos, p.pos
	neg := i < len(p.data) && p.data[i] == '-'
	if neg {
		i++
	}
	digits := i
	var n uint64
	for ; i < len(p.data) && '0' <= p.data[i] && p.data[i] <= '9'; i++ {
		if n > (math.MaxUint64-9)/10 {
			n = math.MaxUint64 // out of range whatever follows
			continue
		}
		n = n*10 + uint64(p.data[i]-'0')
	}
	switch {
	case i == digits && p.pos >= len(p.data):
		return 0, p.errAt(p.pos, "unexpected end of document, expected %s (an integer)", what)
	case i == digits:
		return 0, p.errAt(start, "expected %s (an integer)", what)
	case p.data[digits] == '0' && i-digits > 1:
		return 0, p.errAt(start, "invalid number: a leading zero")
	case i < len(p.data) && (p.data[i] == '.' || p.data[i] == 'e' || p.data[i] == 'E'):
		return 0, p.errAt(start, "%s is not an integer", what)
	case !neg && n > math.MaxInt64, neg && n > 1<<63:
		return 0, p.errAt(start, "%s is out of range", what)
	}
	p.pos = i
	if neg {
		return int64(-n), nil
	}
	return int64(n), nil
}
