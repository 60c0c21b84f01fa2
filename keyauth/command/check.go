package command

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the caddyfile adapter
	"github.com/spf13/cobra"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/apikey"

	_ "github.com/keyauth/caddy-keyauth/caddyfile" // the key_auth directive, to adapt a Caddyfile
)

func checkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check (<consumers file>... | --file <consumers file> | --config <Caddyfile or JSON config>) [--warn <duration>] [--strict]",
		Short: "Checks consumers files as Caddy would load them",
		Long: `
Loads each consumers file exactly as the file source does, and prints its
counts, its errors (those of a load) and warnings: plain keys at rest, keys
expiring within --warn (default 30d), expired keys, consumers without keys
(on a bare file even the anonymous one: only --config knows which it is),
plain keys that look generated but whose checksum is wrong (a typo), and an
anonymous consumer that is missing or disabled.

The consumers files are the arguments, or --file (which may be repeated),
as with the other commands; not both.

With --config, the consumers files are those of every key_auth handler of the
config (a Caddyfile, adapted, or JSON when the name ends in .json); relative
paths and {env.*} placeholders resolve as in a Caddy started here. HTTP
sources are listed, not fetched.

Exit status 1 on any error, and with --strict on any warning too, so it fits
CI and pre-commit hooks.
`,
	}
	cmd.Flags().StringArray("file", nil, "a consumers file to check (as an argument does)")
	cmd.Flags().String("config", "", "a Caddy config whose consumers files to check")
	cmd.Flags().String("warn", "30d", "warn of keys expiring within this duration")
	cmd.Flags().Bool("strict", false, "exit 1 on warnings too")
	cmd.RunE = runCheck
	return cmd
}

// checked is a consumers source to check, and what the handlers that use it
// say about it.
type checked struct {
	kind, location string
	anonymous      []string
}

func runCheck(cmd *cobra.Command, args []string) error {
	config, _ := cmd.Flags().GetString("config")
	warnFlag, _ := cmd.Flags().GetString("warn")
	strict, _ := cmd.Flags().GetBool("strict")
	warn, err := parseDuration("warn", warnFlag)
	if err != nil {
		return err
	}
	files, _ := cmd.Flags().GetStringArray("file")
	if len(files) > 0 && len(args) > 0 {
		return fmt.Errorf("give the consumers files as arguments or with --file, not both")
	}
	args = append(args, files...)
	if (config == "") == (len(args) == 0) {
		return fmt.Errorf("give consumers files or --config, one of the two")
	}
	var sources []*checked
	if config != "" {
		if sources, err = configSources(config); err != nil {
			return err
		}
		if len(sources) == 0 {
			return fmt.Errorf("%s has no key_auth handler", config)
		}
	} else {
		for _, a := range args {
			sources = append(sources, &checked{kind: "file", location: a})
		}
	}
	out := cmd.OutOrStdout()
	var errs, warns int
	for _, s := range sources {
		switch s.kind {
		case "file":
			e, w := checkFile(out, s, warn)
			errs, warns = errs+e, warns+w
		case "http":
			fmt.Fprintf(out, "consumers http %s: not fetched; it must pass the same checks where it is served\n", s.location)
		default:
			fmt.Fprintf(out, "consumers %s: not checked\n", s.kind)
		}
	}
	fmt.Fprintf(out, "%s, %s\n", plural(errs, "error", "errors"), plural(warns, "warning", "warnings"))
	if errs > 0 || (strict && warns > 0) {
		return silent(cmd)
	}
	return nil
}

