package keyauth

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// ConsumerOf reports the consumer a key_auth earlier in this request
// established (authenticated or anonymous); ok is false when none did (no
// key_auth ran, or it let the request on without a consumer: preflight,
// handle_errors).
//
// It reflects the request's last identity: when several key_auth handlers
// ran, the last one that identified the request; when another auth handler
// (basic_auth) identified it after key_auth, there is no consumer.
func ConsumerOf(r *http.Request) (c consumers.Consumer, anonymous bool, ok bool) {
	repl, found := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !found {
		return consumers.Consumer{}, false, false
	}
	// {http.auth.user.id} is the request's last identity: another auth
	// handler's static value comes before key_auth's provider.
	v, _ := repl.Get(userIDPlaceholder)
	if u, mine := v.(*user); mine && u.id().hasConsumer {
		return u.id().consumer, u.id().anonymous, true
	}
	return consumers.Consumer{}, false, false
}
