package sources

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers"
)

func init() {
	caddy.RegisterModule(HTTPSource{})
}

// Defaults of the HTTP source.
const (
	DefaultHTTPRefresh = 30 * time.Second
	DefaultHTTPTimeout = 10 * time.Second
	DefaultHTTPMaxSize = 64 << 20
)

// HTTPSource loads consumers from an HTTP(S) URL and polls it, so a fleet of
// Caddy instances follows one source: add a key once, revoke it once.
//
// The answer has the consumers file's format and passes the same checks.
// Polls are conditional (If-None-Match, If-Modified-Since), so a 304 costs
// almost nothing. Any failure keeps the last good set serving; retries back
// off. Until a first set has loaded (from the source or the cache),
// requests get 503. `caddy validate` and `caddy adapt` never fetch.
//
// Redirects are followed only within the URL's origin (the same scheme, host
// and port), at most MaxHTTPRedirects of them; a redirect anywhere else, an
// https source sent to plain http included, is a failed fetch whose error
// names the status and the other origin. So the headers, the URL's user info
// and the client certificate never reach an origin other than the one
// configured.
type HTTPSource struct {
	// URL of the consumers document, http or https. It may use {env.*}
	// placeholders, filled in when the config loads. Logs and the admin API
	// show it without user info and query. Required.
	URL string `json:"url,omitempty"`

	// Refresh is the poll interval. Default: 30s. 0 fetches once, at start.
	Refresh *caddy.Duration `json:"refresh,omitempty"`

	// Timeout bounds each fetch, a duration (nanoseconds in JSON).
	// Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Header holds the request headers sent with each fetch, e.g. an
	// Authorization header, as in Caddy's HTTP config loader. Values may use
	// {env.*} and {file.*} placeholders, filled in when the config loads.
	// They never appear in logs or in the admin API.
	Header http.Header `json:"header,omitempty"`

	// MaxSize is the largest answer accepted, in bytes (the Caddyfile also
	// takes a size such as 64MB). Default: 64 MiB.
	MaxSize int64 `json:"max_size,omitempty"`

	// Cache is a file where the last good answer is kept. When the source is
	// down at startup, the cached copy serves until the source answers.
	Cache string `json:"cache,omitempty"`

	// TLS configures the connection to an HTTPS source.
	TLS *HTTPSourceTLS `json:"tls,omitempty"`

	Handle
}

