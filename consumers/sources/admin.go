package sources

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI gives operators a view of the consumer sources on Caddy's admin
// endpoint:
//
//	GET  /key_auth/sources          each source and what it has loaded
//	POST /key_auth/sources/refresh  reload every source now
//
// Neither ever shows a key or a header value. Like the rest of the admin
// API, it is unauthenticated unless the admin endpoint is protected.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.key_auth",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/key_auth/sources", Handler: caddy.AdminHandlerFunc(a.sources)},
		{Pattern: "/key_auth/sources/refresh", Handler: caddy.AdminHandlerFunc(a.refresh)},
	}
}

// SourceStatus is one source in the admin API's answers.
type SourceStatus struct {
	Status
	// Handlers counts the handlers using the source.
	Handlers int `json:"handlers"`
	// RefreshError is the error of a refresh asked through the admin API.
	RefreshError string `json:"refresh_error,omitempty"`
}

func (a AdminAPI) sources(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	return writeStatuses(w, liveStatuses(nil))
}

func (a AdminAPI) refresh(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	errs := map[Live]string{}
	for _, l := range Lives() {
		if err := l.Refresh(r.Context()); err != nil {
			errs[l] = err.Error()
		}
	}
	return writeStatuses(w, liveStatuses(errs))
}

func liveStatuses(errs map[Live]string) []SourceStatus {
	out := []SourceStatus{}
	lives.Range(func(key, v any) bool {
		l := v.(Live)
		n, _ := lives.References(key)
		out = append(out, SourceStatus{Status: l.Status(), Handlers: n, RefreshError: errs[l]})
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Location < out[j].Location
	})
	return out
}

func writeStatuses(w http.ResponseWriter, st []SourceStatus) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(st)
}

var _ caddy.AdminRouter = (*AdminAPI)(nil)
