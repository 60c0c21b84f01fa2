package keyauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types/ref"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keyauth/caddy-keyauth/consumers"
)

func init() {
	caddy.RegisterModule(MatchConsumer(nil))
}

// MatchConsumer matches requests by the consumer a key_auth handler earlier
// in the request established, authenticated or anonymous. Its conditions
// must all hold. A request no key_auth identified (none ran, a preflight let
// through, a failure handed to handle_errors, or another auth handler such as
// basic_auth identified it after key_auth) matches no consumer matcher; only
// a `not` around one matches it.
//
// JSON: one condition object, or an array of them when a kind of test
// repeats (the Caddyfile's lines `consumer group gold` and `consumer group
// eu` both must hold):
//
//	{"consumer": {"group": ["gold", "partner"], "label": {"plan": ["pro"]}}}
//	{"consumer": [{"group": ["gold"]}, {"group": ["eu"]}]}
//
// Caddyfile, one test a line; values within a line are OR-ed, lines are
// AND-ed:
//
//	consumer group     <group...>
//	consumer username  <username...>
//	consumer id        <consumer_id...>
//	consumer custom_id <custom_id...>
//	consumer label     <name> <value...>
//	consumer anonymous [true|false]
//
// CEL (expression): a map whose keys are the Caddyfile's kinds, a label's
// as "label.<name>", and whose values are a string or a list of strings:
//
//	expression consumer({'group': ['gold', 'partner'], 'label.plan': 'pro'})
//	expression consumer({'anonymous': 'true'}) || {http.request.method} == 'GET'
type MatchConsumer []ConsumerCondition

// ConsumerCondition is one test of a consumer: every field given must hold,
// each by at least one of its values. Names and values compare exactly, as
// the consumers document spells them.
type ConsumerCondition struct {
	// Group: the consumer is in at least one of these groups (its `groups`
	// in the consumers document, Kong's ACL groups, APISIX's consumer
	// groups). A name follows the document's rules: 1 to 128 characters
	// without white space, commas or control characters.
	Group []string `json:"group,omitempty"`

	// Username: the consumer's username is one of these.
	Username []string `json:"username,omitempty"`

	// ID: the consumer's id (X-Consumer-ID, which defaults to the
	// username) is one of these.
	ID []string `json:"id,omitempty"`

	// CustomID: the consumer's custom_id is one of these. A consumer
	// without a custom_id matches none.
	CustomID []string `json:"custom_id,omitempty"`

	// Label maps a label name to values: the consumer has that label with
	// one of the values (APISIX's labels). Each name must hold, so two
	// names are AND-ed. Names are 1 to 64 letters, digits, '_', '-' or
	// '.'; values are at most 1 KB without control characters, and may be
	// empty.
	Label map[string][]string `json:"label,omitempty"`

	// Anonymous: true matches the anonymous consumer key_auth let a
	// request on as (no valid key, `anonymous` configured); false matches
	// a consumer that presented a valid key. Omitted, both match.
	Anonymous *bool `json:"anonymous,omitempty"`

	// Sets of long lists, made at load: a lookup instead of a scan.
	groupSet, usernameSet, idSet, customIDSet map[string]struct{}
}

// setFrom is the length of a list from which it is looked up in a set:
// below it, comparing a few strings is quicker than hashing one.
const setFrom = 9

// CaddyModule returns the Caddy module information.
func (MatchConsumer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.matchers.consumer",
		New: func() caddy.Module { return new(MatchConsumer) },
	}
}

// Provision readies the conditions' long lists for lookups.
func (m *MatchConsumer) Provision(caddy.Context) error {
	m.provision()
	return nil
}

func (m MatchConsumer) provision() {
	for i := range m {
		c := &m[i]
		c.groupSet = setOf(c.Group)
		c.usernameSet = setOf(c.Username)
		c.idSet = setOf(c.ID)
		c.customIDSet = setOf(c.CustomID)
	}
}

