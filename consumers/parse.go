package consumers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxKeyLength is the longest key a consumers document may hold and the
// longest a request may present; a longer one is refused before it is hashed.
const MaxKeyLength = 4096

// SyntaxError is a consumers document that is not the JSON it should be. It
// gives a position and never quotes the document, which holds keys.
type SyntaxError struct {
	Line, Column int
	Msg          string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// Parse checks a consumers document and builds its Set. Its errors name the
// consumer and the credential at fault, never a key.
//
// It reads the document twice: the first pass checks it and counts what the
// Set needs, the second fills arrays of exactly that size, so a large document
// leaves no slack behind and needs no copy at the end.
func Parse(doc []byte) (*Set, error) { return parse(doc, nil) }

// parse is Parse telling release, as it goes, which stretches of the
// document it is done with in the current pass, so a caller holding the
// document in a mapped file can let those pages go.
func parse(doc []byte, release func(from, to int)) (*Set, error) {
	var b builder
	if err := (&parser{data: doc, b: &b, release: release}).document(); err != nil {
		return nil, err
	}
	if err := b.startFill(); err != nil {
		return nil, err
	}
	if err := (&parser{data: doc, b: &b, release: release}).document(); err != nil {
		return nil, err
	}
	return b.finish(), nil
}

// releaseEvery is how much of the document the parser moves through
// between two calls of its release function.
const releaseEvery = 8 << 20

type span struct{ start, end int }

type credentialDraft struct {
	id, key, hash, expiry  span
	hasID, hasKey, hasHash bool
	hasExpiry              bool
	disabled, canary       bool
}

type labelDraft struct{ name, value span }

type consumerDraft struct {
	index, at              int // at: where the consumer starts in the document
	username, id, customID span
	hasUsername, hasID     bool
	disabled               bool
	tags                   []span
	groups                 []span
	labels                 []labelDraft // sorted by name once checked
	credentials            []credentialDraft
	buf                    []byte // the decoded strings the spans point into
	order                  []span // scratch: the groups sorted, to find a duplicate
}

func (d *consumerDraft) reset(index, at int) {
	*d = consumerDraft{index: index, at: at, tags: d.tags[:0], groups: d.groups[:0], labels: d.labels[:0],
		credentials: d.credentials[:0], buf: d.buf[:0], order: d.order[:0]}
}

// hasExtra reports whether the consumer needs a record in the side table of
// groups, labels and flags.
func (d *consumerDraft) hasExtra() bool {
	return len(d.groups) > 0 || len(d.labels) > 0 || d.disabled
}

func (d *consumerDraft) s(sp span) []byte { return d.buf[sp.start:sp.end] }

// name is how errors refer to the consumer.
func (d *consumerDraft) name() string {
	if d.hasUsername && d.username.end > d.username.start {
		return fmt.Sprintf("consumer %q", d.s(d.username))
	}
	return fmt.Sprintf("consumer #%d", d.index+1)
}

// credName is how errors refer to a credential: by its id, else by position.
func (d *consumerDraft) credName(i int) string {
	if c := &d.credentials[i]; c.hasID {
		return fmt.Sprintf("%s, credential %q", d.name(), d.s(c.id))
	}
	return fmt.Sprintf("%s, key #%d", d.name(), i+1)
}

// label names a part of the document in errors. It is built only when an
// error needs it: formatting it for every consumer would double the work of
// parsing a large document.
type label struct {
	fixed         string
	consumer, key int // 1-based; 0 when not about a consumer or key
}

func (l label) String() string {
	switch {
	case l.key > 0:
		return fmt.Sprintf("key #%d of consumer #%d", l.key, l.consumer)
	case l.consumer > 0:
		return fmt.Sprintf("consumer #%d", l.consumer)
	}
	return l.fixed
}

func fixed(s string) label { return label{fixed: s} }

type parser struct {
	data    []byte
	pos     int
	b       *builder
	draft   consumerDraft
	scratch []byte

	release  func(from, to int)
	released int
}

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

func (p *parser) keep(s []byte) span {
	start := len(p.draft.buf)
	p.draft.buf = append(p.draft.buf, s...)
	return span{start, len(p.draft.buf)}
}

func (p *parser) document() error {
	seen := false
	err := p.object(fixed("the document"), func(name []byte, at int) error {
		if string(name) != "consumers" {
			return p.errAt(at, `unknown field in the document (it holds "consumers")`)
		}
		if seen {
			return p.errAt(at, `"consumers" given twice`)
		}
		seen = true
		if p.null() {
			// A generator's nil list would otherwise wipe every consumer.
			return p.errAt(at, `"consumers" is null; an empty list is []`)
		}
		return p.array(fixed(`"consumers"`), p.consumer)
	})
	if err != nil {
		return err
	}
	if !seen {
		return p.errAt(0, `the document has no "consumers" field`)
	}
	if p.peek() != 0 {
		return p.errAt(p.pos, "unexpected data after the document")
	}
	return nil
}

func (p *parser) consumer(index int) error {
	d := &p.draft
	d.reset(index, p.pos)
	err := p.fields(label{consumer: index + 1}, consumerFields, func(field int) error {
		var err error
		switch field {
		case 0:
			d.hasUsername, err = p.optStr(fixed("username"), &d.username)
		case 1:
			d.hasID, err = p.optStr(fixed("id"), &d.id)
		case 2:
			_, err = p.optStr(fixed("custom_id"), &d.customID)
		case 3:
			err = p.array(fixed("tags"), func(int) error {
				s, err := p.str(fixed("a tag"))
				if err == nil {
					d.tags = append(d.tags, p.keep(s))
				}
				return err
			})
		case 4:
			err = p.array(fixed("keys"), p.credential)
		case 5:
			err = p.array(fixed("groups"), func(int) error {
				s, err := p.str(fixed("a group"))
				if err == nil {
					d.groups = append(d.groups, p.keep(s))
				}
				return err
			})
		case 6:
			err = p.labels()
		case 7:
			err = p.optBool("disabled", &d.disabled)
		}
		return err
	})
	if err != nil {
		return err
	}
	err = p.check()
	if err == nil {
		err = p.b.add(d)
	}
	if err != nil {
		return fmt.Errorf("line %d: %w", p.lineOf(d.at), err)
	}
	if p.release != nil && p.pos-p.released >= releaseEvery {
		p.release(p.released, p.pos)
		p.released = p.pos
	}
	return nil
}

func (p *parser) credential(int) error {
	d := &p.draft
	d.credentials = append(d.credentials, credentialDraft{})
	c := &d.credentials[len(d.credentials)-1]
	return p.fields(label{consumer: d.index + 1, key: len(d.credentials)}, credentialFields, func(field int) error {
		var err error
		switch field {
		case 0:
			c.hasID, err = p.optStr(fixed("id"), &c.id)
		case 1:
			c.hasKey, err = p.optStr(fixed("key"), &c.key)
		case 2:
			c.hasHash, err = p.optStr(fixed("hash"), &c.hash)
		case 3:
			c.hasExpiry, err = p.optStr(fixed("expires_at"), &c.expiry)
		case 4:
			err = p.optBool("disabled", &c.disabled)
		case 5:
			err = p.optBool("canary", &c.canary)
		}
		return err
	})
}

// labels reads a consumer's labels: an object of strings, or null for none.
// Their names and values are checked with the consumer, so that the error
// names it.
func (p *parser) labels() error {
	if p.null() {
		return nil
	}
	d := &p.draft
	return p.object(fixed("labels"), func(name []byte, _ int) error {
		l := labelDraft{name: p.keep(name)} // kept before str reuses its buffer
		v, err := p.str(fixed("a label value"))
		if err != nil {
			return err
		}
		l.value = p.keep(v)
		d.labels = append(d.labels, l)
		return nil
	})
}

// The fields of a consumer and of a credential, in the order their parse
// functions number them.
var (
	consumerFields   = []string{"username", "id", "custom_id", "tags", "keys", "groups", "labels", "disabled"}
	credentialFields = []string{"id", "key", "hash", "expires_at", "disabled", "canary"}
)

// fields walks an object whose members must be among names, each at most
// once, and has parse read the value of each, by its index in names.
func (p *parser) fields(what label, names []string, parse func(field int) error) error {
	var seen [16]bool
	return p.object(what, func(name []byte, at int) error {
		field := -1
		for i, n := range names {
			if string(name) == n { // compares in place, without a copy
				field = i
				break
			}
		}
		if field < 0 {
			// The name is not quoted: a broken document may have a key there.
			return p.errAt(at, "unknown field in %s (fields: %s)", what, strings.Join(names, ", "))
		}
		if seen[field] {
			return p.errAt(at, "field %s given twice in %s", name, what)
		}
		seen[field] = true
		return parse(field)
	})
}

// check applies the rules a consumer must follow on its own; the builder
// checks those that span consumers.
func (p *parser) check() error {
	d := &p.draft
	if !d.hasUsername || len(d.s(d.username)) == 0 {
		return fmt.Errorf("%s has no username", d.name())
	}
	if d.hasID && len(d.s(d.id)) == 0 {
		return fmt.Errorf("%s has an empty id", d.name())
	}
	for i := range d.credentials {
		c := &d.credentials[i]
		switch {
		case c.hasID && c.id.start == c.id.end:
			return fmt.Errorf("%s has an empty id", d.credName(i))
		case c.hasKey && c.hasHash:
			return fmt.Errorf("%s has both key and hash", d.credName(i))
		case !c.hasKey && !c.hasHash:
			return fmt.Errorf("%s has neither key nor hash", d.credName(i))
		case c.hasKey && c.key.start == c.key.end:
			return fmt.Errorf("%s has an empty key", d.credName(i))
		case c.hasKey && c.key.end-c.key.start > MaxKeyLength:
			return fmt.Errorf("%s has a key longer than %d bytes", d.credName(i), MaxKeyLength)
		case c.hasKey && keyFault(d.s(c.key)) != nil:
			return fmt.Errorf("%s: %w", d.keyName(i), keyFault(d.s(c.key)))
		case c.hasHash && !validHash(d.s(c.hash)):
			return fmt.Errorf(`%s has a malformed hash (want "sha256:" and 64 hex digits)`, d.credName(i))
		}
		if c.hasExpiry {
			if _, err := time.Parse(time.RFC3339, string(d.s(c.expiry))); err != nil {
				return fmt.Errorf("%s has an expires_at that is not an RFC 3339 time", d.credName(i))
			}
		}
	}
	if err := d.checkTags(); err != nil {
		return err
	}
	if err := d.checkGroups(); err != nil {
		return err
	}
	return d.checkLabels()
}

// Limits of groups and labels, as the authorization rules of APISIX and Kong
// need them: a group name travels in a comma-separated header, a label value
// in a header or an upstream address.
const (
	MaxGroupNameChars  = 128  // characters (Unicode code points) of a group name
	MaxLabelNameLength = 64   // bytes (all ASCII) of a label name
	MaxLabelValueBytes = 1024 // bytes of a label value's UTF-8
)

func (d *consumerDraft) checkGroups() error {
	for i, g := range d.groups {
		name := d.s(g)
		switch n := utf8.RuneCount(name); {
		case n == 0:
			return fmt.Errorf("%s: group #%d is empty", d.name(), i+1)
		case n > MaxGroupNameChars:
			return fmt.Errorf("%s: group #%d is longer than %d characters", d.name(), i+1, MaxGroupNameChars)
		}
		if !validGroupName(name) {
			return fmt.Errorf("%s: group %q holds white space, a comma or a control character", d.name(), name)
		}
	}
	if len(d.groups) <= 8 { // the usual few: compared pairwise, cheaper than sorting
		for i := 1; i < len(d.groups); i++ {
			for _, o := range d.groups[:i] {
				if bytes.Equal(d.s(o), d.s(d.groups[i])) {
					return fmt.Errorf("%s lists group %q twice", d.name(), d.s(o))
				}
			}
		}
		return nil
	}
	// Sorted, a duplicate is next to its twin: no quadratic scan of a long
	// list, and no allocation once the scratch slice has grown.
	d.order = append(d.order[:0], d.groups...)
	slices.SortFunc(d.order, func(a, b span) int { return bytes.Compare(d.s(a), d.s(b)) })
	for i := 1; i < len(d.order); i++ {
		if bytes.Equal(d.s(d.order[i-1]), d.s(d.order[i])) {
			return fmt.Errorf("%s lists group %q twice", d.name(), d.s(d.order[i]))
		}
	}
	return nil
}

// keyName is how a key's errors refer to its credential: by its id, or by
// its position and the id derived from it, so an operator can find it
// without the error quoting the key.
func (d *consumerDraft) keyName(i int) string {
	if d.credentials[i].hasID {
		return d.credName(i)
	}
	return fmt.Sprintf("%s (credential %q)", d.credName(i), d.credentialID(nil, i))
}

// ValidateKey checks that a key can be sent as it is stored: not empty, not
// blank, no whitespace at either end and no control character anywhere.
// Header values are trimmed and a "+" in a query is a space, so a key with
// an edge of whitespace could only ever match by accident. Whitespace is
// Unicode's (unicode.IsSpace: also NBSP and the other Unicode spaces, which
// look like nothing in a terminal and which copy and paste tends to add or
// drop); control characters are C0, DEL and C1 (unicode.IsControl), which
// HTTP cannot carry in a header. Its errors never quote the key. Consumers
// documents are checked with it, and so should be any tool that writes keys.
func ValidateKey(key string) error { return keyFault([]byte(key)) }

func keyFault(k []byte) error {
	if len(k) == 0 {
		return errors.New("the key is empty")
	}
	first, _ := utf8.DecodeRune(k)
	last, _ := utf8.DecodeLastRune(k)
	switch {
	case unicode.IsSpace(first) && bytes.IndexFunc(k, func(r rune) bool { return !unicode.IsSpace(r) }) < 0:
		return errors.New("the key is blank (only whitespace)")
	case unicode.IsSpace(first):
		return errors.New("the key begins with whitespace")
	case unicode.IsSpace(last):
		return errors.New("the key ends with whitespace")
	}
	// Every key of a large document passes here, twice: ASCII is checked
	// byte by byte, without decoding.
	for i := 0; i < len(k); {
		if c := k[i]; c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return errors.New("the key contains a control character")
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(k[i:])
		if unicode.IsControl(r) {
			return errors.New("the key contains a control character")
		}
		i += n
	}
	return nil
}

// validGroupName reports whether a group name holds no white space, comma or
// control character (Unicode's categories, so no NEL or no-break space
// either).
func validGroupName(name []byte) bool {
	for i := 0; i < len(name); {
		c := name[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == ',' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(name[i:])
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
		i += size
	}
	return true
}

func (d *consumerDraft) checkLabels() error {
	for i, l := range d.labels {
		name := d.s(l.name)
		if !validLabelName(name) {
			if len(name) == 0 || len(name) > MaxLabelNameLength {
				return fmt.Errorf("%s: the name of label #%d is not 1 to %d letters, digits, '_', '-' or '.'",
					d.name(), i+1, MaxLabelNameLength)
			}
			return fmt.Errorf("%s: label name %q is not 1 to %d letters, digits, '_', '-' or '.'",
				d.name(), name, MaxLabelNameLength)
		}
		// A value is not quoted: it may be an address or a token.
		v := d.s(l.value)
		if len(v) > MaxLabelValueBytes {
			return fmt.Errorf("%s: label %q has a value longer than %d bytes", d.name(), name, MaxLabelValueBytes)
		}
		if hasControl(v) {
			return fmt.Errorf("%s: label %q has a control character in its value", d.name(), name)
		}
	}
	if len(d.labels) < 2 {
		return nil
	}
	// Sorted by name, as the Set keeps them for its binary search.
	slices.SortFunc(d.labels, func(a, b labelDraft) int { return bytes.Compare(d.s(a.name), d.s(b.name)) })
	for i := 1; i < len(d.labels); i++ {
		if bytes.Equal(d.s(d.labels[i-1].name), d.s(d.labels[i].name)) {
			return fmt.Errorf("%s has label %q twice", d.name(), d.s(d.labels[i].name))
		}
	}
	return nil
}

func validLabelName(name []byte) bool {
	if len(name) == 0 || len(name) > MaxLabelNameLength {
		return false
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// hasControl reports whether v holds a control character: C0, DEL or C1.
func hasControl(v []byte) bool {
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			if c < ' ' || c == 0x7f {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(v[i:])
		if unicode.IsControl(r) {
			return true
		}
		i += size
	}
	return false
}

const hashPrefix = "sha256:"

func validHash(h []byte) bool {
	if len(h) != len(hashPrefix)+64 || string(h[:len(hashPrefix)]) != hashPrefix {
		return false
	}
	for _, c := range h[len(hashPrefix):] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// digest is the credential's key digest: hashed from the key, or decoded
// from the hash.
func (d *consumerDraft) digest(c *credentialDraft) Digest {
	if c.hasKey {
		return sha256.Sum256(d.s(c.key))
	}
	var dg Digest
	_, _ = hex.Decode(dg[:], d.s(c.hash)[len(hashPrefix):])
	return dg
}

// expires is the credential's expiry in unix nanoseconds, 0 for never.
func (d *consumerDraft) expires(c *credentialDraft) int64 {
	if !c.hasExpiry {
		return 0
	}
	t, _ := time.Parse(time.RFC3339, string(d.s(c.expiry)))
	// UnixNano is undefined outside the years 1678 to 2262: a later expiry
	// (such as 9999-12-31, for never) must not wrap around into the past.
	switch {
	case t.After(maxExpiry):
		return math.MaxInt64
	case t.Before(minExpiry):
		return math.MinInt64
	}
	if n := t.UnixNano(); n != 0 {
		return n
	}
	return -1 // the epoch itself, which 0 cannot say
}

var minExpiry, maxExpiry = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

// credentialID is the credential's id: its own, or one derived from the
// consumer's id and the credential's position, never from the key.
func (d *consumerDraft) credentialID(dst []byte, i int) []byte {
	if c := &d.credentials[i]; c.hasID {
		return append(dst, d.s(c.id)...)
	}
	dst = append(dst, d.consumerID()...)
	dst = append(dst, '#')
	return strconv.AppendInt(dst, int64(i+1), 10)
}

func (d *consumerDraft) consumerID() []byte {
	if d.hasID {
		return d.s(d.id)
	}
	return d.s(d.username)
}
