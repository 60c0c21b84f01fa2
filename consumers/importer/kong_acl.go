package importer

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// kongMembers are the consumers of each Kong ACL group and consumer group,
// by username, as the file gives them (names key_auth cannot hold
// included): a rule on a group no consumers document can hold is refused
// by its members' names instead.
type kongMembers struct {
	acl, consumerGroup map[string][]string
}

func (m kongMembers) add(to map[string][]string, group, username string) {
	if group != "" && !slices.Contains(to[group], username) {
		to[group] = append(to[group], username)
	}
}

// groupRef names a consumer group: its name, else its id.
func groupRef(v any) string {
	if m, ok := v.(map[string]any); ok {
		for _, k := range []string{"name", "id"} {
			if s := str(m[k]); s != "" {
				return s
			}
		}
		return ""
	}
	return str(v)
}

// kongScope is where Kong applies a plugin: everywhere (global), a
// service, or a route (of a service, or not).
type kongScope struct {
	where   string
	service *kongScope // a route's service, when the file says
	keyAuth *kongPlugin
	acl     *kongPlugin
}

// kongACLMessage is the acl plugin's answer to a consumer its list refuses
// (kong/plugins/acl/handler.lua), which key_auth's allow and deny give too.
const kongACLMessage = "You cannot consume this service"