// HTTPSourceTLS is the TLS configuration of an HTTP source, as Caddy's HTTP
// config loader has it.
type HTTPSourceTLS struct {
	// UseServerIdentity presents this instance's managed remote identity
	// credentials to the source.
	UseServerIdentity bool `json:"use_server_identity,omitempty"`

	// ClientCertificateFile is a PEM-encoded client certificate to present.
	ClientCertificateFile string `json:"client_certificate_file,omitempty"`

	// ClientCertificateKeyFile is the PEM-encoded key of the client
	// certificate.
	ClientCertificateKeyFile string `json:"client_certificate_key_file,omitempty"`

	// RootCAPEMFiles are PEM-encoded CA certificates to trust instead of the
	// system's roots.
	RootCAPEMFiles []string `json:"root_ca_pem_files,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (HTTPSource) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "key_auth.sources.http",
		New: func() caddy.Module { return new(HTTPSource) },
	}
}

// ResolvedURL is URL with its {env.*} placeholders replaced. It may hold
// credentials: show it through RedactURL.
func (s *HTTPSource) ResolvedURL() string {
	return caddy.NewReplacer().ReplaceKnown(s.URL, "")
}

// Provision joins the store of a source configured the same way, or makes a
// new one, loaded from the cache file if there is one. It never fetches:
// the key_auth app starts polling in a running Caddy. It validates first, so
// that a bad configuration never opens a store.
func (s *HTTPSource) Provision(ctx caddy.Context) error {
	if err := s.Validate(); err != nil {
		return err
	}
	resolvedURL := s.ResolvedURL()
	refresh := DefaultHTTPRefresh
	if s.Refresh != nil {
		refresh = time.Duration(*s.Refresh)
	}
	timeout := DefaultHTTPTimeout
	if s.Timeout != 0 {
		timeout = time.Duration(s.Timeout)
	}
	maxSize := int64(DefaultHTTPMaxSize)
	if s.MaxSize != 0 {
		maxSize = s.MaxSize
	}
	cache := ""
	if s.Cache != "" {
		var err error
		if cache, err = filepath.Abs(s.Cache); err != nil {
			return fmt.Errorf("cache %s: %w", s.Cache, err)
		}
	}
	// The key follows the resolved URL and header values, so a reload after
	// a token rotated in its env variable or file fetches with the new
	// token; the header values go in as a digest, so the key holds no
	// secret.
	headers := resolveHeaders(s.Header)
	canon := *s
	canon.URL, canon.Refresh, canon.Timeout = resolvedURL, durationPtr(refresh), caddy.Duration(timeout)
	canon.MaxSize, canon.Cache, canon.Header = maxSize, cache, nil
	if canon.TLS != nil && reflect.ValueOf(*canon.TLS).IsZero() {
		canon.TLS = nil
	}
	key, err := Key("http", &canon, headerKey(headers))
	if err != nil {
		return err
	}

	logger := ctx.Logger()
	return s.ProvideAt(ctx, key, "http "+sourceLocation(s.URL), func(prev Live) (Live, error) {
		client, err := s.client(ctx, resolvedURL, timeout)
		if err != nil {
			return nil, err
		}
		l := &httpLoader{
			url:      resolvedURL,
			location: RedactURL(resolvedURL),
			maxSize:  maxSize,
			cache:    cache,
			client:   client,
			headers:  headers,
		}
		// The set the source's previous configuration serves is what this
		// instance served a moment ago, fresher than a cached copy: it
		// serves until the first fetch with the new configuration
		// succeeds, so a rotated token the source refuses costs no request
		// a 503 (the refusal is logged and shown in the admin view).
		var initial *consumers.Set
		p, _ := prev.(*Store)
		if p == nil || p.Set() == nil {
			initial = l.loadCache(logger)
		}
		st := newStore(l, httpPolling(refresh), initial, true)
		if initial == nil && p != nil {
			st.Inherit(p)
		}
		l.log = st.Logger
		return st, nil
	})
}

func (s *HTTPSource) client(ctx caddy.Context, resolvedURL string, timeout time.Duration) (*http.Client, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 1
	if s.TLS != nil {
		cfg, err := s.TLS.Config(ctx)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig = cfg
	}
	origin, err := originOf(resolvedURL)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: transport, Timeout: timeout, CheckRedirect: sameOrigin(origin)}, nil
}

// MaxHTTPRedirects is how many redirects one fetch of an HTTP source follows.
const MaxHTTPRedirects = 5

// sameOrigin follows a redirect only within the source's origin (scheme,
// host and port). Go's client forwards every header but Authorization and
// cookies to another host, and a client certificate to any host that asks:
// refusing every other origin before the request is made keeps the
// configured headers, the URL's user info and the client certificate with
// the origin the operator configured. An https source sent to plain http is
// another origin too.
func sameOrigin(origin string) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		status := 0
		if req.Response != nil {
			status = req.Response.StatusCode
		}
		if to, _ := originOf(req.URL.String()); to != origin {
			if to == "" {
				to = "(invalid URL)"
			}
			return fmt.Errorf("redirect refused: status %d to %s, another origin (redirects are followed only within %s)", status, to, origin)
		}
		if len(via) > MaxHTTPRedirects {
			return fmt.Errorf("redirect refused: status %d, more than %d redirects", status, MaxHTTPRedirects)
		}
		return nil
	}
}

// originOf is the scheme://host:port of an absolute URL, the port always
// written: never its user info, path or query.
func originOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("url %s has no origin", RedactURL(raw))
	}
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port), nil
}

// Config builds the TLS configuration to reach a source with.
func (t *HTTPSourceTLS) Config(ctx caddy.Context) (*tls.Config, error) {
	if !t.UseServerIdentity {
		return t.FileConfig()
	}
	certs, err := ctx.IdentityCredentials(ctx.Logger())
	if err != nil {
		return nil, fmt.Errorf("getting server identity credentials: %w", err)
	}
	// The server identity is the client certificate: the files give the
	// roots only.
	roots := HTTPSourceTLS{RootCAPEMFiles: t.RootCAPEMFiles}
	cfg, err := roots.FileConfig()
	if err != nil {
		return nil, err
	}
	cfg.Certificates = certs
	return cfg, nil
}

// FileConfig builds the TLS configuration from the files alone, for a tool
// outside a running Caddy (caddy key-auth push), which has no server
// identity to present. Its errors about an option are OptionErrors.
func (t *HTTPSourceTLS) FileConfig() (*tls.Config, error) {
	if t.UseServerIdentity {
		return nil, errors.New("use_server_identity needs a running Caddy")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.ClientCertificateFile != "" || t.ClientCertificateKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.ClientCertificateFile, t.ClientCertificateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if len(t.RootCAPEMFiles) > 0 {
		pool := x509.NewCertPool()
		for _, f := range t.RootCAPEMFiles {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("reading CA certificate: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, &OptionError{Option: "root_ca_pem_files", Rest: ": no certificate found in " + f}
			}
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// OptionError is an option a check refuses: Option is its JSON name and
// Rest the message after the name, so that a tool that takes the options
// under other names (the flags of caddy key-auth push) can name them its
// own way.
type OptionError struct {
	Option, Rest string
}

func (e *OptionError) Error() string { return e.Option + e.Rest }

// Validate checks the configuration: an absolute http or https URL once
// its placeholders are filled in, and no negative duration or size.
func (s *HTTPSource) Validate() error {
	u, err := url.Parse(s.ResolvedURL())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url must be an absolute http or https URL, got %q", RedactURL(s.URL))
	}
	if (s.Refresh != nil && *s.Refresh < 0) || s.Timeout < 0 || s.MaxSize < 0 {
		return errors.New("refresh, timeout and max_size must not be negative")
	}
	return nil
}

// headerKey renders headers canonically for the store key, as a digest so
// that the key holds no secret.
func headerKey(h http.Header) string {
	names := make([]string, 0, len(h))
	for n := range h {
		names = append(names, n)
	}
	sort.Strings(names)
	d := sha256.New()
	for _, n := range names {
		fmt.Fprintf(d, "%q:%q;", http.CanonicalHeaderKey(n), h[n])
	}
	return hex.EncodeToString(d.Sum(nil))
}

// resolveHeaders fills in {env.*} and {file.*} placeholders once, when the
// store is made.
func resolveHeaders(h http.Header) http.Header {
	repl := caddy.NewReplacer()
	out := make(http.Header, len(h))
	for n, vals := range h {
		for _, v := range vals {
			out.Add(n, repl.ReplaceKnown(v, ""))
		}
	}
	return out
}

// sourceLocation is where an HTTP source lives, whatever the credentials:
// its URL as configured, placeholders unresolved, without user info. So a
// token rotated through a placeholder in the query (?token={env.X}) or in
// the user info finds the source's previous configuration, while a URL
// whose literal query changed (?tenant=a to ?tenant=b) is another source
// and never serves the other's consumers.
func sourceLocation(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.User = nil
	return u.String()
}

// RedactURL shows a URL without its credentials: no user info, and no query
// values, which often carry tokens.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	u.Fragment = ""
	return u.String()
}

// httpLoader fetches a consumers document with conditional requests.
type httpLoader struct {
	url, location string
	maxSize       int64
	cache         string
	client        *http.Client
	headers       http.Header
	log           func() *zap.Logger // the store's current logger

	mu                 sync.Mutex // guards the validators, read by info
	etag, lastModified string
}

func (f *httpLoader) Load(ctx context.Context, force bool) (*consumers.Set, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		return nil, fmt.Errorf("consumers source %s: %w", f.location, err)
	}
	for n, vals := range f.headers {
		req.Header[n] = vals
	}
	req.Header.Set("Accept", "application/json")
	f.mu.Lock()
	if !force {
		if f.etag != "" {
			req.Header.Set("If-None-Match", f.etag)
		}
		if f.lastModified != "" {
			req.Header.Set("If-Modified-Since", f.lastModified)
		}
	}
	f.mu.Unlock()

	resp, err := f.client.Do(req)
	if err != nil {
		// A url.Error repeats the URL, credentials and all: keep its cause.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("consumers source %s: %w", f.location, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return nil, nil
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("consumers source %s: status %d", f.location, resp.StatusCode)
	}
	if resp.ContentLength > f.maxSize {
		return nil, fmt.Errorf("consumers source %s: answer of %d bytes is over max_size (%d)", f.location, resp.ContentLength, f.maxSize)
	}
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength))
	}
	if _, err := io.Copy(&buf, io.LimitReader(resp.Body, f.maxSize+1)); err != nil {
		return nil, fmt.Errorf("consumers source %s: reading the answer: %w", f.location, err)
	}
	if int64(buf.Len()) > f.maxSize {
		return nil, fmt.Errorf("consumers source %s: answer is over max_size (%d bytes)", f.location, f.maxSize)
	}
	set, err := consumers.Parse(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("consumers source %s: %w", f.location, err)
	}
	f.mu.Lock()
	f.etag, f.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	f.mu.Unlock()
	if err := f.saveCache(buf.Bytes()); err != nil {
		// The set is good; only a cold start without the source misses it.
		f.log().Warn("consumers cache not written", zap.String("source", f.location),
			zap.String("cache", f.cache), zap.Error(err))
	}
	return set, nil
}

// loadCache reads the cached answer, if any, at startup.
func (f *httpLoader) loadCache(logger *zap.Logger) *consumers.Set {
	if f.cache == "" {
		return nil
	}
	data, err := os.ReadFile(f.cache)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			logger.Warn("consumers cache not read", zap.String("cache", f.cache), zap.Error(err))
		}
		return nil
	}
	set, err := consumers.Parse(data)
	if err != nil {
		logger.Warn("consumers cache refused", zap.String("cache", f.cache), zap.Error(err))
		return nil
	}
	return set
}

// saveCache replaces the cache file atomically, so a crash never leaves half
// a document behind.
func (f *httpLoader) saveCache(data []byte) error {
	if f.cache == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.cache), ".consumers-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.cache)
}

// httpPolling polls every refresh and backs off after failures; a failure
// streak is logged when it starts, then as a reminder.
func httpPolling(refresh time.Duration) Polling {
	return Polling{Every: refresh, Backoff: true}
}

func (f *httpLoader) Info() SourceInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return SourceInfo{Kind: "http", Location: f.location, ETag: f.etag}
}

// Close lets the client's idle connections go with the store.
func (f *httpLoader) Close() error {
	f.client.CloseIdleConnections()
	return nil
}

var (
	_ caddy.Provisioner  = (*HTTPSource)(nil)
	_ caddy.Validator    = (*HTTPSource)(nil)
	_ caddy.CleanerUpper = (*HTTPSource)(nil)
	_ Loader             = (*httpLoader)(nil)
	_ io.Closer          = (*httpLoader)(nil)
)
