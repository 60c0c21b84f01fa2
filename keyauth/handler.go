// Package keyauth is the key_auth HTTP handler: Kong-compatible API-key
// authentication against a store of consumers.
package keyauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// DefaultMaxBodySize is the default limit on the body searched for a key.
const DefaultMaxBodySize = 1 << 20

// Handler authenticates requests by API key against a store of consumers,
// the way Kong's key-auth plugin does, and tells the upstream who called
// through the X-Consumer-* headers and the {http.auth.user.*} placeholders.
type Handler struct {
	// KeyNames are the names the key may go by, tried in order: the header,
	// cookie, query parameter or body field that carries it.
	// Default: ["apikey"]. In headers the names match case-insensitively and an underscore also
	// matches a dash: "api_key" matches an "Api-Key" header.
	KeyNames []string `json:"key_names,omitempty"`

	// KeyInHeader looks for the key in request headers. Default: true.
	KeyInHeader *bool `json:"key_in_header,omitempty"`

	// KeyInCookie looks for the key in a cookie named by one of KeyNames,
	// after the header and before the query. Cookie names match exactly
	// (they are case-sensitive) but for white space around them, as most
	// cookie parsers and browsers read them; the value is used as sent,
	// without surrounding white space and double quotes, and is not
	// percent-decoded. Two cookies of the name, in one Cookie header or
	// several, are a duplicate. Unless CookieCrossSite is set, a cookie
	// counts only on requests with a safe method or from the same site. As
	// in Envoy Gateway, Tyk and Traefik; Kong's key-auth has no such
	// option. Default: false.
	KeyInCookie bool `json:"key_in_cookie,omitempty"`

	// CookieCrossSite lets a key in a cookie authenticate requests of any
	// method from any site. Otherwise (the default) a browser can not be
	// made to spend it from another site's page (cross-site request
	// forgery): on a request whose method is not GET, HEAD, OPTIONS or
	// TRACE, the cookie counts only when Sec-Fetch-Site is same-origin,
	// same-site or none, or, without Sec-Fetch-Site, when Origin is the
	// request's own scheme, host and port, or when the request has neither
	// header (not a browser). A cookie that does not count is as absent:
	// the other locations and Anonymous apply, and HideCredentials still
	// removes it. Only with KeyInCookie. Default: false.
	CookieCrossSite bool `json:"cookie_cross_site,omitempty"`

	// KeyInQuery looks for the key in the query string. Default: true.
	KeyInQuery *bool `json:"key_in_query,omitempty"`

	// KeyInBody looks for the key in form, JSON and multipart bodies.
	// Default: false.
	KeyInBody bool `json:"key_in_body,omitempty"`

	// MaxBodySize is the largest body searched for a key, in bytes (the
	// Caddyfile also takes a size such as 1MB). A larger body is not
	// searched and goes to the upstream untouched. Default: 1 MiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// HideCredentials removes every value of every key name from each
	// enabled location before the request goes on, whichever way it goes
	// on (authenticated, anonymous, a preflight let through, a failure
	// handed to handle_errors): both header spellings (and, where the
	// server keeps names with '_' or '.', every spelling that folds to a
	// key name), the query parameter in any percent-encoded spelling, the
	// body field when the body was read, and every cookie pair an upstream
	// may read as a key name: the name padded with white space, or, as
	// Python's http.cookies reads it, after white space or a comma inside
	// another pair ("x=1 apikey=K" goes whole). The other cookies, the rest
	// of the query and the body stay byte for byte. Default: false.
	HideCredentials bool `json:"hide_credentials,omitempty"`

	// Anonymous is the username (or else the id) of the consumer a request
	// continues as when it has no key, a duplicate key or an invalid one,
	// instead of being rejected. Default: none.
	Anonymous string `json:"anonymous,omitempty"`

	// Realm is sent in the WWW-Authenticate challenge of every 401:
	// `Key realm="<realm>"`. Default: none, which sends `Key`.
	Realm string `json:"realm,omitempty"`

	// RunOnPreflight authenticates CORS preflight requests too. When false,
	// an OPTIONS request with Origin and Access-Control-Request-Method goes
	// on without a key. Default: true.
	RunOnPreflight *bool `json:"run_on_preflight,omitempty"`

	// HandleErrors hands failures to the server's error routes
	// (`handle_errors`), with {http.error.status_code} and
	// {http.error.message} set, instead of answering with JSON.
	// Default: false.
	HandleErrors bool `json:"handle_errors,omitempty"`

	// Allow lets on only the consumers in at least one of these groups, as
	// Kong 3.x's acl plugin with `allow` does: any other consumer gets 403
	// {"message":"You cannot consume this service"}, except the anonymous
	// consumer when it has no groups at all, which gets the 401 of an
	// unknown key (it never authenticated). It applies to the consumer the
	// request goes on as. A group name is 1 to 128 characters without white
	// space or commas. Default: none (every consumer goes on). Refused
	// together with Deny.
	Allow []string `json:"allow,omitempty"`

	// Deny refuses the consumers in any of these groups with 403 {"message":
	// "You cannot consume this service"}, as Kong 3.x's acl plugin with
	// `deny` does; a consumer without groups goes on. Group names as for
	// Allow. Default: none. Refused together with Allow.
	Deny []string `json:"deny,omitempty"`

	// HideGroupsHeader does not send X-Consumer-Groups (Kong's
	// hide_groups_header). Otherwise a consumer that goes on with groups
	// has them sent there, joined with ", " as Kong does. A client's own
	// X-Consumer-Groups, in any spelling, is removed either way.
	// Default: false.
	HideGroupsHeader bool `json:"hide_groups_header,omitempty"`

	// MaxIdle refuses a key unused for this long, exactly as an expired
	// one: counted from its last use as this instance recorded it (to the
	// minute, kept across restarts in Caddy's data directory for file and
	// HTTP sources), or from its created_at when it was never used. A key
	// with neither, and every key of a source that keeps no record of use
	// (Redis, for now), is exempt. Default: 0, no limit.
	MaxIdle caddy.Duration `json:"max_idle,omitempty"`

	// Consumers is the source the consumers come from: a module of the
	// key_auth.sources namespace, named by its "source" key, such as
	// {"source": "file", "path": "consumers.json"}. Required.
	ConsumersRaw json.RawMessage `json:"consumers,omitempty" caddy:"namespace=key_auth.sources inline_key=source"`

	// Limits charges requests against the limits their consumers have in
	// the consumers document (quotas over fixed windows, in-flight caps,
	// token budgets settled from the answer) and refuses those over one
	// with 429. Only a handler with Limits charges. Default: none (limits
	// in the document are not enforced here).
	Limits *Limits `json:"limits,omitempty"`

	names        []keyName
	locs         []*locator // the locations searched, in order
	maxBody      int64
	runPreflight bool
	src          Source
	challenge    []string
	acl          aclMode
	groups       []string // Allow or Deny, whichever is set
	anonMissing  *failure // the anonymous consumer is not in the source
	anonDisabled *failure // the anonymous consumer is disabled
	logger       *zap.Logger
	maxIdle      time.Duration
	now          func() time.Time // the clock of max_idle and limits: time.Now but in tests
	limiter      *limiter         // with Limits
}