// kongPlugins prints a block for each key-auth plugin, carrying the acl
// plugin that Kong runs with it: a plugin on a route takes precedence over
// the same plugin on its service, which takes precedence over a global one.
// An acl narrower than the key-auth it runs with (a global key-auth, an acl
// on one route) gets a block of its own for that route or service.
func kongPlugins(r *Result, f *kongFile, usernameOf func(string) string, members kongMembers) {
	global := &kongScope{where: "every route (global plugin)"}
	services := map[string]*kongScope{}
	routes := map[string]*kongScope{}
	var order []*kongScope // services, each followed by its routes, then the other routes
	addService := func(s kongService, i int) *kongScope {
		sc := &kongScope{where: fmt.Sprintf("service %q", kongName(s.Name, s.ID, fmt.Sprintf("#%d", i+1)))}
		for _, k := range []string{s.Name, str(s.ID)} {
			if k != "" {
				services[k] = sc
			}
		}
		order = append(order, sc)
		return sc
	}
	addRoute := func(rt kongRoute, sc *kongScope, where string) *kongScope {
		rs := &kongScope{where: where, service: sc}
		for _, k := range []string{rt.Name, str(rt.ID)} {
			if k != "" {
				routes[k] = rs
			}
		}
		order = append(order, rs)
		return rs
	}
	type held struct {
		p     kongPlugin
		scope *kongScope
	}
	var plugins []held
	for i, s := range f.Services {
		sc := addService(s, i)
		for _, p := range s.Plugins {
			plugins = append(plugins, held{p, sc})
		}
		for j, rt := range s.Routes {
			rs := addRoute(rt, sc, fmt.Sprintf("%s of %s", kongRouteName(rt, j), sc.where))
			for _, p := range rt.Plugins {
				plugins = append(plugins, held{p, rs})
			}
		}
	}
	for j, rt := range f.Routes {
		var sc *kongScope
		if rt.Service != nil {
			sc = services[ref(rt.Service)]
		}
		where := kongRouteName(rt, j)
		if sc != nil {
			where += " of " + sc.where
		}
		rs := addRoute(rt, sc, where)
		for _, p := range rt.Plugins {
			plugins = append(plugins, held{p, rs})
		}
	}
	for _, p := range f.Plugins {
		plugins = append(plugins, held{p, nil})
	}

	// Each plugin to its scope; a top-level plugin names it. A scope the
	// file does not hold is made up, named as the plugin names it.
	for _, h := range plugins {
		p := h.p
		if p.Consumer != nil {
			r.note("plugin %s scoped to consumer %q not migrated", p.Name, usernameOf(ref(p.Consumer)))
			continue
		}
		if p.Name != "key-auth" && p.Name != "acl" {
			continue
		}
		sc := h.scope
		switch {
		case p.Route != nil:
			if sc = routes[ref(p.Route)]; sc == nil {
				sc = addRoute(kongRoute{Name: ref(p.Route)}, nil, fmt.Sprintf("route %q", ref(p.Route)))
			}
		case p.Service != nil:
			if sc = services[ref(p.Service)]; sc == nil {
				sc = addService(kongService{Name: ref(p.Service)}, 0)
			}
		case sc == nil:
			sc = global
		}
		if p.Name == "acl" && p.Enabled != nil && !*p.Enabled {
			r.note("acl on %s is disabled in Kong: not migrated", sc.where)
			continue
		}
		if p.Name == "key-auth" {
			sc.keyAuth = &p
		} else {
			sc.acl = &p
		}
	}

	// keyAuthOf and aclOf are what Kong runs on a scope, and where it was
	// configured.
	chain := func(sc *kongScope) []*kongScope {
		c := []*kongScope{sc}
		if sc.service != nil {
			c = append(c, sc.service)
		}
		if sc != global {
			c = append(c, global)
		}
		return c
	}
	keyAuthOf := func(sc *kongScope) *kongScope {
		for _, s := range chain(sc) {
			if s.keyAuth != nil {
				return s
			}
		}
		return nil
	}
	aclOf := func(sc *kongScope) *kongScope {
		for _, s := range chain(sc) {
			if s.acl != nil {
				return s
			}
		}
		return nil
	}
	emit := func(ka *kongScope, acl *kongScope, where string) {
		bs := blockSpec{where: where}
		if ka.keyAuth.Enabled != nil && !*ka.keyAuth.Enabled {
			bs.where += " (disabled in Kong)"
		}
		bs.lines = kongKeyAuthLines(r, ka.keyAuth.Config, bs.where, usernameOf)
		if acl != nil {
			kongACLRule(r, &bs, acl.acl.Config, acl.where, members)
		}
		r.addBlock(bs)
	}
	for _, sc := range append([]*kongScope{global}, order...) {
		switch ka := keyAuthOf(sc); {
		case sc.keyAuth != nil:
			emit(sc, aclOf(sc), sc.where)
		case sc.acl == nil:
			// Whatever runs here, a block printed for a broader scope
			// says it.
		case ka == nil && !slices.ContainsFunc(order, func(o *kongScope) bool { return o.keyAuth != nil && slices.Contains(chain(o), sc) }):
			r.note("acl on %s: no key-auth runs there (another authentication plugin?): not migrated", sc.where)
		case ka == nil:
			// The blocks of the key-auths under it carry it.
		default:
			from := ka.where
			if ka == global {
				from = "the global plugin"
			}
			emit(ka, sc, fmt.Sprintf("%s (inherited from %s)", sc.where, from))
		}
	}
}

