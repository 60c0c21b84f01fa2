package keyauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

type bodyKind uint8

const (
	bodyOther bodyKind = iota
	bodyForm
	bodyJSON
	bodyMultipart
)

// body is a request body read for its key. Only bodies of the three kinds
// searched, and no larger than the limit, are read; the request keeps every
// byte it had, for the upstream.
type body struct {
	kind     bodyKind
	boundary string
	data     []byte
	valid    bool // a JSON body that parsed; others are checked on lookup
}

// replayBody gives the upstream the bytes read for the search followed by
// the rest of the original body, which it still closes.
type replayBody struct {
	io.Reader
	io.Closer
}

func bodyKindOf(contentType string) (bodyKind, string) {
	if contentType == "" {
		return bodyOther, ""
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return bodyOther, ""
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		return bodyForm, ""
	case "application/json":
		return bodyJSON, ""
	case "multipart/form-data":
		if b := params["boundary"]; validBoundary(b) {
			return bodyMultipart, b
		}
	}
	return bodyOther, ""
}

// validBoundary reports whether a multipart boundary follows RFC 2046, as
// multipart.Writer.SetBoundary requires. Go's reader accepts more, but a
// body that could be searched and then not re-encoded without its key
// would fail; such a body is of no kind searched.
func validBoundary(b string) bool {
	if len(b) < 1 || len(b) > 70 || b[len(b)-1] == ' ' {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' {
			continue
		}
		switch c {
		case '\'', '(', ')', '+', '_', ',', '-', '.', '/', ':', '=', '?', ' ':
			continue
		}
		return false
	}
	return true
}

// readBody reads the body once, up to the limit. A larger body is not
// searched and streams on untouched.
func (q *request) readBody(h *Handler) (*body, *failure) {
	if q.body != nil {
		return q.body, nil
	}
	b := &body{}
	q.body = b
	r := q.r
	if r.Body == nil || r.Body == http.NoBody {
		return b, nil
	}
	kind, boundary := bodyKindOf(r.Header.Get("Content-Type"))
	if kind == bodyOther || r.ContentLength > h.maxBody {
		return b, nil
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, h.maxBody+1))
	if err != nil {
		// What was read is gone, so the request cannot go on intact.
		return nil, bodyReadFailure(r, err)
	}
	if int64(len(data)) > h.maxBody {
		r.Body = &replayBody{io.MultiReader(bytes.NewReader(data), r.Body), r.Body}
		return b, nil
	}
	r.Body = &replayBody{bytes.NewReader(data), r.Body}
	b.kind, b.boundary, b.data = kind, boundary, data
	b.valid = kind != bodyJSON || json.Valid(data)
	return b, nil
}

// bodyReadFailure tells why a body could not be read: a limit (413), the
// server's read timeout (408: read_body, or read_body_idle through Caddy's
// idle reader, both end in a deadline error), a client that went away
// (499, which nobody reads), or a body that is malformed (400).
func bodyReadFailure(r *http.Request, err error) *failure {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return errBodyTooLarge
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return errBodyTimeout
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || r.Context().Err() != nil {
		return errClientGone
	}
	return errBodyRead
}

// lookup finds name in the body. It returns the first value and how many
// values there are; a JSON array or object counts as many. An unparsable
// body holds no key.
func (b *body) lookup(name string) (string, int) {
	if !b.valid {
		return "", 0
	}
	switch b.kind {
	case bodyForm:
		return lookupParam(unsafe.String(unsafe.SliceData(b.data), len(b.data)), name)
	case bodyJSON:
		return jsonLookup(b.data, name)
	case bodyMultipart:
		return multipartLookup(b.data, b.boundary, name)
	}
	return "", 0
}

// remove takes every value of name out of the body, re-encoded in its own
// content type, and gives the request the new body and length.
func (b *body) remove(r *http.Request, name string) error {
	if !b.valid {
		return nil
	}
	var out []byte
	switch b.kind {
	case bodyForm:
		s, ok := removeParam(string(b.data), name)
		if !ok {
			return nil
		}
		out = []byte(s)
	case bodyJSON:
		var ok bool
		if !jsonHas(b.data, name) {
			return nil // the usual case, for all names but the one used
		}
		if out, ok = jsonRemove(b.data, name); !ok {
			return nil
		}
	case bodyMultipart:
		var err error
		var ok bool
		if _, n := multipartLookup(b.data, b.boundary, name); n == 0 {
			return nil // saves re-encoding a body that holds no such field
		}
		if out, ok, err = multipartRemove(b.data, b.boundary, name); err != nil || !ok {
			return err
		}
	default:
		return nil
	}
	b.data = out
	r.Body = &replayBody{bytes.NewReader(out), r.Body.(*replayBody).Closer}
	r.ContentLength = int64(len(out))
	r.TransferEncoding = nil
	r.Header["Content-Length"] = []string{strconv.Itoa(len(out))}
	return nil
}

