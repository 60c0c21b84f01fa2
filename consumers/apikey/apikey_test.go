package apikey

import (
	"bytes"
	"crypto/rand"
	"math/big"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestGenerateShape(t *testing.T) {
	for _, prefix := range []string{"", "ka", "acme_live", "A", strings.Repeat("p", 32)} {
		key, err := Generate(prefix)
		if err != nil {
			t.Fatalf("prefix %q: %v", prefix, err)
		}
		want := prefix
		if want == "" {
			want = DefaultPrefix
		}
		if !strings.HasPrefix(key, want+"_") || len(key) != len(want)+1+BodyLen {
			t.Errorf("prefix %q: key of length %d does not have the shape", prefix, len(key))
		}
		if !LooksGenerated(key) || !ChecksumOK(key) {
			t.Errorf("prefix %q: a fresh key fails its own checks", prefix)
		}
		scan := regexp.MustCompile(ScanPattern(want))
		if got := scan.FindString("token=" + key + ";"); got != key {
			t.Errorf("prefix %q: the scan pattern does not find the key in text", prefix)
		}
	}
}

// The widths are the most their numbers can take, so every key of a prefix
// has one length and the published pattern is exact.
func TestWidths(t *testing.T) {
	max := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 8*RandomBytes), big.NewInt(1))
	if n := len(max.Text(62)); n != RandomLen {
		t.Errorf("2^256-1 takes %d base-62 digits, RandomLen is %d", n, RandomLen)
	}
	if n := len(big.NewInt(1<<32 - 1).Text(62)); n != ChecksumLen {
		t.Errorf("2^32-1 takes %d base-62 digits, ChecksumLen is %d", n, ChecksumLen)
	}
	// All-zero and all-one entropy give keys of the same length.
	for _, b := range []byte{0x00, 0xff} {
		entropy = bytes.NewReader(bytes.Repeat([]byte{b}, RandomBytes))
		key, err := Generate("ka")
		entropy = rand.Reader
		if err != nil {
			t.Fatal(err)
		}
		if len(key) != 3+BodyLen || !ChecksumOK(key) {
			t.Errorf("entropy of 0x%02x bytes gives a key of length %d", b, len(key))
		}
	}
}

// The random part is the entropy source's bytes and nothing else, and the
// source is crypto/rand unless a test says otherwise.
func TestEntropySource(t *testing.T) {
	if entropy != rand.Reader {
		t.Fatal("keys do not come from crypto/rand")
	}
	seed := []byte("0123456789abcdef0123456789abcdef")
	entropy = bytes.NewReader(seed)
	key, err := Generate("ka")
	entropy = rand.Reader
	if err != nil {
		t.Fatal(err)
	}
	body := key[len("ka_") : len(key)-ChecksumLen]
	n, ok := new(big.Int).SetString(strings.TrimLeft(body, "0"), 62)
	if !ok || !bytes.Equal(n.FillBytes(make([]byte, RandomBytes)), seed) {
		t.Error("the random part is not the entropy's bytes in base 62")
	}
	// A short source is an error, not a weak key.
	entropy = bytes.NewReader(seed[:10])
	_, err = Generate("ka")
	entropy = rand.Reader
	if err == nil {
		t.Error("a key was minted from 10 random bytes")
	}
}

func TestDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		key, err := Generate("ka")
		if err != nil {
			t.Fatal(err)
		}
		if seen[key] {
			t.Fatal("two keys alike in 10000")
		}
		seen[key] = true
	}
}

// Every single-character change of the body (a typo) fails the checksum.
func TestChecksumCatchesTypos(t *testing.T) {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for range 20 {
		key, err := Generate("acme_live")
		if err != nil {
			t.Fatal(err)
		}
		for i := len("acme_live_"); i < len(key); i++ {
			for _, c := range []byte(digits) {
				if c == key[i] {
					continue
				}
				typo := key[:i] + string(c) + key[i+1:]
				if ChecksumOK(typo) {
					t.Fatalf("a change at position %d passes the checksum", i)
				}
			}
		}
		// Two neighbours swapped, too.
		for i := len("acme_live_"); i+1 < len(key); i++ {
			if key[i] == key[i+1] {
				continue
			}
			b := []byte(key)
			b[i], b[i+1] = b[i+1], b[i]
			if ChecksumOK(string(b)) {
				t.Fatalf("a swap at position %d passes the checksum", i)
			}
		}
		// A changed prefix is caught: the checksum covers it.
		if ChecksumOK("acme_test" + key[len("acme_live"):]) {
			t.Fatal("a changed prefix passes the checksum")
		}
	}
}

func TestNotGenerated(t *testing.T) {
	good, _ := Generate("ka")
	for _, k := range []string{"", "alice-secret-0001", "ka_short", good + "x", good[:len(good)-1],
		"_" + good[3:], "1a" + good[2:], strings.Replace(good, "_", "-", 1), good[:10] + "!" + good[11:]} {
		if ChecksumOK(k) {
			t.Errorf("%q passes the checksum", k)
		}
	}
	if LooksGenerated("alice-secret-0001") {
		t.Error("a hand-made key looks generated")
	}
}

func TestValidatePrefix(t *testing.T) {
	for _, p := range []string{"ka", "acme_live", "X9", strings.Repeat("a", 32)} {
		if err := ValidatePrefix(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"", "9a", "_a", "a_", "a-b", "a b", "é", strings.Repeat("a", 33)} {
		if err := ValidatePrefix(p); err == nil {
			t.Errorf("%q is accepted", p)
		}
		if _, err := Generate(p); p != "" && err == nil {
			t.Errorf("Generate(%q) mints a key", p)
		}
	}
}

// The README's scanner patterns find generated keys, and only whole ones.
func TestReadmePatterns(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	github := regexp.MustCompile("(?m)^```\\n(ka_.*)\\n```$").FindStringSubmatch(text)
	gitleaks := regexp.MustCompile(`(?m)^regex = '''(.*)'''$`).FindStringSubmatch(text)
	if github == nil || gitleaks == nil {
		t.Fatal("the README's patterns are not where this test looks")
	}
	if gitleaks[1] != ScanPattern("ka") {
		t.Errorf("the README's gitleaks pattern %q is not ScanPattern's %q", gitleaks[1], ScanPattern("ka"))
	}
	key, _ := Generate("ka")
	other, _ := Generate("acme")
	for _, p := range []string{github[1], gitleaks[1]} {
		re := regexp.MustCompile(p)
		if re.FindString("export API_KEY="+key+"\n") != key {
			t.Errorf("%s does not find a key", p)
		}
		if re.MatchString(key[:len(key)-1]) || re.MatchString(other) {
			t.Errorf("%s finds a cut key or another prefix's", p)
		}
	}
}

func TestCredentialID(t *testing.T) {
	a, b := CredentialID("bob"), CredentialID("bob")
	if !regexp.MustCompile(`^bob-[0-9a-f]{8}$`).MatchString(a) || a == b {
		t.Errorf("CredentialID: %q, %q", a, b)
	}
}
