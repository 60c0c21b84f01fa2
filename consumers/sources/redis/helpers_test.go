package redis

import (
	"crypto/sha256"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// Every key in these tests starts with keyMark, so a test can tell that an
// error message or a log holds no key material by looking for the mark.
const keyMark = "SeCrEt"

func digestOf(key string) *consumers.Digest {
	d := sha256.Sum256([]byte(key))
	return &d
}

var _ sources.Live = (*looker)(nil)