// jsonMember is a member of a top-level JSON object: the name starts at
// start, the value runs from value to end.
type jsonMember struct {
	start, value, end int
	name              []byte // raw, still escaped
}

// jsonMembers lists the members of a top-level object; data is valid JSON.
func jsonMembers(data []byte, visit func(m jsonMember) bool) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	for i < len(data) && data[i] != '}' {
		start := i
		nameEnd := skipString(data, i)
		i = skipSpace(data, nameEnd) + 1 // past ':'
		value := skipSpace(data, i)
		end := skipValue(data, value)
		if !visit(jsonMember{start: start, value: value, end: end, name: data[start+1 : nameEnd-1]}) {
			return true
		}
		i = skipSpace(data, end)
		if i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return true
}

func jsonNameIs(raw []byte, name string) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == name
	}
	var s string
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	return json.Unmarshal(quoted, &s) == nil && s == name
}

// jsonLookup finds a string member; an array or object is a duplicate, a
// number, boolean or null is absent.
func jsonLookup(data []byte, name string) (string, int) {
	var v string
	n := 0
	jsonMembers(data, func(m jsonMember) bool {
		if !jsonNameIs(m.name, name) {
			return true
		}
		switch data[m.value] {
		case '"':
			if n == 0 {
				_ = json.Unmarshal(data[m.value:m.end], &v)
			}
			n++
		case '[', '{':
			n += 2
		}
		return true
	})
	return v, n
}

// jsonHas reports whether a member is named name, whatever its value.
func jsonHas(data []byte, name string) bool {
	found := false
	jsonMembers(data, func(m jsonMember) bool {
		found = jsonNameIs(m.name, name)
		return !found
	})
	return found
}

// jsonRemove drops the members named name, keeping every other byte.
func jsonRemove(data []byte, name string) ([]byte, bool) {
	var members []jsonMember
	removed := false
	jsonMembers(data, func(m jsonMember) bool {
		if jsonNameIs(m.name, name) {
			m.name = nil // marks it removed
			removed = true
		}
		members = append(members, m)
		return true
	})
	if !removed {
		return data, false
	}
	out := append([]byte(nil), data[:members[0].start]...)
	first := true
	for i, m := range members {
		if m.name == nil {
			continue
		}
		if !first {
			out = append(out, data[members[i-1].end:m.start]...) // the ',' and the space around it
		}
		out = append(out, data[m.start:m.end]...)
		first = false
	}
	return append(out, data[members[len(members)-1].end:]...), true
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index after the string starting at i.
func skipString(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(data)
}

// skipValue returns the index after the value starting at i. It keeps no
// stack, so nesting depth costs nothing.
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return i
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				j = skipString(data, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(data)
	}
	for j := i; j < len(data); j++ {
		switch data[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j
		}
	}
	return len(data)
}

// multipartLookup finds a form field (not a file) in a multipart body. A
// body that does not parse to its closing boundary holds no key. It never
// touches the disk.
func multipartLookup(data []byte, boundary, name string) (string, int) {
	var v string
	n := 0
	mr := multipart.NewReader(bytes.NewReader(data), boundary)
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return v, n
		}
		if err != nil {
			return "", 0
		}
		if p.FileName() != "" || p.FormName() != name {
			if _, err := io.Copy(io.Discard, p); err != nil {
				return "", 0
			}
			continue
		}
		val, err := io.ReadAll(p)
		if err != nil {
			return "", 0
		}
		if n == 0 {
			v = string(val)
		}
		n++
	}
}

// multipartRemove re-encodes the body without the fields named name, with
// the same boundary so the Content-Type still holds.
func multipartRemove(data []byte, boundary, name string) ([]byte, bool, error) {
	var out bytes.Buffer
	out.Grow(len(data))
	mw := multipart.NewWriter(&out)
	if err := mw.SetBoundary(boundary); err != nil {
		return nil, false, err
	}
	removed := false
	mr := multipart.NewReader(bytes.NewReader(data), boundary)
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			// An unparsable body holds no key (see multipartLookup), so
			// there is nothing to remove: it goes on as it came.
			return data, false, nil
		}
		if p.FileName() == "" && p.FormName() == name {
			removed = true
			continue
		}
		w, err := mw.CreatePart(p.Header)
		if err != nil {
			return nil, false, err
		}
		if _, err := io.Copy(w, p); err != nil {
			return data, false, nil // out never fails: the part is cut short
		}
	}
	if !removed {
		return data, false, nil
	}
	if err := mw.Close(); err != nil {
		return nil, false, err
	}
	return out.Bytes(), true, nil
}
