package sources

import (
	"time"

	"github.com/caddyserver/caddy/v2"
)

func durationPtr(d time.Duration) *caddy.Duration {
	cd := caddy.Duration(d)
	return &cd
}
