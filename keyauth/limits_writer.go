package keyauth

import (
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keyauth/caddy-keyauth/keyauth/usage"
)

// settleWriter passes an answer on to the client and reads its token usage
// as it goes by (package usage), never holding the body. It keeps what the
// client's writer does: flushing and hijacking through Unwrap (http.
// ResponseController, which reverse_proxy uses for both), io.ReaderFrom
// through caddyhttp.ResponseWriterWrapper.
type settleWriter struct {
	caddyhttp.ResponseWriterWrapper
	status  int  // the answer's status, once written
	reading bool // the answer's body is read for usage
	reader  usage.Reader
}

// WriteHeader notes the status and whether the body can tell its usage: it
// has a JSON or event-stream type and is not compressed (an encode handler
// after key_auth compresses what passes here).
func (w *settleWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
		hdr := w.Header()
		enc := hdr.Get("Content-Encoding")
		if enc == "" || enc == "identity" {
			w.reading = w.reader.Reset(hdr.Get("Content-Type"))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *settleWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	if w.reading {
		_, _ = w.reader.Write(p[:n])
	}
	return n, err
}

// ReadFrom reads the body through Write when it is read for usage (the
// client's writer would copy it past this one); otherwise it leaves the
// copy to the client's writer, sendfile and all.
func (w *settleWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.reading {
		return io.Copy(writerOnly{w}, r)
	}
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// writerOnly hides ReadFrom, so that io.Copy writes through Write.
type writerOnly struct{ io.Writer }

var (
	_ http.ResponseWriter = (*settleWriter)(nil)
	_ io.ReaderFrom       = (*settleWriter)(nil)
)
