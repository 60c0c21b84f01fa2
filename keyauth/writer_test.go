package keyauth

import (
	"testing"

	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/consumers/sources/redis"
)

// The file and Redis sources are writable through the source contract.
var (
	_ Writer = (*sources.FileSource)(nil)
	_ Writer = (*redis.Source)(nil)
)

// The HTTP source, and a source of another package that embeds a Handle
// and writes nothing itself, are read-only: the management API's type
// assertion fails for them.
func TestReadOnlySources(t *testing.T) {
	type thirdParty struct {
		sources.Handle
	}
	for name, src := range map[string]any{"http": new(sources.HTTPSource), "handle": new(sources.Handle), "third party": new(thirdParty)} {
		if _, ok := src.(Source); !ok {
			t.Errorf("%s is not a Source", name)
		}
		if _, ok := src.(Writer); ok {
			t.Errorf("%s is a Writer", name)
		}
	}
}
