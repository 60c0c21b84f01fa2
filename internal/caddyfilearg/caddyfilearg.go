// Package caddyfilearg reads the argument shapes the key_auth directive and
// its consumers sources share, with errors from the dispenser so they carry
// file:line.
package caddyfilearg

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// One reads the single argument of the current option, which takes no
// block.
func One(d *caddyfile.Dispenser) (string, error) {
	opt := d.Val()
	var v string
	if !d.Args(&v) || d.NextArg() {
		return "", d.ArgErr()
	}
	return v, NoBlock(d, opt)
}

// NoBlock refuses a block after an option that takes none.
func NoBlock(d *caddyfile.Dispenser, opt string) error {
	if d.NextBlock(d.Nesting()) {
		return d.Errf("%s takes no block", opt)
	}
	return nil
}

// Bool reads an optional true or false; bare is what the option alone
// means, and false there makes the value required. Only the words true and
// false are accepted, not strconv's 1, T or TRUE.
func Bool(d *caddyfile.Dispenser, bare bool) (bool, error) {
	opt := d.Val()
	if !d.NextArg() {
		if !bare {
			return false, d.Errf("%s needs true or false", opt)
		}
		return true, NoBlock(d, opt)
	}
	var v bool
	switch d.Val() {
	case "true":
		v = true
	case "false":
	default:
		return false, d.Errf("%s: want true or false, got '%s'", opt, d.Val())
	}
	if d.NextArg() {
		return false, d.ArgErr()
	}
	return v, NoBlock(d, opt)
}

// Duration reads a duration in Caddy's syntax (1m30s, 1d); a negative one
// is refused.
func Duration(d *caddyfile.Dispenser) (*caddy.Duration, error) {
	opt := d.Val()
	v, err := One(d)
	if err != nil {
		return nil, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return nil, d.Errf("%s: invalid duration '%s': %v", opt, v, err)
	}
	if dur < 0 {
		return nil, d.Errf("%s must not be negative", opt)
	}
	cd := caddy.Duration(dur)
	return &cd, nil
}

// Size reads a size as a number of bytes or a humanized size such as 1MB or
// 64KiB (go-humanize's syntax), for the JSON's integer of bytes.
func Size(d *caddyfile.Dispenser) (int64, error) {
	v, err := One(d)
	if err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n > 1<<62 {
		return 0, d.Errf("invalid size %q: want a number of bytes or a size such as 1MB", v)
	}
	return int64(n), nil
}

// Seen is the options a block has given so far; Once refuses an option
// given twice in one block, naming it, with the dispenser's file:line.
type Seen map[string]bool

// Once records the current option, or refuses it if the block gave it
// already.
func (s Seen) Once(d *caddyfile.Dispenser) error {
	opt := d.Val()
	if s[opt] {
		return d.Errf("%s given twice", opt)
	}
	s[opt] = true
	return nil
}
