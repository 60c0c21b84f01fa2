package sources

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// storeKey names the store of a source in the pool: its kind and its
// configuration as JSON, with placeholders and defaults filled in by the
// caller, so that every source that would load the same consumers shares one
// store. JSON is canonical here: struct fields come in declaration order, map
// keys sorted, and a pointer is written as what it points to, so a field
// added tomorrow takes part in the key without anyone remembering to.
// Anything the key must follow but must not hold, such as a secret header
// value, the caller passes as a digest in extra.
func storeKey(kind string, cfg any, extra ...string) (string, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encoding the %s source's configuration: %w", kind, err)
	}
	key := kind + " " + string(b)
	for _, e := range extra {
		key += " " + e
	}
	return key, nil
}

func durationPtr(d time.Duration) *caddy.Duration {
	cd := caddy.Duration(d)
	return &cd
}
