package manage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxBodySize is the largest request body the API reads: a larger one is
// answered 413, and nothing is written.
const MaxBodySize = 1 << 20

// apiError is an answer other than success: its status and the message of
// its {"message": "..."} body, which names the field at fault and never
// holds a key.
type apiError struct {
	status  int
	message string
}

func (e *apiError) Error() string { return e.message }

func fail(status int, format string, args ...any) *apiError {
	return &apiError{status: status, message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *apiError {
	return fail(http.StatusBadRequest, format, args...)
}

func notFound(username string) *apiError {
	return fail(http.StatusNotFound, "no consumer %q", username)
}

// writeJSON answers status with v as JSON. Answers are never cached: one
// may hold a generated key.
func writeJSON(w http.ResponseWriter, status int, v any) {
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Every answer is made of strings, numbers and booleans.
		status = http.StatusInternalServerError
		b.Reset()
		b.WriteString(`{"message":"encoding the answer failed"}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, struct {
		Message string `json:"message"`
	}{e.message})
}

// readBody reads a JSON request body of at most MaxBodySize bytes; empty is
// allowed where emptyOK.
func readBody(w http.ResponseWriter, r *http.Request, emptyOK bool) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodySize))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, fail(http.StatusRequestEntityTooLarge, "the request body is larger than %d bytes", MaxBodySize)
		}
		return nil, badRequest("reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if emptyOK {
			return nil, nil
		}
		return nil, badRequest("the request body is empty: want a JSON object")
	}
	return body, nil
}

// decodeStrict decodes one JSON object into v, refusing fields v does not
// have. Its errors name the field and never quote a value: a value may be
// a key.
func decodeStrict(body []byte, v any) *apiError {
	if len(body) == 0 {
		return nil
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		if !json.Valid(trimmed) {
			return badRequest("the request body is not valid JSON")
		}
		return badRequest("the request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("the request body holds more than one JSON value")
	}
	return nil
}

// jsonError words a decoding error: the field and what it wants, or where
// the JSON breaks, never a value.
func jsonError(err error) *apiError {
	if e, ok := errors.AsType[*json.SyntaxError](err); ok {
		return badRequest("the request body is not valid JSON (at byte %d)", e.Offset)
	}
	if e, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if e.Field == "" {
			return badRequest("the request body must be a JSON object")
		}
		return badRequest("%s: want %s", e.Field, jsonType(e.Type.String()))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return badRequest("the request body is not valid JSON (it ends early)")
	}
	// encoding/json's unknown-field error: `json: unknown field "x"`.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return badRequest("unknown field %s", name)
	}
	return badRequest("the request body is not valid JSON")
}

// jsonType names a Go type as JSON does.
func jsonType(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["):
		return "an object of strings"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	}
	return "an object"
}