func setOf(list []string) map[string]struct{} {
	if len(list) < setFrom {
		return nil
	}
	s := make(map[string]struct{}, len(list))
	for _, v := range list {
		s[v] = struct{}{}
	}
	return s
}

// Validate refuses a matcher that could never do what it says: no test at
// all, an empty list, or a name no consumers document can hold.
func (m MatchConsumer) Validate() error {
	if len(m) == 0 {
		return errors.New("consumer matcher has no condition")
	}
	for i := range m {
		if err := m[i].validate(); err != nil {
			if len(m) > 1 {
				return fmt.Errorf("consumer matcher condition #%d: %w", i+1, err)
			}
			return fmt.Errorf("consumer matcher: %w", err)
		}
	}
	return nil
}

func (c *ConsumerCondition) validate() error {
	if c.Group == nil && c.Username == nil && c.ID == nil && c.CustomID == nil && c.Label == nil && c.Anonymous == nil {
		return errors.New("no test: expected group, username, id, custom_id, label or anonymous")
	}
	if err := checkGroups(c.Group); err != nil {
		return err
	}
	for _, l := range []struct {
		kind string
		vals []string
	}{{"username", c.Username}, {"id", c.ID}, {"custom_id", c.CustomID}} {
		if err := checkNames(l.kind, l.vals); err != nil {
			return err
		}
	}
	if c.Label != nil && len(c.Label) == 0 {
		return errors.New("label names no label")
	}
	// In name order: the first error is the same on every load.
	names := make([]string, 0, len(c.Label))
	for name := range c.Label {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := checkLabel(name, c.Label[name]); err != nil {
			return err
		}
	}
	return nil
}

func checkGroups(groups []string) error {
	if groups != nil && len(groups) == 0 {
		return errors.New("group lists no group")
	}
	for _, g := range groups {
		if err := consumers.CheckGroupName(g); err != nil {
			return err
		}
	}
	return nil
}

func checkNames(kind string, vals []string) error {
	if vals != nil && len(vals) == 0 {
		return fmt.Errorf("%s lists no value", kind)
	}
	if slices.Contains(vals, "") {
		return fmt.Errorf("%s lists an empty value, which no consumer has", kind)
	}
	return nil
}

func checkLabel(name string, vals []string) error {
	if err := consumers.CheckLabelName(name); err != nil {
		return err
	}
	if len(vals) == 0 {
		return fmt.Errorf("label %q lists no value", name)
	}
	for _, v := range vals {
		if err := consumers.CheckLabelValue(v); err != nil {
			return fmt.Errorf("label %q: %w", name, err)
		}
	}
	return nil
}

// Match returns true if r matches m.
func (m MatchConsumer) Match(r *http.Request) bool {
	ok, _ := m.MatchWithError(r)
	return ok
}

// MatchWithError returns true if r matches m. It never fails: a request
// without a consumer simply does not match. The work is a placeholder
// lookup and a few string comparisons; it allocates nothing.
func (m MatchConsumer) MatchWithError(r *http.Request) (bool, error) {
	c, anonymous, ok := ConsumerOf(r)
	if !ok {
		return false, nil
	}
	for i := range m {
		if !m[i].match(c, anonymous) {
			return false, nil
		}
	}
	return true, nil
}

func (cond *ConsumerCondition) match(c consumers.Consumer, anonymous bool) bool {
	if cond.Anonymous != nil && *cond.Anonymous != anonymous {
		return false
	}
	if cond.Group != nil && !inAnyGroup(c, cond.Group, cond.groupSet) {
		return false
	}
	if cond.Username != nil && !oneOf(c.Username(), cond.Username, cond.usernameSet) {
		return false
	}
	if cond.ID != nil && !oneOf(c.ID(), cond.ID, cond.idSet) {
		return false
	}
	if cond.CustomID != nil && !oneOf(c.CustomID(), cond.CustomID, cond.customIDSet) {
		return false
	}
	for name, vals := range cond.Label {
		v, ok := c.Label(name)
		if !ok || !slices.Contains(vals, v) {
			return false
		}
	}
	return true
}

