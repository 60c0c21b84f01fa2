package importer

import (
	"github.com/keyauth/caddy-keyauth/consumers"

	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Kong's declarative format, as decK (`deck gateway dump`) and DB-less
// Kong (`kong config db_export`, kong.yml) write it: credentials and ACLs
// nested in their consumer, or at the top level naming their consumer.
type kongFile struct {
	FormatVersion any `json:"_format_version"`
	Info          struct {
		SelectTags []string `json:"select_tags"`
	} `json:"_info"`
	Transform *bool          `json:"_transform"` // Kong's declarative format only
	Consumers []kongConsumer `json:"consumers"`
	KeyAuths  []kongKeyAuth  `json:"keyauth_credentials"`
	ACLs      []kongACL      `json:"acls"`
	Plugins   []kongPlugin   `json:"plugins"`
	Services  []kongService  `json:"services"`
	Routes    []kongRoute    `json:"routes"`
	// Other kinds of credentials, listed as not migrated.
	BasicAuths  []map[string]any `json:"basicauth_credentials"`
	JWTSecrets  []map[string]any `json:"jwt_secrets"`
	HMACAuths   []map[string]any `json:"hmacauth_credentials"`
	OAuth2s     []map[string]any `json:"oauth2_credentials"`
	MTLSAuths   []map[string]any `json:"mtls_auth_credentials"`
	ConsumerGrp []map[string]any `json:"consumer_groups"`
}

type kongConsumer struct {
	ID       any           `json:"id"`
	Username string        `json:"username"`
	CustomID string        `json:"custom_id"`
	Tags     []string      `json:"tags"`
	KeyAuths []kongKeyAuth `json:"keyauth_credentials"`
	ACLs     []kongACL     `json:"acls"`
	Plugins  []kongPlugin  `json:"plugins"`
	Groups   []any         `json:"groups"` // consumer group memberships

	BasicAuths []map[string]any `json:"basicauth_credentials"`
	JWTSecrets []map[string]any `json:"jwt_secrets"`
	HMACAuths  []map[string]any `json:"hmacauth_credentials"`
	OAuth2s    []map[string]any `json:"oauth2_credentials"`
	MTLSAuths  []map[string]any `json:"mtls_auth_credentials"`
}

type kongKeyAuth struct {
	ID       any      `json:"id"`
	Key      any      `json:"key"`
	TTL      *float64 `json:"ttl"`
	Tags     []string `json:"tags"`
	Consumer any      `json:"consumer"`
}

type kongACL struct {
	Group    string `json:"group"`
	Consumer any    `json:"consumer"`
}

type kongPlugin struct {
	Name     string         `json:"name"`
	ID       any            `json:"id"`
	Enabled  *bool          `json:"enabled"`
	Config   map[string]any `json:"config"`
	Consumer any            `json:"consumer"`
	Service  any            `json:"service"`
	Route    any            `json:"route"`
}

type kongService struct {
	ID      any          `json:"id"`
	Name    string       `json:"name"`
	Plugins []kongPlugin `json:"plugins"`
	Routes  []kongRoute  `json:"routes"`
}

type kongRoute struct {
	ID      any          `json:"id"`
	Name    string       `json:"name"`
	Service any          `json:"service"`
	Paths   []string     `json:"paths"`
	Hosts   []string     `json:"hosts"`
	Methods []string     `json:"methods"`
	Plugins []kongPlugin `json:"plugins"`
}

// ref is a foreign key of Kong's format: an id or endpoint key (a
// consumer's username), or an object holding one.
func ref(v any) string {
	if m, ok := v.(map[string]any); ok {
		for _, k := range []string{"id", "username", "name"} {
			if s := str(m[k]); s != "" {
				return s
			}
		}
		return ""
	}
	return str(v)
}

// Kong imports a Kong declarative file (decK or DB-less, _format_version
// 3.0 and the 1.1 and 2.1 it grew from), YAML or JSON.
func Kong(data []byte, o Options) (*Result, error) {
	data, err := renderDeck(data, lookupEnv(o))
	if err != nil {
		return nil, err
	}
	generic, jsonFile, err := decodeGeneric(data)
	if err != nil {
		return nil, err
	}
	if generic == nil {
		return nil, errors.New("the file is empty")
	}
	generic, admin, err := kongAdminAnswers(generic)
	if err != nil {
		return nil, err
	}
	var f kongFile
	if err := retype(generic, jsonFile, &f); err != nil {
		return nil, err
	}
	version := str(f.FormatVersion)
	var defaulted bool
	if admin {
		version = "3.0" // the Admin API's entities, as Kong 3.x serves them
	}
	if version == "" {
		// decK reads a file without one as 1.1 (its own sample has none);
		// Kong refuses a declarative file without one.
		if why := kongDeclarative(&f); why != "" {
			return nil, fmt.Errorf("a Kong DB-less file needs _format_version: this one has no _format_version, and has %s, which only Kong's declarative format holds (decK reads a file without one as 1.1)", why)
		}
		version, defaulted = "1.1", true
	}
	switch version {
	case "1.1", "2.1", "3.0":
	default:
		return nil, fmt.Errorf("kong _format_version %q: this import reads 1.1, 2.1 and 3.0", version)
	}
	r := &Result{Doc: &consumers.Document{Consumers: []consumers.ConsumerEntry{}}}
	r.fromAuthorization = kongReadsAuthorization(&f)
	if defaulted {
		r.note("the file has no _format_version: read as decK reads it, as 1.1")
	}
	// Kong names consumers by id or username; both find the index.
	index := map[string]int{}
	members := kongMembers{acl: map[string][]string{}, consumerGroup: map[string][]string{}}
	for i, kc := range f.Consumers {
		username := kc.Username
		where := fmt.Sprintf("consumer #%d", i+1)
		if username == "" {
			if kc.CustomID == "" {
				return nil, fmt.Errorf("%s has neither username nor custom_id", where)
			}
			username = kc.CustomID
			r.note("consumer with custom_id %q has no username: imported with its custom_id as username", kc.CustomID)
		}
		where = fmt.Sprintf("consumer %q", username)
		c := consumers.ConsumerEntry{Username: username, ID: str(kc.ID), CustomID: kc.CustomID, Tags: kc.Tags}
		// decK adds _info.select_tags to every entity of the file when
		// it syncs, and leaves them out of the entities when it dumps.
		c.Tags = appendNew(c.Tags, f.Info.SelectTags...)
		if c.ID == c.Username {
			c.ID = ""
		}
		for j, ka := range kc.KeyAuths {
			if err := kongKey(r, &c, ka, fmt.Sprintf("%s, keyauth credential #%d", where, j+1), o, f.Transform != nil); err != nil {
				return nil, err
			}
		}
		for _, acl := range kc.ACLs {
			members.add(members.acl, acl.Group, username)
			r.addGroup(&c, acl.Group, "ACL group")
		}
		kongOthers(r, where, kc.BasicAuths, "basic-auth credential")
		kongOthers(r, where, kc.JWTSecrets, "jwt secret")
		kongOthers(r, where, kc.HMACAuths, "hmac-auth credential")
		kongOthers(r, where, kc.OAuth2s, "oauth2 credential")
		kongOthers(r, where, kc.MTLSAuths, "mtls-auth credential")
		for _, p := range kc.Plugins {
			r.note("%s: consumer-scoped plugin %s not migrated", where, p.Name)
		}
		for _, g := range kc.Groups {
			members.add(members.consumerGroup, groupRef(g), username)
			r.note("%s: membership of consumer group %q not migrated (consumer groups carry plugin configs; ACL groups become groups)", where, groupRef(g))
		}
		r.Doc.Consumers = append(r.Doc.Consumers, c)
		for _, k := range []string{str(kc.ID), kc.Username, kc.CustomID} {
			if _, dup := index[k]; k != "" && !dup {
				index[k] = len(r.Doc.Consumers) - 1
			}
		}
	}
	consumerOf := func(v any, where string) (*consumers.ConsumerEntry, error) {
		name := ref(v)
		i, ok := index[name]
		if !ok {
			return nil, fmt.Errorf("%s names consumer %q, which the file does not hold", where, name)
		}
		return &r.Doc.Consumers[i], nil
	}
	for j, ka := range f.KeyAuths {
		where := fmt.Sprintf("keyauth_credentials #%d", j+1)
		c, err := consumerOf(ka.Consumer, where)
		if err != nil {
			return nil, err
		}
		if err := kongKey(r, c, ka, fmt.Sprintf("consumer %q, %s", c.Username, where), o, f.Transform != nil); err != nil {
			return nil, err
		}
	}
	for j, acl := range f.ACLs {
		c, err := consumerOf(acl.Consumer, fmt.Sprintf("acls #%d", j+1))
		if err != nil {
			return nil, err
		}
		members.add(members.acl, acl.Group, c.Username)
		r.addGroup(c, acl.Group, "ACL group")
	}
	usernameOf := func(v string) string {
		if i, ok := index[v]; ok {
			return r.Doc.Consumers[i].Username
		}
		return v
	}
	kongOthers(r, "top level", f.BasicAuths, "basic-auth credential")
	kongOthers(r, "top level", f.JWTSecrets, "jwt secret")
	kongOthers(r, "top level", f.HMACAuths, "hmac-auth credential")
	kongOthers(r, "top level", f.OAuth2s, "oauth2 credential")
	kongOthers(r, "top level", f.MTLSAuths, "mtls-auth credential")
	for _, g := range f.ConsumerGrp {
		if list, ok := g["consumers"].([]any); ok {
			for _, m := range list {
				members.add(members.consumerGroup, groupRef(g), usernameOf(ref(m)))
			}
		}
		r.note("consumer group %q not migrated (its plugin configs have no equivalent; ACL groups become groups)", groupRef(g))
	}

	kongPlugins(r, &f, usernameOf, members)
	return r, nil
}

// kongAdminEndpoints maps the Admin API's endpoints to the declarative
// format's collections: a dump of the Admin API is a JSON object holding
// each endpoint's list answer ({"data": [...], "next": null}) under the
// endpoint's name.
var kongAdminEndpoints = map[string]string{
	"consumers":       "consumers",
	"key-auths":       "keyauth_credentials",
	"acls":            "acls",
	"plugins":         "plugins",
	"services":        "services",
	"routes":          "routes",
	"consumer_groups": "consumer_groups",
	"basic-auths":     "basicauth_credentials",
	"jwts":            "jwt_secrets",
	"hmac-auths":      "hmacauth_credentials",
	"oauth2":          "oauth2_credentials",
	"mtls-auths":      "mtls_auth_credentials",
}

// kongAdminAnswers turns a dump of Admin API answers into the declarative
// format's shape, and says whether it was one: a file whose consumers
// (or key-auths) is an answer object rather than a list. An answer with a
// next page is refused: the keys on it would be lost without a word.
func kongAdminAnswers(generic any) (any, bool, error) {
	m, ok := generic.(map[string]any)
	if !ok {
		return generic, false, nil
	}
	_, consumersAnswer := m["consumers"].(map[string]any)
	_, keyAuths := m["key-auths"]
	if !consumersAnswer && !keyAuths {
		return generic, false, nil
	}
	out := map[string]any{}
	for _, endpoint := range sortedKeys(m) {
		name, known := kongAdminEndpoints[endpoint]
		answer, isAnswer := m[endpoint].(map[string]any)
		switch {
		case !known:
			return nil, true, fmt.Errorf("a dump of Admin API answers holds %q, which is not an endpoint this import reads (%s)", endpoint, strings.Join(sortedKeys(kongAdminEndpoints), ", "))
		case !isAnswer:
			return nil, true, fmt.Errorf("%s: not an Admin API list answer ({\"data\": [...], \"next\": null})", endpoint)
		case answer["next"] != nil:
			return nil, true, fmt.Errorf("%s: the answer has a next page, which the file does not hold: fetch it with ?size=1000 and follow next until it is null", endpoint)
		}
		// Kong's JSON encoder writes an empty list as {}.
		if d, empty := answer["data"].(map[string]any); !empty || len(d) > 0 {
			out[name] = answer["data"]
		}
	}
	return out, true, nil
}

// kongDeclarative names what makes a file Kong's declarative (DB-less)
// format rather than decK's, or "": _transform, or credentials at the top
// level naming their consumer.
func kongDeclarative(f *kongFile) string {
	switch {
	case f.Transform != nil:
		return "_transform"
	case f.KeyAuths != nil:
		return "top-level keyauth_credentials"
	case f.ACLs != nil:
		return "top-level acls"
	case f.BasicAuths != nil || f.JWTSecrets != nil || f.HMACAuths != nil || f.OAuth2s != nil || f.MTLSAuths != nil:
		return "top-level credentials"
	}
	return ""
}

// kongReadsAuthorization tells whether a key-auth of the file, wherever it
// is, has Authorization among its key_names (header names compare in any
// case).
func kongReadsAuthorization(f *kongFile) bool {
	var all []kongPlugin
	all = append(all, f.Plugins...)
	for _, s := range f.Services {
		all = append(all, s.Plugins...)
		for _, rt := range s.Routes {
			all = append(all, rt.Plugins...)
		}
	}
	for _, rt := range f.Routes {
		all = append(all, rt.Plugins...)
	}
	for _, p := range all {
		if p.Name != "key-auth" {
			continue
		}
		names, _ := p.Config["key_names"].([]any)
		for _, n := range names {
			if strings.EqualFold(str(n), "authorization") {
				return true
			}
		}
	}
	return false
}

func name(n string, id any) string {
	if n != "" {
		return n
	}
	return str(id)
}

// daoMaxTTL is Kong's largest ttl in seconds (DAO_MAX_TTL): a larger one
// is not a duration but an instant, the epoch seconds of the expiry, as
// DB-less files and `kong config db_export` hold it (Kong reads a
// declarative ttl as ttl - now).
const daoMaxTTL = 1e8

// maxInstant is the last second of year 9999, the end of RFC 3339.
const maxInstant = 253402300799

func kongKey(r *Result, c *consumers.ConsumerEntry, ka kongKeyAuth, where string, o Options, declarative bool) error {
	if ka.Key == nil {
		r.note("%s: no key in the file (Kong generated it): not migrated", where)
		return nil
	}
	key, err := keyString(ka.Key, where)
	if err != nil {
		return err
	}
	expires := ""
	if ka.TTL != nil && *ka.TTL != 0 {
		ttl := *ka.TTL
		if ttl < 0 || ttl > maxInstant || ttl != math.Trunc(ttl) {
			return fmt.Errorf("%s has a ttl that is neither seconds left nor an instant", where)
		}
		if ttl > daoMaxTTL {
			at := time.Unix(int64(ttl), 0).UTC()
			expires = at.Format(time.RFC3339)
			if !o.AsOf.IsZero() && at.Before(o.AsOf) {
				r.note("%s: expired at %s (its ttl is that instant): imported expired", where, expires)
			}
		} else {
			if o.AsOf.IsZero() {
				return fmt.Errorf("%s has a ttl, and no time it counts from", where)
			}
			if declarative {
				r.note("%s: a ttl of %d seconds in a declarative file, where Kong reads ttl as the instant of expiry: read as seconds left from %s", where, int64(ttl), o.AsOf.UTC().Format(time.RFC3339))
			}
			expires = o.AsOf.Add(time.Duration(ttl) * time.Second).UTC().Format(time.RFC3339)
		}
	}
	key = r.withoutScheme(key, where)
	r.warnUnrendered(key, where)
	if len(ka.Tags) > 0 {
		r.note("%s: tags %s not migrated (credentials have no tags)", where, strings.Join(ka.Tags, ","))
	}
	return addKey(c, str(ka.ID), key, expires, where, o.Plain)
}

func kongOthers(r *Result, where string, items []map[string]any, kind string) {
	for i, it := range items {
		id := str(it["id"])
		if id == "" {
			id = fmt.Sprintf("#%d", i+1)
		}
		w := where
		if c := ref(it["consumer"]); c != "" {
			w = fmt.Sprintf("consumer %q", c)
		}
		r.note("%s: %s %s not migrated", w, kind, id)
	}
}

// kongKeyAuthLines maps the key-auth plugin's config (Kong 3.x schema) to
// key_auth options; options at Kong's defaults are left out, as they are
// ours too.
func kongKeyAuthLines(r *Result, cfg map[string]any, where string, usernameOf func(string) string) []string {
	var lines []string
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := cfg[k]
		switch k {
		case "key_names":
			list, _ := v.([]any)
			var names []string
			for _, n := range list {
				names = append(names, caddyfileArg(str(n)))
			}
			if len(names) > 0 && !(len(names) == 1 && names[0] == "apikey") {
				lines = append(lines, "key_names "+strings.Join(names, " "))
			}
		case "key_in_header", "key_in_query", "run_on_preflight":
			if b, ok := v.(bool); ok && !b {
				lines = append(lines, k+" false")
			}
		case "key_in_body":
			if b, ok := v.(bool); ok && b {
				lines = append(lines, "key_in_body true")
			}
		case "hide_credentials":
			if b, ok := v.(bool); ok && b {
				lines = append(lines, "hide_credentials")
			}
		case "anonymous":
			if s := str(v); s != "" {
				lines = append(lines, "anonymous "+caddyfileArg(usernameOf(s)))
			}
		case "realm":
			if s := str(v); s != "" {
				lines = append(lines, "realm "+caddyfileArg(s))
			}
		default:
			if v != nil {
				r.note("key-auth on %s: option %s has no key_auth equivalent", where, k)
			}
		}
	}
	return lines
}
