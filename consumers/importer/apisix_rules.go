package importer

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// restrictionPlugin is APISIX's plugin that lets consumers on, or not, by
// name, consumer group, route or service.
const restrictionPlugin = "consumer-restriction"

// consumerRule is a consumer-restriction configured on a consumer: it
// applies to that consumer wherever it goes.
type consumerRule struct {
	username string
	cfg      map[string]any
}

// apisixRules are what the printed blocks need besides the key-auth
// plugins: the consumers' own consumer-restriction plugins, and the
// members of each consumer group (by username), for a rule on a group
// name no consumers document can hold.
type apisixRules struct {
	consumers    []consumerRule
	groupMembers map[string][]string
}

// apisixPlace is what a block knows of where it runs: the route's and the
// service's ids when one route or service is all it covers.
type apisixPlace struct {
	routeID, serviceID   string
	routeKnown, svcKnown bool
}

// plugins prints a block for each key-auth plugin of a global rule,
// service, plugin config or route, with the consumer-restriction plugins
// that run with it: its own holder's (a route's, else its plugin config's,
// else its service's, as APISIX merges them), every global rule's, and
// every consumer's. A route whose key-auth comes from its service or a
// global rule gets a block of its own when a rule depends on it.
func (a apisixRules) plugins(r *Result, f *apisixFile) {
	byID := func(list []apisixHolder) map[string]*apisixHolder {
		m := map[string]*apisixHolder{}
		for i := range list {
			if id := str(list[i].ID); id != "" {
				m[id] = &list[i]
			}
		}
		return m
	}
	services, pluginConfigs := byID(f.Services), byID(f.PluginConfigs)
	var globalRules []map[string]any
	for _, g := range f.GlobalRules {
		if cr, ok := g.Plugins[restrictionPlugin]; ok {
			globalRules = append(globalRules, cr)
		}
	}
	routeDependent := false
	for _, c := range a.consumers {
		if t := restrictionType(c.cfg); t == "route_id" || t == "service_id" {
			routeDependent = true
		}
	}
	for _, cr := range globalRules {
		if t := restrictionType(cr); t == "route_id" || t == "service_id" {
			routeDependent = true
		}
	}
	emit := func(where string, keyAuth, own map[string]any, place apisixPlace) {
		bs := blockSpec{where: where, lines: apisixKeyAuthLines(r, keyAuth, where)}
		if own != nil {
			a.restriction(r, &bs, own, "", place)
		}
		for _, cr := range globalRules {
			a.restriction(r, &bs, cr, "", place)
		}
		for _, c := range a.consumers {
			a.restriction(r, &bs, c.cfg, c.username, place)
		}
		r.addBlock(bs)
	}

	var globalKeyAuth map[string]any
	for i, g := range f.GlobalRules {
		if ka, ok := g.Plugins["key-auth"]; ok {
			emit(apisixWhere("global rule", g, i), ka, nil, apisixPlace{})
			globalKeyAuth = ka
		}
	}
	for i, s := range f.Services {
		if ka, ok := s.Plugins["key-auth"]; ok {
			emit(apisixWhere("service", s, i), ka, s.Plugins[restrictionPlugin], apisixPlace{serviceID: str(s.ID), svcKnown: true})
		}
	}
	for i, pc := range f.PluginConfigs {
		if ka, ok := pc.Plugins["key-auth"]; ok {
			emit(apisixWhere("plugin config", pc, i), ka, pc.Plugins[restrictionPlugin], apisixPlace{})
		}
	}
	for i, rt := range f.Routes {
		// APISIX merges a route's plugin config, then its service, under
		// the route's own plugins.
		layers := []map[string]map[string]any{rt.Plugins}
		if pc := pluginConfigs[str(rt.PluginConfigID)]; pc != nil {
			layers = append(layers, pc.Plugins)
		}
		svc := services[str(rt.ServiceID)]
		if svc != nil {
			layers = append(layers, svc.Plugins)
		}
		pick := func(name string) (map[string]any, int) {
			for i, l := range layers {
				if p, ok := l[name]; ok {
					return p, i
				}
			}
			return nil, -1
		}
		ka, kaLayer := pick("key-auth")
		cr, crLayer := pick(restrictionPlugin)
		place := apisixPlace{routeID: str(rt.ID), serviceID: str(rt.ServiceID), routeKnown: true, svcKnown: true}
		where := apisixWhere("route", rt, i)
		switch {
		case kaLayer == 0:
			emit(where, ka, cr, place)
		case ka != nil && (cr != nil && crLayer != kaLayer || routeDependent):
			// The key-auth of the route's plugin config or service, with
			// a rule that is the route's own or depends on it.
			from := "its plugin config"
			if svc != nil && kaLayer == len(layers)-1 {
				from = fmt.Sprintf("service %q", name(svc.Name, svc.ID))
			}
			emit(fmt.Sprintf("%s (inherited from %s)", where, from), ka, cr, place)
		case ka == nil && globalKeyAuth != nil && (cr != nil || routeDependent):
			emit(where+" (inherited from a global rule)", globalKeyAuth, cr, place)
		case ka == nil && globalKeyAuth == nil && cr != nil && crLayer == 0:
			r.note("consumer-restriction on %s: no key-auth runs there (another authentication plugin?): not migrated", where)
		}
	}
	if len(r.Blocks) == 0 {
		for _, c := range a.consumers {
			r.note("consumer %q: plugin %s applies on routes this file does not hold: not migrated (write its rule next to key_auth by hand)", c.username, restrictionPlugin)
		}
	}
}

