package manage

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// changesTotal counts the changes asked of the API by action and result:
// both bounded sets, never a consumer or a credential. It lives at package
// level so its counts survive config reloads.
var changesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "caddy",
	Subsystem: "key_auth_api",
	Name:      "changes_total",
	Help:      "Changes asked of the key_auth management API, by action (create_consumer, replace_consumer, put_consumer, patch_consumer, delete_consumer, add_key, patch_key, delete_key, roll_key, usage_reset, usage_topup) and result (ok, invalid, forbidden, not_found, conflict, unavailable, error).",
}, []string{"action", "result"})

// result names the outcome of a change by its status.
func result(status int) string {
	switch {
	case status < 300:
		return "ok"
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge:
		return "invalid"
	case status == http.StatusForbidden:
		return "forbidden"
	case status == http.StatusNotFound:
		return "not_found"
	case status == http.StatusConflict:
		return "conflict"
	case status == http.StatusServiceUnavailable:
		return "unavailable"
	}
	return "error"
}

// audit logs one line per change asked, done or refused, at INFO: who (the
// manager and the credential it called with), what, on which consumer and
// credential, and how it ended. Never a key, a hash or a body.
func (h *Handler) audit(q *call, status int) {
	res := result(status)
	changesTotal.WithLabelValues(q.action, res).Inc()
	h.logger.Info("consumers change",
		zap.String("manager", q.mgr.Consumer.Username()),
		zap.String("manager_credential", q.mgr.CredentialID),
		zap.String("action", q.action),
		zap.String("consumer", q.username),
		zap.String("credential_id", q.credID),
		zap.String("result", res),
		zap.Int("status", status),
	)
}
