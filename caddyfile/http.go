package caddyfile

import (
	"encoding/json"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func parseHTTPSource(d *caddyfile.Dispenser, url string, warnings *[]caddyconfig.Warning) (json.RawMessage, error) {
	return nil, d.Err("the http consumers source is not available yet")
}
