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
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"
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
//
// In every form a value (not a kind nor a label name) may hold
// placeholders, resolved per request. What they resolve to is client
// input: a value no consumer can hold (an empty or over-long group name, one
// with white space or a comma, an empty username, id or custom_id, a label
// value with a control character, anonymous other than true or false)
// matches nothing, as any value nobody holds; it is never an error. Literal
// values, and the text around placeholders, are checked at load.
type MatchConsumer []ConsumerCondition

// ConsumerCondition is one test of a consumer: every field given must hold,
// each by at least one of its values. Names and values compare exactly, as
// the consumers document spells them. A value of Group, Username, ID,
// CustomID or Label may hold placeholders, resolved per request; a label's
// name may not.
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

	// Made at load by compile: each test's values, and whether any of
	// them is resolved per request.
	group, username, id, customID values
	label                         []labelTest
	perRequest                    bool
}

// values are the values of one test: the literal ones, in a set when the
// list is long (a lookup instead of a scan), apart from those holding a
// placeholder, resolved per request.
type values struct {
	lit  []string
	set  map[string]struct{}
	tmpl []string
}

type labelTest struct {
	name string
	vals values
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

// Provision readies the conditions' values: long lists for lookups, those
// holding placeholders for resolving per request.
func (m *MatchConsumer) Provision(caddy.Context) error {
	m.provision()
	return nil
}

func (m MatchConsumer) provision() { m.compile(true) }

// compile splits each condition's values; without placeholders (a CEL
// map, whose values CEL resolved already) every value is literal, so that
// a value is never resolved twice.
func (m MatchConsumer) compile(placeholders bool) {
	for i := range m {
		c := &m[i]
		c.group = valuesOf(c.Group, placeholders)
		c.username = valuesOf(c.Username, placeholders)
		c.id = valuesOf(c.ID, placeholders)
		c.customID = valuesOf(c.CustomID, placeholders)
		c.label = c.label[:0]
		for name, vals := range c.Label {
			c.label = append(c.label, labelTest{name, valuesOf(vals, placeholders)})
		}
		slices.SortFunc(c.label, func(a, b labelTest) int { return strings.Compare(a.name, b.name) })
		c.perRequest = len(c.group.tmpl)+len(c.username.tmpl)+len(c.id.tmpl)+len(c.customID.tmpl) > 0 ||
			slices.ContainsFunc(c.label, func(l labelTest) bool { return len(l.vals.tmpl) > 0 })
	}
}

func valuesOf(list []string, placeholders bool) values {
	if !placeholders || !slices.ContainsFunc(list, hasPlaceholder) {
		return values{lit: list, set: setOf(list)}
	}
	var v values
	for _, s := range list {
		if hasPlaceholder(s) {
			v.tmpl = append(v.tmpl, s)
		} else {
			v.lit = append(v.lit, s)
		}
	}
	v.set = setOf(v.lit)
	return v
}

// hasPlaceholder reports whether v may hold a placeholder (or an escaped
// brace): Caddy's replacer returns any other string as it is.
func hasPlaceholder(v string) bool { return strings.ContainsAny(v, "{}") }

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
// all, an empty list, or a literal value no consumers document can hold.
func (m MatchConsumer) Validate() error { return m.validate(true) }

// validate checks the values; with placeholders, a value holding one is
// checked only outside them (a CEL map has none: CEL resolved them).
func (m MatchConsumer) validate(placeholders bool) error {
	if len(m) == 0 {
		return errors.New("consumer matcher has no condition")
	}
	for i := range m {
		if err := m[i].validate(placeholders); err != nil {
			if len(m) > 1 {
				return fmt.Errorf("consumer matcher condition #%d: %w", i+1, err)
			}
			return fmt.Errorf("consumer matcher: %w", err)
		}
	}
	return nil
}

func (c *ConsumerCondition) validate(placeholders bool) error {
	if c.Group == nil && c.Username == nil && c.ID == nil && c.CustomID == nil && c.Label == nil && c.Anonymous == nil {
		return errors.New("no test: expected group, username, id, custom_id, label or anonymous")
	}
	if err := checkGroups(c.Group, placeholders); err != nil {
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
		if err := checkLabel(name, c.Label[name], placeholders); err != nil {
			return err
		}
	}
	return nil
}

func checkGroups(groups []string, placeholders bool) error {
	if groups != nil && len(groups) == 0 {
		return errors.New("group lists no group")
	}
	for _, g := range groups {
		if err := checkValue(g, placeholders, consumers.CheckGroupName); err != nil {
			return err
		}
	}
	return nil
}

// checkNames checks usernames, ids or custom ids: only an empty one is
// refused (a value holding a placeholder is never empty).
func checkNames(kind string, vals []string) error {
	if vals != nil && len(vals) == 0 {
		return fmt.Errorf("%s lists no value", kind)
	}
	if slices.Contains(vals, "") {
		return fmt.Errorf("%s lists an empty value, which no consumer has", kind)
	}
	return nil
}

// checkLabel checks a label test. Its name is always literal: a brace is
// not a label name's character.
func checkLabel(name string, vals []string, placeholders bool) error {
	if err := consumers.CheckLabelName(name); err != nil {
		return err
	}
	if len(vals) == 0 {
		return fmt.Errorf("label %q lists no value", name)
	}
	for _, v := range vals {
		if err := checkValue(v, placeholders, consumers.CheckLabelValue); err != nil {
			return fmt.Errorf("label %q: %w", name, err)
		}
	}
	return nil
}

// checkValue checks a value by the consumers document's rule for it. A
// value holding placeholders is checked without them, the text around them
// only: what they resolve to is client input, tried per request.
func checkValue(v string, placeholders bool, rule func(string) error) error {
	if !placeholders || !hasPlaceholder(v) {
		return rule(v)
	}
	if rest := withoutPlaceholders(v); rest != "" {
		if err := rule(rest); err != nil {
			return fmt.Errorf("%q outside its placeholders: %w", v, err)
		}
	}
	return nil
}

// withoutPlaceholders is v with every placeholder resolved to nothing, as
// Caddy's replacer parses them (escaped braces included).
func withoutPlaceholders(v string) string {
	repl := caddy.NewEmptyReplacer()
	repl.Map(func(string) (any, bool) { return "", true })
	return repl.ReplaceKnown(v, "")
}

// The rules of values that have no function of their own in package
// consumers.
func usernameRule(v string) error { return consumers.CheckIdentifier("username", v) }
func idRule(v string) error       { return consumers.CheckIdentifier("id", v) }
func customIDRule(v string) error { return consumers.CheckIdentifier("custom_id", v) }

// Match returns true if r matches m.
func (m MatchConsumer) Match(r *http.Request) bool {
	ok, _ := m.MatchWithError(r)
	return ok
}

// MatchWithError returns true if r matches m. It never fails: a request
// without a consumer, or a value resolved per request that no consumer can
// hold, simply does not match. The work is a placeholder lookup and a few
// string comparisons; it allocates nothing unless a value holds a
// placeholder.
func (m MatchConsumer) MatchWithError(r *http.Request) (bool, error) {
	c, anonymous, ok := ConsumerOf(r)
	if !ok {
		return false, nil
	}
	var repl *caddy.Replacer
	for i := range m {
		if m[i].perRequest && repl == nil {
			repl, _ = r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		}
		if !m[i].match(c, anonymous, repl) {
			return false, nil
		}
	}
	return true, nil
}

func (cond *ConsumerCondition) match(c consumers.Consumer, anonymous bool, repl *caddy.Replacer) bool {
	if cond.Anonymous != nil && *cond.Anonymous != anonymous {
		return false
	}
	if cond.Group != nil && !inAnyGroup(c, &cond.group, repl) {
		return false
	}
	if cond.Username != nil && !cond.username.holds(c.Username(), repl, true) {
		return false
	}
	if cond.ID != nil && !cond.id.holds(c.ID(), repl, true) {
		return false
	}
	if cond.CustomID != nil && !cond.customID.holds(c.CustomID(), repl, true) {
		return false
	}
	for i := range cond.label {
		l := &cond.label[i]
		v, ok := c.Label(l.name)
		if !ok || !l.vals.holds(v, repl, false) {
			return false
		}
	}
	return true
}

// holds reports whether s, a consumer's, is one of v. The consumer's values
// passed their rules at load, so a value resolved per request that fails
// them can never equal one: equality is the whole check, but for an
// identifier (emptyIsNone), where "" is the username, id or custom_id a
// consumer does not have, and no request's empty value may match it.
func (v *values) holds(s string, repl *caddy.Replacer, emptyIsNone bool) bool {
	if v.set != nil {
		if _, ok := v.set[s]; ok {
			return true
		}
	} else if slices.Contains(v.lit, s) {
		return true
	}
	for _, t := range v.tmpl {
		if repl == nil {
			break
		}
		if r := repl.ReplaceKnown(t, ""); r == s && (s != "" || !emptyIsNone) {
			return true
		}
	}
	return false
}

// inAnyGroup reports whether c is in one of groups. A long list is looked up
// per group of the consumer's instead of scanning the consumer's groups per
// group listed.
func inAnyGroup(c consumers.Consumer, groups *values, repl *caddy.Replacer) bool {
	if groups.set == nil {
		for _, g := range groups.lit {
			if c.InGroup(g) {
				return true
			}
		}
	} else {
		for h := c.GroupsHeader(); h != ""; {
			var g string
			g, h, _ = strings.Cut(h, ", ")
			if _, ok := groups.set[g]; ok {
				return true
			}
		}
	}
	for _, t := range groups.tmpl {
		if repl == nil {
			break
		}
		// InGroup matches only a whole group of the consumer's, which
		// passed CheckGroupName at load: no need to check g again.
		if c.InGroup(repl.ReplaceKnown(t, "")) {
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
				line.Group, err = vals, checkGroups(vals, true)
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
			if err := checkLabel(name, vals, true); err != nil {
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
// A value may be a placeholder, resolved per request; a key may not.
//
// Caddy builds the matcher of a constant map once, at load, and that of a
// map holding placeholders per request, from the values they resolved to.
// The two ways get two factories: the first refuses a value no consumer can
// hold, with an error that fails the load; the second, whose values are
// client input, lets such a value match nothing, and never errs (an error
// there would answer 500 and log the request, key included). The literal
// keys and values of a map holding placeholders are checked at load by a
// decorator of the program.
func (MatchConsumer) CELLibrary(caddy.Context) (cel.Library, error) {
	const macro, fn = "consumer", "consumer_matcher_request_map"
	args := []*cel.Type{caddyhttp.CELTypeJSON}
	atLoad, err := caddyhttp.CELMatcherImpl(macro, fn, args, caddyhttp.CELMatcherWithErrorFactory(celAtLoad))
	if err != nil {
		return nil, err
	}
	perRequest, err := caddyhttp.CELMatcherImpl(macro, fn, args, caddyhttp.CELMatcherWithErrorFactory(celPerRequest))
	if err != nil {
		return nil, err
	}
	// The macro and the function bound for per-request maps come from the
	// second; the decorator that builds a constant map's matcher, from the
	// first.
	return caddyhttp.NewMatcherCELLibrary(
		perRequest.CompileOptions(),
		append(atLoad.ProgramOptions(), cel.CustomDecorator(celLiterals(fn))),
	), nil
}

// celAtLoad builds the matcher of a constant map, refusing what the
// Caddyfile and JSON forms refuse.
func celAtLoad(data ref.Val) (caddyhttp.RequestMatcherWithError, error) {
	fields, err := caddyhttp.CELValueToMapStrList(data)
	if err != nil {
		return nil, err
	}
	c, err := conditionFromCEL(fields)
	if err != nil {
		return nil, err
	}
	m := MatchConsumer{c}
	if err := m.validate(false); err != nil {
		return nil, err
	}
	m.compile(false)
	return m, nil
}

// celPerRequest builds, per request, the matcher of a map holding
// placeholders. Its keys were checked at load; a value no consumer can hold
// is dropped, so that it matches nothing.
func celPerRequest(data ref.Val) (caddyhttp.RequestMatcherWithError, error) {
	fields, err := caddyhttp.CELValueToMapStrList(data)
	if err != nil {
		return noMatch{}, nil // a placeholder whose value is not a string
	}
	c, err := conditionFromCEL(fields)
	if err != nil {
		return noMatch{}, nil // anonymous neither 'true' nor 'false'
	}
	c.Group = slices.DeleteFunc(c.Group, fails(consumers.CheckGroupName))
	c.Username = slices.DeleteFunc(c.Username, fails(usernameRule))
	c.ID = slices.DeleteFunc(c.ID, fails(idRule))
	c.CustomID = slices.DeleteFunc(c.CustomID, fails(customIDRule))
	for name, vals := range c.Label {
		c.Label[name] = slices.DeleteFunc(vals, fails(consumers.CheckLabelValue))
	}
	m := MatchConsumer{c}
	m.compile(false)
	return m, nil
}

// fails turns a rule into DeleteFunc's test. An emptied list stays non-nil:
// its test holds for nobody.
func fails(rule func(string) error) func(string) bool {
	return func(v string) bool { return rule(v) != nil }
}

// noMatch matches no request.
type noMatch struct{}

func (noMatch) MatchWithError(*http.Request) (bool, error) { return false, nil }

// celLiterals checks at load the keys and literal values of a consumer()
// map that holds placeholders: the matcher is built per request, when an
// error could only fail the request. A key must be literal: the kind of
// test is configuration, not client input (and a key resolved per request
// could repeat another, which fails CEL's evaluation of the map).
func celLiterals(fn string) interpreter.InterpretableDecorator {
	return func(i interpreter.Interpretable) (interpreter.Interpretable, error) {
		call, ok := i.(interpreter.InterpretableCall)
		if !ok || call.OverloadID() != fn || len(call.Args()) != 2 {
			return i, nil
		}
		m, ok := call.Args()[1].(interpreter.InterpretableConstructor)
		if !ok {
			return i, nil // a constant map: celAtLoad checks it whole
		}
		init := m.InitVals() // key, value, key, value...
		fields := make(map[string][]string, len(init)/2)
		for j := 0; j+1 < len(init); j += 2 {
			key, ok := celConstString(init[j])
			if !ok {
				return nil, errors.New("consumer matcher: a key must be a literal string; only values may hold placeholders")
			}
			if _, dup := fields[key]; dup {
				return nil, fmt.Errorf("consumer matcher: key %q given twice", key)
			}
			lits, perRequest := celLiteralValues(init[j+1])
			if perRequest {
				// A stand-in any rule accepts: the literal values are
				// checked as in a constant map, the others per request.
				standIn := "x"
				if key == "anonymous" {
					standIn = "true"
				}
				lits = append(lits, standIn)
			}
			fields[key] = lits
		}
		c, err := conditionFromCEL(fields)
		if err != nil {
			return nil, err
		}
		if err := (MatchConsumer{c}).validate(false); err != nil {
			return nil, err
		}
		return i, nil
	}
}

func celConstString(i interpreter.Interpretable) (string, bool) {
	c, ok := i.(interpreter.InterpretableConst)
	if !ok {
		return "", false
	}
	s, ok := c.Value().(types.String)
	return string(s), ok
}

// celLiteralValues are the literal strings of a map's value, and whether
// it holds others, resolved per request.
func celLiteralValues(i interpreter.Interpretable) (lits []string, perRequest bool) {
	if s, ok := celConstString(i); ok {
		return []string{s}, false
	}
	if c, ok := i.(interpreter.InterpretableConst); ok {
		if l, ok := c.Value().(traits.Lister); ok {
			for it := l.Iterator(); it.HasNext() == types.True; {
				s, ok := it.Next().(types.String)
				if !ok {
					return lits, true
				}
				lits = append(lits, string(s))
			}
			return lits, false
		}
		return nil, true
	}
	if l, ok := i.(interpreter.InterpretableConstructor); ok && l.Type() == types.ListType {
		for _, e := range l.InitVals() {
			if s, ok := celConstString(e); ok {
				lits = append(lits, s)
			} else {
				perRequest = true
			}
		}
		return lits, perRequest
	}
	return nil, true
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
	_ caddyhttp.RequestMatcherWithError = noMatch{}
)