// kongACLRule adds the acl plugin's rule to a block: allow, deny and
// hide_groups_header inside key_auth, and a refusal by username for what
// those cannot name. What cannot be expressed is noted, and refused rather
// than let on.
func kongACLRule(r *Result, bs *blockSpec, cfg map[string]any, where string, members kongMembers) {
	list := func(keys ...string) ([]string, bool) {
		for _, k := range keys {
			if v, ok := cfg[k].([]any); ok && len(v) > 0 {
				out := make([]string, 0, len(v))
				for _, g := range v {
					out = append(out, str(g))
				}
				return out, true
			}
		}
		return nil, false
	}
	// Kong 2.1 renamed whitelist and blacklist to allow and deny.
	allow, hasAllow := list("allow", "whitelist")
	deny, hasDeny := list("deny", "blacklist")
	consumerGroups := cfg["include_consumer_groups"] == true
	forbid := func(match ...string) {
		bs.refusals = append(bs.refusals, refusal{match: match, status: http.StatusForbidden, message: kongACLMessage})
	}
	switch {
	case !hasAllow && !hasDeny:
		r.note("acl on %s lists no group to allow or deny, which Kong refuses: the block refuses every consumer", where)
		forbid()
	case hasAllow && hasDeny:
		r.note("acl on %s has both allow and deny, which Kong refuses: the block applies both", where)
	}
	if hasAllow {
		var valid []string
		for _, g := range allow {
			if err := consumers.CheckGroupName(g); err != nil {
				r.note("acl on %s: allowed group %q cannot be a group here (%v): its members are refused", where, g, err)
				continue
			}
			if !slices.Contains(valid, g) {
				valid = append(valid, g)
			}
		}
		if consumerGroups {
			r.note("acl on %s includes consumer groups, which are not migrated: members of an allowed consumer group that are not in an allowed ACL group are refused", where)
		}
		if len(valid) == 0 {
			forbid()
		} else {
			bs.lines = append(bs.lines, "allow "+argList(valid))
		}
	}
	if hasDeny {
		var valid, refused []string
		for _, g := range deny {
			if err := consumers.CheckGroupName(g); err != nil {
				r.note("acl on %s: denied group %q cannot be a group here (%v): its members are refused by username", where, g, err)
				refused = appendNew(refused, members.acl[g]...)
				continue
			}
			if !slices.Contains(valid, g) {
				valid = append(valid, g)
			}
			if consumerGroups && len(members.consumerGroup[g]) > 0 {
				r.note("acl on %s includes consumer groups: the members of consumer group %q are refused by username", where, g)
				refused = appendNew(refused, members.consumerGroup[g]...)
			}
		}
		if len(valid) > 0 {
			bs.lines = append(bs.lines, "deny "+argList(valid))
		}
		if len(refused) > 0 {
			forbid(usernameMatch(false, refused))
		}
	}
	if cfg["hide_groups_header"] == true {
		bs.lines = append(bs.lines, "hide_groups_header")
	}
	if cfg["always_use_authenticated_groups"] == true {
		r.note("acl on %s: always_use_authenticated_groups has no key_auth equivalent (the groups are always the consumer's)", where)
	}
	for _, k := range sortedKeys(cfg) {
		switch k {
		case "allow", "deny", "whitelist", "blacklist", "hide_groups_header", "include_consumer_groups", "always_use_authenticated_groups":
		default:
			if cfg[k] != nil {
				r.note("acl on %s: option %s has no key_auth equivalent", where, k)
			}
		}
	}
}

func argList(vals []string) string {
	args := make([]string, len(vals))
	for i, v := range vals {
		args[i] = caddyfileArg(v)
	}
	return strings.Join(args, " ")
}

func appendNew(list []string, vals ...string) []string {
	for _, v := range vals {
		if !slices.Contains(list, v) {
			list = append(list, v)
		}
	}
	return list
}

// kongName is an entity's name, else its id, else its position.
func kongName(n string, id any, pos string) string {
	if n != "" {
		return n
	}
	if s := str(id); s != "" {
		return s
	}
	return pos
}

// kongRouteName describes a route: by name, else id; a route with
// neither is told by its position and what it matches.
func kongRouteName(rt kongRoute, i int) string {
	if n := kongName(rt.Name, rt.ID, ""); n != "" {
		return fmt.Sprintf("route %q", n)
	}
	var match []string
	for _, m := range []struct {
		kind string
		vals []string
	}{{"paths", rt.Paths}, {"hosts", rt.Hosts}, {"methods", rt.Methods}} {
		if len(m.vals) > 0 {
			match = append(match, m.kind+" "+strings.Join(m.vals, " "))
		}
	}
	if len(match) == 0 {
		return fmt.Sprintf("route #%d", i+1)
	}
	return fmt.Sprintf("route #%d (%s)", i+1, strings.Join(match, ", "))
}