func checkFile(out io.Writer, s *checked, warnWithin time.Duration) (errs, warns int) {
	set, err := consumers.ParseFile(s.location)
	if err != nil {
		fmt.Fprintf(out, "error: consumers file %s: %v\n", s.location, err)
		return 1, 0
	}
	data, err := os.ReadFile(s.location)
	var doc *consumers.Document
	if err == nil {
		doc, err = consumers.DecodeDocument(data)
	}
	if err != nil { // changed since ParseFile read it
		fmt.Fprintf(out, "error: consumers file %s: %v\n", s.location, err)
		return 1, 0
	}
	var lines []string
	warnf := func(format string, args ...any) {
		lines = append(lines, "  warning: "+fmt.Sprintf(format, args...))
	}
	t := now()
	var plain, disabledConsumers, disabledKeys, canaries, expired int
	for ci := range doc.Consumers {
		c := &doc.Consumers[ci]
		if c.Disabled {
			disabledConsumers++
		}
		if len(c.Keys) == 0 && !c.Disabled && !slices.ContainsFunc(s.anonymous, func(a string) bool { return a == c.Username || a == c.ConsumerID() }) {
			warnf("consumer %q has no keys", c.Username)
		}
		for k := range c.Keys {
			cr := &c.Keys[k]
			where := fmt.Sprintf("consumer %q, credential %q", c.Username, c.CredentialID(k))
			if cr.Disabled {
				disabledKeys++
			}
			if cr.Canary {
				canaries++
			}
			if cr.Key != "" {
				plain++
				warnf("%s: plain key at rest (caddy key-auth hash --file %s)", where, s.location)
				if apikey.LooksGenerated(cr.Key) && !apikey.ChecksumOK(cr.Key) {
					warnf("%s: the key looks generated but its checksum is wrong (a typo?)", where)
				}
			}
			if cr.ExpiresAt == "" {
				continue
			}
			exp, _ := time.Parse(time.RFC3339, cr.ExpiresAt)
			switch {
			case !exp.After(t):
				expired++
				warnf("%s: expired at %s", where, cr.ExpiresAt)
			case exp.Sub(t) <= warnWithin:
				warnf("%s: expires at %s, in %s", where, cr.ExpiresAt, within(exp.Sub(t)))
			}
		}
	}
	for _, a := range s.anonymous {
		c, ok := set.FindConsumer(a)
		if !ok {
			warnf("anonymous consumer %q is not in the file: requests that continue as it get 500", a)
			continue
		}
		if dc, ok := doc.Consumer(c.Username()); ok && dc.Disabled {
			warnf("anonymous consumer %q is disabled: requests that continue as it get 500", a)
		}
	}
	consumers, keys := set.Len()
	fmt.Fprintf(out, "consumers file %s: %s, %s (%d hashed, %d plain)", s.location,
		plural(consumers, "consumer", "consumers"), plural(keys, "key", "keys"), keys-plain, plain)
	var extra []string
	for _, x := range []struct {
		n         int
		one, many string
	}{{expired, "expired", "expired"}, {disabledKeys, "key disabled", "keys disabled"}, {canaries, "canary", "canaries"}, {disabledConsumers, "consumer disabled", "consumers disabled"}} {
		if x.n > 0 {
			extra = append(extra, plural(x.n, x.one, x.many))
		}
	}
	if len(extra) > 0 {
		fmt.Fprintf(out, "; %s", strings.Join(extra, ", "))
	}
	fmt.Fprintln(out)
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	return 0, len(lines)
}

// configSources finds the consumers sources of every key_auth handler of a
// config: a Caddyfile, adapted as `caddy run` would, or JSON.
func configSources(path string) ([]*checked, error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfgJSON := body
	if !strings.EqualFold(filepath.Ext(path), ".json") {
		adapter := caddyconfig.GetAdapter("caddyfile")
		if adapter == nil {
			return nil, fmt.Errorf("no caddyfile adapter in this build")
		}
		if cfgJSON, _, err = adapter.Adapt(body, map[string]any{"filename": path}); err != nil {
			return nil, fmt.Errorf("adapting config %s: %w", path, err)
		}
	}
	var cfg any
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	var sources []*checked
	byKey := map[string]*checked{}
	repl := caddy.NewReplacer()
	var walkErr error
	walk(cfg, func(h map[string]any) {
		src, _ := h["consumers"].(map[string]any)
		s := &checked{kind: fmt.Sprint(src["source"])}
		switch s.kind {
		case "file":
			p, _ := src["path"].(string)
			abs, err := filepath.Abs(repl.ReplaceKnown(p, ""))
			if err != nil && walkErr == nil {
				walkErr = fmt.Errorf("consumers file %s: %w", p, err)
			}
			s.location = abs
		case "http":
			u, _ := src["url"].(string)
			s.location = redact(u)
		}
		key := s.kind + " " + s.location
		if prev, ok := byKey[key]; ok {
			s = prev
		} else {
			byKey[key] = s
			sources = append(sources, s)
		}
		if a, _ := h["anonymous"].(string); a != "" && !slices.Contains(s.anonymous, a) {
			s.anonymous = append(s.anonymous, a)
		}
	})
	return sources, walkErr
}

// walk calls found for every key_auth handler in a config, wherever it is
// nested (routes, subroutes, handle blocks).
func walk(v any, found func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == "key_auth" {
			found(v)
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys) // a stable order of output
		for _, k := range keys {
			walk(v[k], found)
		}
	case []any:
		for _, e := range v {
			walk(e, found)
		}
	}
}

// redact drops what may be a secret from a source URL, as the HTTP source's
// logs do: user info and query.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	u.User, u.RawQuery, u.ForceQuery = nil, "", false
	return u.String()
}