// apisixWhere names a holder: by name, else id, with the route's uri or
// host; with neither, by its position.
func apisixWhere(kind string, h apisixHolder, i int) string {
	n := name(h.Name, h.ID)
	if n == "" {
		n = fmt.Sprintf("#%d", i+1)
	} else {
		n = fmt.Sprintf("%q", n)
	}
	var match []string
	if h.URI != "" {
		match = append(match, "uri "+h.URI)
	}
	if len(h.URIs) > 0 {
		match = append(match, "uris "+strings.Join(h.URIs, " "))
	}
	if h.Host != "" {
		match = append(match, "host "+h.Host)
	}
	if len(h.Hosts) > 0 {
		match = append(match, "hosts "+strings.Join(h.Hosts, " "))
	}
	if h.Name == "" && len(match) > 0 {
		return fmt.Sprintf("%s %s (%s)", kind, n, strings.Join(match, ", "))
	}
	return kind + " " + n
}

func restrictionType(cfg map[string]any) string {
	if t := str(cfg["type"]); t != "" {
		return t
	}
	return "consumer_name"
}

func strList(v any) ([]string, bool) {
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, false
	}
	out := make([]string, 0, len(list))
	for _, it := range list {
		out = append(out, str(it))
	}
	return out, true
}

// restriction adds a consumer-restriction's refusals to a block, for every
// consumer or (consumer not empty) for that consumer only. APISIX's order:
// no value for the type is 401; a blacklisted value, then one outside the
// whitelist, then a method outside the value's allowed_by_methods (unless
// whitelisted) gets rejected_code with rejected_msg or "The <type> is
// forbidden.". A rule that depends on what the block cannot know refuses.
func (a apisixRules) restriction(r *Result, bs *blockSpec, cfg map[string]any, consumer string, place apisixPlace) {
	if meta, ok := cfg["_meta"].(map[string]any); ok && meta["disable"] == true {
		return // APISIX skips a disabled plugin
	}
	typ := restrictionType(cfg)
	status := http.StatusForbidden
	if c, ok := cfg["rejected_code"].(float64); ok && c >= 200 && c <= 599 && c == float64(int(c)) {
		status = int(c)
	}
	msg := "The " + typ + " is forbidden."
	if m, ok := cfg["rejected_msg"].(string); ok {
		msg = m
	}
	whose := "every consumer"
	var prefix []string
	if consumer != "" {
		whose = fmt.Sprintf("consumer %q", consumer)
		prefix = []string{usernameMatch(false, []string{consumer})}
	}
	ruleWhere := fmt.Sprintf("%s on %s", restrictionPlugin, bs.where)
	if consumer != "" {
		ruleWhere = fmt.Sprintf("%s of consumer %q, on %s", restrictionPlugin, consumer, bs.where)
	}
	refuse := func(st int, m string, match ...string) {
		bs.refusals = append(bs.refusals, refusal{match: append(slices.Clone(prefix), match...), status: st, message: m})
	}
	white, hasWhite := strList(cfg["whitelist"])
	black, hasBlack := strList(cfg["blacklist"])
	type byMethods struct {
		user    string
		methods []string
	}
	var methods []byMethods
	if list, ok := cfg["allowed_by_methods"].([]any); ok {
		for _, it := range list {
			m, _ := it.(map[string]any)
			ms, _ := strList(m["methods"])
			methods = append(methods, byMethods{str(m["user"]), ms})
		}
	}
	for _, k := range sortedKeys(cfg) {
		switch k {
		case "type", "whitelist", "blacklist", "allowed_by_methods", "rejected_code", "rejected_msg", "_meta":
		default:
			r.note("%s: option %s has no equivalent", ruleWhere, k)
		}
	}
	methodLine := func(ms []string) string { return "not method " + argList(ms) }

	// A value the block knows already (a route's id, a consumer's own
	// name) is decided now.
	static := func(value string) {
		if hasBlack && slices.Contains(black, value) || hasWhite && !slices.Contains(white, value) {
			refuse(status, msg)
			return
		}
		if hasWhite {
			return
		}
		for _, m := range methods {
			if m.user == value && len(m.methods) > 0 {
				refuse(status, msg, methodLine(m.methods))
			}
		}
	}
	switch typ {
	case "consumer_name":
		if consumer != "" {
			static(consumer)
			return
		}
		if hasBlack {
			refuse(status, msg, usernameMatch(false, black))
		}
		if hasWhite {
			refuse(status, msg, usernameMatch(true, white))
			return
		}
		for _, m := range methods {
			if m.user != "" && len(m.methods) > 0 {
				refuse(status, msg, usernameMatch(false, []string{m.user}), methodLine(m.methods))
			}
		}
	case "consumer_group_id":
		known := sortedKeys(a.groupMembers)
		var valid []string
		for _, g := range known {
			if consumers.CheckGroupName(g) == nil {
				valid = append(valid, g)
			}
		}
		noGroup := "The request is rejected, please check the consumer_group_id for this request"
		if len(valid) == 0 {
			refuse(http.StatusUnauthorized, noGroup)
		} else {
			refuse(http.StatusUnauthorized, noGroup, "not consumer group "+argList(valid))
		}
		groups := func(list []string, black bool) (names, members []string) {
			for _, g := range list {
				if consumers.CheckGroupName(g) == nil {
					names = append(names, g)
					continue
				}
				if black {
					r.note("%s: group %q cannot be a group here: its members are refused by username", ruleWhere, g)
					members = appendNew(members, a.groupMembers[g]...)
				} else {
					r.note("%s: group %q cannot be a group here: its members are refused", ruleWhere, g)
				}
			}
			return names, members
		}
		if hasBlack {
			names, members := groups(black, true)
			if len(names) > 0 {
				refuse(status, msg, "consumer group "+argList(names))
			}
			if len(members) > 0 {
				refuse(status, msg, usernameMatch(false, members))
			}
		}
		if hasWhite {
			names, _ := groups(white, false)
			if len(names) == 0 {
				refuse(status, msg)
			} else {
				refuse(status, msg, "not consumer group "+argList(names))
			}
			return
		}
		for _, m := range methods {
			if consumers.CheckGroupName(m.user) == nil && len(m.methods) > 0 {
				refuse(status, msg, "consumer group "+caddyfileArg(m.user), methodLine(m.methods))
			}
		}
	case "route_id", "service_id":
		value, known := place.routeID, place.routeKnown
		if typ == "service_id" {
			value, known = place.serviceID, place.svcKnown
		}
		switch {
		case !known:
			r.note("%s: a rule by %s, and this block serves more than one: it refuses %s; write a block per route", ruleWhere, typ, whose)
			refuse(status, msg)
		case value == "":
			refuse(http.StatusUnauthorized, "The request is rejected, please check the "+typ+" for this request")
		default:
			static(value)
		}
	default:
		r.note("%s: type %s is unknown: the block refuses %s", ruleWhere, typ, whose)
		refuse(status, msg)
	}
}