// keyName is a configured key name, with its header spellings worked out
// once.
type keyName struct {
	name          string // matched exactly in the query and the body
	header        string // canonical header name
	dashHeader    string // with '_' as '-', when that differs
	authorization bool   // "Authorization: Bearer <key>" is accepted
	folded        string // the header name folded, see fold
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.key_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults and loads the consumers source. It validates
// first, so that a bad configuration never loads consumers.
func (h *Handler) Provision(ctx caddy.Context) error {
	if err := h.Validate(); err != nil {
		return err
	}
	// Checked here, not in Validate: loading the module clears the field.
	if h.ConsumersRaw == nil {
		return errors.New("consumers is required: name a source, such as a consumers file")
	}
	h.configure(ctx.Logger())
	mod, err := ctx.LoadModule(h, "ConsumersRaw")
	if err != nil {
		return fmt.Errorf("loading consumers source: %w", err)
	}
	src, ok := mod.(Source)
	if !ok {
		return fmt.Errorf("module %s is not a consumers source: it does not implement keyauth.Source", caddy.GetModuleID(mod))
	}
	h.src = src
	if err := h.provisionLimits(ctx); err != nil {
		return err
	}
	// A source that has its consumers now (a file) tells at once whether
	// the anonymous one is there.
	if h.Anonymous != "" && h.src.Now() != nil {
		c, ok, err := h.src.Consumer(ctx, h.Anonymous)
		switch {
		case err != nil:
			// A source that must ask a server (Redis) is not connected
			// before Caddy starts: the first request that falls back tells.
		case !ok:
			h.logger.Warn("anonymous consumer is configured but doesn't exist yet; requests that fall back to it get 500",
				zap.String("anonymous", h.Anonymous))
		case c.Disabled():
			h.logger.Warn("anonymous consumer is disabled; requests that fall back to it get 500",
				zap.String("anonymous", h.Anonymous))
		}
	}
	return registerMetrics(ctx)
}

// Validate checks the options.
func (h *Handler) Validate() error {
	if err := checkKeyNames(h.KeyNames); err != nil {
		return err
	}
	if h.MaxBodySize < 0 {
		return fmt.Errorf("max_body_size must not be negative, got %d", h.MaxBodySize)
	}
	if h.MaxIdle < 0 {
		return fmt.Errorf("max_idle must not be negative, got %s", time.Duration(h.MaxIdle))
	}
	if h.CookieCrossSite && !h.KeyInCookie {
		return errors.New("cookie_cross_site needs key_in_cookie: without it no key is read from a cookie")
	}
	if h.Limits != nil {
		if err := h.Limits.Validate(); err != nil {
			return err
		}
	}
	return checkACL(h.Allow, h.Deny)
}

// checkKeyNames checks key_names: none empty, none listed twice.
func checkKeyNames(names []string) error {
	for i, n := range names {
		if n == "" {
			return errors.New("key_names: a key name must not be empty")
		}
		if slices.Contains(names[:i], n) {
			return fmt.Errorf("key_names: %q is listed twice", n)
		}
	}
	return nil
}

// configure works out what requests need of the options, which Validate
// has checked.
func (h *Handler) configure(logger *zap.Logger) {
	h.logger = logger
	h.maxIdle = time.Duration(h.MaxIdle)
	if h.now == nil {
		h.now = time.Now
	}
	if len(h.KeyNames) == 0 {
		h.KeyNames = []string{"apikey"}
	}
	for _, n := range h.KeyNames {
		kn := keyName{name: n, header: textproto.CanonicalMIMEHeaderKey(n)}
		if dash := textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(n, "_", "-")); dash != kn.header {
			kn.dashHeader = dash
		}
		kn.authorization = kn.header == "Authorization"
		kn.folded = fold(n)
		h.names = append(h.names, kn)
	}
	h.locs = nil
	for i := range locations {
		if l := &locations[i]; l.enabled(h) {
			h.locs = append(h.locs, l)
		}
	}
	if len(h.locs) == 0 {
		h.logger.Warn(allOffWarning)
	}
	h.runPreflight = h.RunOnPreflight == nil || *h.RunOnPreflight
	h.maxBody = h.MaxBodySize
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxBodySize
	}
	switch {
	case h.Allow != nil:
		h.acl, h.groups = aclAllow, h.Allow
	case h.Deny != nil:
		h.acl, h.groups = aclDeny, h.Deny
	}
	if h.Anonymous != "" {
		h.anonMissing = newFailure(http.StatusInternalServerError,
			"anonymous consumer "+h.Anonymous+" is configured but doesn't exist", outcomeError)
		h.anonDisabled = newFailure(http.StatusInternalServerError,
			"anonymous consumer "+h.Anonymous+" is configured but disabled", outcomeError)
	}
	h.challenge = []string{"Key"}
	if h.Realm != "" {
		h.challenge = []string{"Key realm=" + strconv.Quote(h.Realm)}
	}
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
