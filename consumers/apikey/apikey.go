// Package apikey mints API keys of a fixed, documented shape that people and
// secret scanners recognise, and checks that shape without any lookup:
//
//		<prefix>_<random><checksum>
//
//	  - prefix: 1 to 32 characters, a letter first, then letters, digits and
//	    '_', not ending in '_' (default "ka"). It says whose key it is.
//	  - random: the 32 bytes of entropy (crypto/rand) as one big-endian
//	    number in base 62, left-padded with '0' to 43 characters, the most
//	    32 bytes can take.
//	  - checksum: the CRC-32 (IEEE) of everything before it (prefix, '_'
//	    and random) in base 62, left-padded with '0' to 6 characters.
//
// The base-62 digits are 0-9, a-z, A-Z in that order (math/big's). The
// scheme is GitHub's for its tokens: a scanner tells a real key from a typo
// or an example by the checksum alone. Package apikey imports nothing of
// Caddy.
package apikey

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/big"
	"regexp"
	"strings"
)

// DefaultPrefix is the prefix of keys minted without one.
const DefaultPrefix = "ka"

// The lengths of a generated key's parts.
const (
	RandomBytes = 32 // bytes of entropy in a key
	RandomLen   = 43 // base-62 digits of RandomBytes bytes
	ChecksumLen = 6  // base-62 digits of a CRC-32
	// BodyLen is what follows the prefix's '_'.
	BodyLen      = RandomLen + ChecksumLen
	MaxPrefixLen = 32
)

// Pattern matches a generated key of any prefix, whole. It is the pattern of
// the README's secret-scanning rules, anchored.
var Pattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,31}_[0-9A-Za-z]{49}$`)

// ScanPattern is the unanchored pattern for a secret scanner (gitleaks,
// GitHub custom patterns) looking for keys of one prefix in text.
func ScanPattern(prefix string) string {
	return `\b` + regexp.QuoteMeta(prefix) + `_[0-9A-Za-z]{49}\b`
}

var prefixPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,31}$`)

// ValidatePrefix checks a key prefix.
func ValidatePrefix(prefix string) error {
	switch {
	case prefix == "":
		return errors.New("the key prefix is empty")
	case len(prefix) > MaxPrefixLen:
		return fmt.Errorf("the key prefix %q is longer than %d characters", prefix, MaxPrefixLen)
	case !prefixPattern.MatchString(prefix):
		return fmt.Errorf("the key prefix %q must start with a letter and hold only letters, digits and '_'", prefix)
	case strings.HasSuffix(prefix, "_"):
		return fmt.Errorf("the key prefix %q must not end with '_' (the key adds one)", prefix)
	}
	return nil
}

// entropy is where keys' random bytes come from; tests replace it to see
// that every random digit comes from it.
var entropy io.Reader = rand.Reader

// Generate mints a key with the given prefix ("" for DefaultPrefix).
func Generate(prefix string) (string, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if err := ValidatePrefix(prefix); err != nil {
		return "", err
	}
	var b [RandomBytes]byte
	if _, err := io.ReadFull(entropy, b[:]); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	head := prefix + "_" + base62(new(big.Int).SetBytes(b[:]), RandomLen)
	return head + checksum(head), nil
}

// LooksGenerated reports whether key has the shape of a generated key,
// whatever its checksum.
func LooksGenerated(key string) bool { return Pattern.MatchString(key) }

// ChecksumOK reports whether key has the shape of a generated key and a
// checksum that matches: false for a typo in a generated key, and for any
// key that does not look generated.
func ChecksumOK(key string) bool {
	if !LooksGenerated(key) {
		return false
	}
	head := key[:len(key)-ChecksumLen]
	return checksum(head) == key[len(head):]
}

func checksum(head string) string {
	return base62(new(big.Int).SetUint64(uint64(crc32.ChecksumIEEE([]byte(head)))), ChecksumLen)
}

func base62(n *big.Int, width int) string {
	s := n.Text(62)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}

// CredentialID is the id of a credential minted for username without one
// given (`caddy key-auth new`, the management API): the username, '-' and
// 8 random hex digits, which tell nothing about the key.
func CredentialID(username string) string {
	var b [4]byte
	_, _ = io.ReadFull(rand.Reader, b[:]) // crypto/rand never fails
	return username + "-" + hex.EncodeToString(b[:])
}