func oneOf(v string, list []string, set map[string]struct{}) bool {
	if set != nil {
		_, ok := set[v]
		return ok
	}
	return slices.Contains(list, v)
}

// inAnyGroup reports whether c is in one of groups. A long list is looked up
// per group of the consumer's instead of scanning the consumer's groups per
// group listed.
func inAnyGroup(c consumers.Consumer, groups []string, set map[string]struct{}) bool {
	if set == nil {
		for _, g := range groups {
			if c.InGroup(g) {
				return true
			}
		}
		return false
	}
	for h := c.GroupsHeader(); h != ""; {
		var g string
		g, h, _ = strings.Cut(h, ", ")
		if _, ok := set[g]; ok {
			return true
		}
	}
	return false
}

// UnmarshalCaddyfile sets up the matcher from Caddyfile tokens. Syntax:
//
//	consumer group     <group...>
//	consumer username  <username...>
//	consumer id        <consumer_id...>
//	consumer custom_id <custom_id...>
//	consumer label     <name> <value...>
//	consumer anonymous [true|false]
//
// A named matcher's block may hold several such lines: all must hold.
func (m *MatchConsumer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for d.Next() {
		if !d.NextArg() {
			return d.Err("consumer matcher: expected group, username, id, custom_id, label or anonymous")
		}
		kind := d.Val()
		var line ConsumerCondition
		switch kind {
		case "group", "username", "id", "custom_id":
			vals := d.RemainingArgs()
			if len(vals) == 0 {
				return d.Errf("consumer matcher: %s needs at least one value", kind)
			}
			var err error
			switch kind {
			case "group":
				line.Group, err = vals, checkGroups(vals)
			case "username":
				line.Username, err = vals, checkNames(kind, vals)
			case "id":
				line.ID, err = vals, checkNames(kind, vals)
			case "custom_id":
				line.CustomID, err = vals, checkNames(kind, vals)
			}
			if err != nil {
				return d.Errf("consumer matcher: %v", err)
			}
		case "label":
			if !d.NextArg() {
				return d.Err("consumer matcher: label needs a name and at least one value")
			}
			name := d.Val()
			vals := d.RemainingArgs()
			if len(vals) == 0 {
				return d.Errf("consumer matcher: label %s needs at least one value", name)
			}
			if err := checkLabel(name, vals); err != nil {
				return d.Errf("consumer matcher: %v", err)
			}
			line.Label = map[string][]string{name: vals}
		case "anonymous":
			anon := true
			if d.NextArg() {
				switch d.Val() {
				case "true":
				case "false":
					anon = false
				default:
					return d.Errf("consumer matcher: anonymous takes true or false, not %q", d.Val())
				}
				if d.NextArg() {
					return d.ArgErr()
				}
			}
			if slices.ContainsFunc(*m, func(c ConsumerCondition) bool { return c.Anonymous != nil }) {
				return d.Err("consumer matcher: anonymous given twice")
			}
			line.Anonymous = &anon
		default:
			return d.Errf("consumer matcher: unknown test %q; expected group, username, id, custom_id, label or anonymous", kind)
		}
		if d.NextBlock(0) {
			d.Prev() // the error names the line of the '{'
			return d.Err("consumer matcher: blocks are not supported")
		}
		m.and(line)
	}
	return nil
}

// and adds the test of one Caddyfile line to the first condition that has
// no test of its kind yet, so that the JSON is one condition object unless a
// kind repeats.
func (m *MatchConsumer) and(line ConsumerCondition) {
	for i := range *m {
		c := &(*m)[i]
		switch {
		case line.Group != nil && c.Group == nil:
			c.Group = line.Group
		case line.Username != nil && c.Username == nil:
			c.Username = line.Username
		case line.ID != nil && c.ID == nil:
			c.ID = line.ID
		case line.CustomID != nil && c.CustomID == nil:
			c.CustomID = line.CustomID
		case line.Anonymous != nil && c.Anonymous == nil:
			c.Anonymous = line.Anonymous
		case line.Label != nil:
			name := onlyKey(line.Label)
			if _, taken := c.Label[name]; taken {
				continue
			}
			if c.Label == nil {
				c.Label = map[string][]string{}
			}
			c.Label[name] = line.Label[name]
		default:
			continue
		}
		return
	}
	*m = append(*m, line)
}

