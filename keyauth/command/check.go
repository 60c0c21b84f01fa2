package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the caddyfile adapter
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/spf13/cobra"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/apikey"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/keyauth"

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
anonymous consumer that is missing or disabled. A file that holds limits
gets a line that sums them up; with --config, a warning when no key_auth
handler that uses the file has a limits block, where they are enforced.

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
	// fromConfig: the source was found in a config (--config), whose
	// handlers say whether its limits are enforced: they are where a
	// handler that uses it has a limits block (limitsEnforced).
	fromConfig, limitsEnforced bool
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
		return errors.New("give the consumers files as arguments or with --file, not both")
	}
	args = append(args, files...)
	if (config == "") == (len(args) == 0) {
		return errors.New("give consumers files or --config, one of the two")
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
	data, err := os.ReadFile(s.location)
	var set *consumers.Set
	var doc *consumers.Document
	if err == nil {
		set, err = consumers.Parse(data)
	}
	if err == nil {
		doc, err = consumers.DecodeDocument(data)
	}
	if err != nil {
		fmt.Fprintf(out, "error: consumers file %s: %v\n", s.location, err)
		return 1, 0
	}
	var lines []string
	warnf := func(format string, args ...any) {
		lines = append(lines, "  warning: "+fmt.Sprintf(format, args...))
	}
	// The consumers anonymous names, found as the handler finds them.
	anonymous := map[string]bool{}
	for _, a := range s.anonymous {
		if c, ok := set.FindConsumer(a); ok {
			anonymous[c.Username()] = true
		}
	}
	t := now()
	var plain, disabledConsumers, disabledKeys, canaries, expired int
	for ci := range doc.Consumers {
		c := &doc.Consumers[ci]
		if c.Disabled {
			disabledConsumers++
		}
		if len(c.Keys) == 0 && !c.Disabled && !anonymous[c.Username] {
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
		switch {
		case !ok:
			warnf("anonymous consumer %q is not in the file: requests that continue as it get 500", a)
		case c.Disabled():
			warnf("anonymous consumer %q is disabled: requests that continue as it get 500", a)
		}
	}
	summary, hasLimits := limitsSummary(set)
	if hasLimits && s.fromConfig && !s.limitsEnforced {
		warnf("the file holds limits, but no %s handler that uses it has a limits block: they are not enforced", keyAuthID.Name())
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
	if summary != "" {
		fmt.Fprintln(out, "  "+summary)
	}
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	return 0, len(lines)
}

// limitsSummary says what limits a set holds, in one line, and whether it
// holds any: on how many keys, consumers and groups, on which meters, and
// how many consumers get limits through their groups.
func limitsSummary(set *consumers.Set) (string, bool) {
	meters := map[string]bool{}
	note := func(l consumers.Limits) bool {
		for m := range l.All() {
			meters[m] = true
		}
		return l.Len() > 0
	}
	var keys, own, viaGroups int
	var groups []string
	for g := range set.Groups() {
		if a, b := note(g.Limits()), note(g.MemberLimits()); a || b {
			groups = append(groups, g.Name())
		}
	}
	nc, nk := set.Len()
	for i := range nk {
		if note(set.CredentialAt(i).Limits()) {
			keys++
		}
	}
	for i := range nc {
		c := set.ConsumerAt(i)
		if note(c.Limits()) {
			own++
		}
		for range c.LimitGroups() {
			viaGroups++
			break
		}
	}
	if len(meters) == 0 {
		return "", false
	}
	var on []string
	if keys > 0 {
		on = append(on, plural(keys, "key", "keys"))
	}
	if own > 0 {
		on = append(on, plural(own, "consumer", "consumers"))
	}
	if len(groups) > 0 {
		names := groups
		if len(names) > 5 {
			names = append(names[:5:5], "...")
		}
		on = append(on, fmt.Sprintf("%s (%s)", plural(len(groups), "group", "groups"), strings.Join(names, ", ")))
	}
	s := "limits on " + strings.Join(on, ", ") + "; meters: " + strings.Join(slices.Sorted(maps.Keys(meters)), ", ")
	if viaGroups > 0 {
		s += fmt.Sprintf("; %s in groups with limits", plural(viaGroups, "consumer", "consumers"))
	}
	return s, true
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
	var sources []*checked
	byKey := map[string]*checked{}
	err = findModules(cfgJSON, handlerKey, keyAuthID.Name(), func(raw json.RawMessage) error {
		s, anonymous, err := handlerSource(raw)
		if err != nil {
			return err
		}
		key := s.kind + " " + s.location
		if prev, ok := byKey[key]; ok {
			prev.limitsEnforced = prev.limitsEnforced || s.limitsEnforced
			s = prev
		} else {
			byKey[key] = s
			sources = append(sources, s)
		}
		if anonymous != "" && !slices.Contains(s.anonymous, anonymous) {
			s.anonymous = append(s.anonymous, anonymous)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return sources, nil
}

// What a config calls the key_auth handler and its source: the handler's
// module id, and the namespaces and inline keys of the fields that hold a
// route's handlers and the handler's source.
var (
	keyAuthID             = keyauth.Handler{}.CaddyModule().ID
	handlerNS, handlerKey = moduleField(reflect.TypeFor[caddyhttp.Route](), "HandlersRaw")
	sourceNS, sourceKey   = moduleField(reflect.TypeFor[keyauth.Handler](), "ConsumersRaw")
)

// moduleField reads the namespace and inline key of a struct field that
// holds a module, from its caddy struct tag, as Caddy does to load it.
func moduleField(t reflect.Type, field string) (namespace, inlineKey string) {
	f, ok := t.FieldByName(field)
	if !ok {
		panic(fmt.Sprintf("%s has no field %s", t, field))
	}
	tag, err := caddy.ParseStructTag(f.Tag.Get("caddy"))
	if err != nil {
		panic(fmt.Sprintf("%s.%s: %v", t, field, err))
	}
	return tag["namespace"], tag["inline_key"]
}

// handlerSource decodes a key_auth handler as Caddy would load it, and its
// consumers source, and says where that source reads from as the source
// itself does.
func handlerSource(raw json.RawMessage) (*checked, string, error) {
	m, err := decodeModule(handlerNS, handlerKey, raw)
	if err != nil {
		return nil, "", err
	}
	h := m.(*keyauth.Handler)
	if len(h.ConsumersRaw) == 0 {
		return nil, "", fmt.Errorf("a %s handler has no consumers source", keyAuthID.Name())
	}
	src, err := decodeModule(sourceNS, sourceKey, h.ConsumersRaw)
	if err != nil {
		return nil, "", fmt.Errorf("%s handler: %w", keyAuthID.Name(), err)
	}
	s := &checked{kind: src.CaddyModule().ID.Name(), fromConfig: true, limitsEnforced: hasLimitsBlock(raw)}
	switch src := src.(type) {
	case *sources.FileSource:
		if s.location, err = src.ResolvedPath(); err != nil {
			return nil, "", err
		}
	case *sources.HTTPSource:
		s.location = sources.RedactURL(src.ResolvedURL())
	}
	return s, h.Anonymous, nil
}

// hasLimitsBlock reports whether a key_auth handler's JSON has a limits
// block: where limits are counted (README, "Limits"). The handler decodes
// it; this only asks whether it is there and not null.
func hasLimitsBlock(raw json.RawMessage) bool {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return false
	}
	l, ok := fields["limits"]
	return ok && string(bytes.TrimSpace(l)) != "null"
}

// decodeModule decodes a module given inline, its name under inlineKey, as
// Caddy decodes it when it loads the config (strictly), without
// provisioning it.
func decodeModule(namespace, inlineKey string, raw json.RawMessage) (caddy.Module, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("module in %s: %w", namespace, err)
	}
	var name string
	if err := json.Unmarshal(fields[inlineKey], &name); err != nil || name == "" {
		return nil, fmt.Errorf("module in %s: no %q naming it", namespace, inlineKey)
	}
	delete(fields, inlineKey)
	rest, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	info, err := caddy.GetModule(namespace + "." + name)
	if err != nil {
		return nil, err
	}
	m := info.New()
	if err := caddy.StrictUnmarshalJSON(rest, m); err != nil {
		return nil, fmt.Errorf("decoding module %s: %w", info.ID, err)
	}
	return m, nil
}

// findModules calls found for every object of a config whose inlineKey
// names the module name, wherever it is nested (routes, subroutes, handle
// blocks, error routes), in a stable order.
func findModules(raw json.RawMessage, inlineKey, name string, found func(json.RawMessage) error) error {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return nil
	}
	switch raw[0] {
	case '{':
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return err
		}
		var n string
		if json.Unmarshal(obj[inlineKey], &n) == nil && n == name {
			if err := found(raw); err != nil {
				return err
			}
		}
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			if err := findModules(obj[k], inlineKey, name, found); err != nil {
				return err
			}
		}
	case '[':
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			return err
		}
		for _, e := range arr {
			if err := findModules(e, inlineKey, name, found); err != nil {
				return err
			}
		}
	}
	return nil
}
