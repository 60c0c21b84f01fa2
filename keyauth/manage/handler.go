// Package manage is the management API of key_auth: the key_auth_api HTTP
// handler (module http.handlers.key_auth_api), which lists, creates,
// changes, rolls and removes consumers and their keys at runtime, writing
// through to the source that key_auth handlers read. It is a guest of
// package keyauth, as reverseproxy/fastcgi is of reverseproxy: it reads the
// identity key_auth established (keyauth.IdentityOf) and changes a source
// through keyauth.Writer.
package manage

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/apikey"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/keyauth"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the management API: JSON endpoints, relative to where it is
// mounted, that manage the consumers of one source (README, "Management
// API"). It answers every request itself; put key_auth before it, which
// authenticates the callers.
type Handler struct {
	// Consumers is the source the API manages: a module of the
	// key_auth.sources namespace, named by its "source" key, as key_auth's
	// consumers. A key_auth handler configured with the same source shares
	// its consumers, so a change is live there at once. A source that
	// cannot be written (the HTTP source) answers every request but GET
	// /self with 409. Required.
	ConsumersRaw json.RawMessage `json:"consumers,omitempty" caddy:"namespace=key_auth.sources inline_key=source"`

	// ManageGroup is the group whose consumers may manage: every other
	// caller gets 403 on every endpoint but GET /self. Required, so that
	// management is never open by accident.
	ManageGroup string `json:"manage_group,omitempty"`

	// Scope narrows what each manager manages. Default: none (every
	// consumer of the source).
	Scope *Scope `json:"scope,omitempty"`

	// KeyPrefix is the prefix of the keys the API generates, as
	// `caddy key-auth new --prefix`. Default: "ka".
	KeyPrefix string `json:"key_prefix,omitempty"`

	// LimitsStoreRaw is the limits store whose usage the API shows and
	// changes: a module of the key_auth.limits.stores namespace, named by
	// its "store" key, configured as the limits block of the key_auth
	// handlers that count (a local store of the same table, or a Redis
	// store of the same addresses and prefix). Without it, GET /self
	// shows limits without their usage and the usage endpoints answer
	// 409. Optional.
	LimitsStoreRaw json.RawMessage `json:"limits_store,omitempty" caddy:"namespace=key_auth.limits.stores inline_key=store"`

	src    keyauth.Source
	usage  keyauth.UsageStore // nil without limits_store
	writer keyauth.Writer     // nil for a source that cannot be written
	logger *zap.Logger
	now    func() time.Time
}

// Scope narrows what a manager manages to the consumers that share one of
// its labels.
type Scope struct {
	// Label names the label: a manager sees and changes only the consumers
	// whose label of that name has the manager's own value, and every
	// consumer it creates gets that value. A manager without the label (or
	// with an empty value) gets 403 on every management endpoint.
	// Required in a scope.
	Label string `json:"label,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.key_auth_api",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision validates the options, then loads the source.
func (h *Handler) Provision(ctx caddy.Context) error {
	if err := h.Validate(); err != nil {
		return err
	}
	// Checked here, not in Validate: loading the module clears the field.
	if h.ConsumersRaw == nil {
		return errors.New("consumers is required: name the source to manage, such as a consumers file")
	}
	h.logger = ctx.Logger()
	if h.now == nil {
		h.now = time.Now
	}
	if h.KeyPrefix == "" {
		h.KeyPrefix = apikey.DefaultPrefix
	}
	mod, err := ctx.LoadModule(h, "ConsumersRaw")
	if err != nil {
		return fmt.Errorf("loading consumers source: %w", err)
	}
	src, ok := mod.(keyauth.Source)
	if !ok {
		return fmt.Errorf("module %s is not a consumers source: it does not implement keyauth.Source", caddy.GetModuleID(mod))
	}
	h.src = src
	if h.LimitsStoreRaw != nil {
		mod, err := ctx.LoadModule(h, "LimitsStoreRaw")
		if err != nil {
			return fmt.Errorf("loading limits store: %w", err)
		}
		us, ok := mod.(keyauth.UsageStore)
		if !ok {
			return fmt.Errorf("limits_store: module %s cannot read or change usage: it does not implement keyauth.UsageStore", caddy.GetModuleID(mod))
		}
		h.usage = us
	}
	h.writer, _ = src.(keyauth.Writer)
	if h.writer == nil {
		h.logger.Info("the consumers source cannot be written here: the management API answers 409 but for GET /self",
			zap.String("source", caddy.GetModuleID(mod)))
	}
	return sources.RegisterMetrics(ctx, changesTotal)
}

// Validate checks the options.
func (h *Handler) Validate() error {
	if h.ManageGroup == "" {
		return errors.New("manage_group is required: the group whose consumers may manage (management is never open by accident)")
	}
	if err := consumers.CheckGroupName(h.ManageGroup); err != nil {
		return fmt.Errorf("manage_group: %w", err)
	}
	if h.Scope != nil {
		if h.Scope.Label == "" {
			return errors.New("scope: a label name is required")
		}
		if err := consumers.CheckLabelName(h.Scope.Label); err != nil {
			return fmt.Errorf("scope: %w", err)
		}
	}
	if h.KeyPrefix != "" {
		if err := apikey.ValidatePrefix(h.KeyPrefix); err != nil {
			return fmt.Errorf("key_prefix: %w", err)
		}
	}
	return nil
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