func onlyKey(m map[string][]string) string {
	for k := range m {
		return k
	}
	return ""
}

// MarshalJSON writes one condition as an object, several as an array.
func (m MatchConsumer) MarshalJSON() ([]byte, error) {
	if len(m) == 1 {
		return json.Marshal(m[0])
	}
	return json.Marshal([]ConsumerCondition(m))
}

// UnmarshalJSON reads one condition object or an array of them, refusing
// unknown fields as Caddy does.
func (m *MatchConsumer) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var conds []ConsumerCondition
		if err := caddy.StrictUnmarshalJSON(b, &conds); err != nil {
			return fmt.Errorf("consumer matcher: %w", err)
		}
		*m = conds
		return nil
	}
	var c ConsumerCondition
	if err := caddy.StrictUnmarshalJSON(b, &c); err != nil {
		return fmt.Errorf("consumer matcher: %w", err)
	}
	*m = MatchConsumer{c}
	return nil
}

// CELLibrary makes the matcher a function of `expression`:
//
//	expression consumer({'group': ['gold', 'partner']})
//	expression consumer({'label.plan': 'free', 'anonymous': 'false'})
//
// The keys are the Caddyfile's kinds, a label's is "label.<name>", and the
// values a string or a list of strings; anonymous takes 'true' or 'false'.
// A value may be a placeholder, resolved per request.
func (MatchConsumer) CELLibrary(caddy.Context) (cel.Library, error) {
	return caddyhttp.CELMatcherImpl(
		"consumer",
		"consumer_matcher_request_map",
		[]*cel.Type{caddyhttp.CELTypeJSON},
		func(data ref.Val) (caddyhttp.RequestMatcherWithError, error) {
			fields, err := caddyhttp.CELValueToMapStrList(data)
			if err != nil {
				return nil, err
			}
			c, err := conditionFromCEL(fields)
			if err != nil {
				return nil, err
			}
			m := MatchConsumer{c}
			if err := m.Validate(); err != nil {
				return nil, err
			}
			m.provision()
			return m, nil
		},
	)
}

func conditionFromCEL(fields map[string][]string) (ConsumerCondition, error) {
	var c ConsumerCondition
	for key, vals := range fields {
		if vals == nil {
			vals = []string{}
		}
		switch key {
		case "group":
			c.Group = vals
		case "username":
			c.Username = vals
		case "id":
			c.ID = vals
		case "custom_id":
			c.CustomID = vals
		case "anonymous":
			if len(vals) != 1 || vals[0] != "true" && vals[0] != "false" {
				return c, fmt.Errorf("consumer matcher: anonymous takes 'true' or 'false'")
			}
			anon := vals[0] == "true"
			c.Anonymous = &anon
		default:
			name, ok := strings.CutPrefix(key, "label.")
			if !ok {
				return c, fmt.Errorf("consumer matcher: unknown key %q; expected group, username, id, custom_id, anonymous or label.<name>", key)
			}
			if c.Label == nil {
				c.Label = map[string][]string{}
			}
			c.Label[name] = vals
		}
	}
	return c, nil
}

// Interface guards
var (
	_ caddy.Provisioner                 = (*MatchConsumer)(nil)
	_ caddy.Validator                   = (*MatchConsumer)(nil)
	_ caddyhttp.RequestMatcherWithError = (*MatchConsumer)(nil)
	_ caddyfile.Unmarshaler             = (*MatchConsumer)(nil)
	_ caddyhttp.CELLibraryProducer      = (*MatchConsumer)(nil)
	_ json.Marshaler                    = MatchConsumer(nil)
	_ json.Unmarshaler                  = (*MatchConsumer)(nil)
)
