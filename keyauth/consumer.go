package keyauth

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keyauth/caddy-keyauth/consumers/model"
)

// ConsumerOf reports the consumer a key_auth earlier in this request
// established (authenticated or anonymous); ok is false when none did (no
// key_auth ran, or it let the request on without a consumer: preflight,
// handle_errors).
//
// It reflects the request's last identity: when several key_auth handlers
// ran, the last one that identified the request; when another auth handler
// (basic_auth) identified it after key_auth, there is no consumer.
func ConsumerOf(r *http.Request) (c model.Consumer, anonymous bool, ok bool) {
	id, found := caddyhttp.GetVar(r.Context(), identityVar).(*identity)
	if !found || !id.hasConsumer || id.supersededBy() {
		return model.Consumer{}, false, false
	}
	return id.consumer, id.anonymous, true
}
