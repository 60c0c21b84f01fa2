package importer

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// APISIX's standalone file (conf/apisix.yaml, or apisix.json) and its Admin
// API's list answer (GET /apisix/admin/consumers, and
// /apisix/admin/consumers/<username>/credentials).
type apisixFile struct {
	Consumers      []apisixConsumer `json:"consumers"`
	Routes         []apisixHolder   `json:"routes"`
	Services       []apisixHolder   `json:"services"`
	GlobalRules    []apisixHolder   `json:"global_rules"`
	PluginConfigs  []apisixHolder   `json:"plugin_configs"`
	ConsumerGroups []apisixHolder   `json:"consumer_groups"`

	// The Admin API's answer.
	List []struct {
		Key   string         `json:"key"`
		Value apisixConsumer `json:"value"`
	} `json:"list"`
}

// apisixConsumer is a consumer, or (APISIX 3.11+) a credential: an entry
// whose id is <username>/credentials/<credential id>.
type apisixConsumer struct {
	Username string                    `json:"username"`
	ID       any                       `json:"id"`
	Desc     string                    `json:"desc"`
	Labels   map[string]string         `json:"labels"`
	GroupID  any                       `json:"group_id"`
	Plugins  map[string]map[string]any `json:"plugins"`
}

// apisixHolder is anything that carries plugins: a route, a service, a
// global rule, a plugin config, a consumer group.
type apisixHolder struct {
	ID             any                       `json:"id"`
	Name           string                    `json:"name"`
	URI            string                    `json:"uri"`
	URIs           []string                  `json:"uris"`
	Host           string                    `json:"host"`
	Hosts          []string                  `json:"hosts"`
	ServiceID      any                       `json:"service_id"`
	PluginConfigID any                       `json:"plugin_config_id"`
	Plugins        map[string]map[string]any `json:"plugins"`
}

// readAPISIX reads an APISIX file with APISIX's ${{VAR}} substituted: in
// the text of a YAML file before it is parsed, in the strings of a JSON
// file after, as APISIX does. The Admin API's answer is what APISIX
// stored: nothing in it is substituted.
func readAPISIX(data []byte, o Options) (*apisixFile, error) {
	lookup := lookupEnv(o)
	var f apisixFile
	if !isJSON(data) {
		text, _, err := substitute(string(data), lookup)
		if err != nil {
			return nil, err
		}
		data = []byte(text)
	}
	generic, jsonFile, err := decodeGeneric(data)
	if err != nil {
		return nil, err
	}
	if m, ok := generic.(map[string]any); ok && jsonFile && m["list"] == nil {
		if generic, err = substituteTree(generic, lookup); err != nil {
			return nil, err
		}
	}
	if err := retype(generic, jsonFile, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// endFlag is what APISIX looks for at the end of apisix.yaml before it
// reads it: a file cut short by a partial write has none.
var endFlag = regexp.MustCompile(`#END\s*$`)

var credentialID = regexp.MustCompile(`^(?:/apisix/consumers/)?([^/]+)/credentials/([^/]+)$`)

// APISIX imports an APISIX standalone file (YAML or JSON) or an Admin API
// consumer list (JSON).
func APISIX(data []byte, o Options) (*Result, error) {
	f, err := readAPISIX(data, o)
	if err != nil {
		return nil, err
	}
	missingEnd := !isJSON(data) && !endFlag.Match(data)
	entries := f.Consumers
	if f.List != nil {
		for _, it := range f.List {
			v := it.Value
			if m := credentialID.FindStringSubmatch(it.Key); m != nil {
				v.ID = m[1] + "/credentials/" + m[2]
			}
			entries = append(entries, v)
		}
	}
	if f.Consumers == nil && f.List == nil {
		return nil, fmt.Errorf("not an APISIX consumers file: it has neither consumers (standalone) nor list (Admin API)")
	}
	r := &Result{Doc: &consumers.Document{Consumers: []consumers.ConsumerEntry{}}}
	for _, list := range [][]apisixHolder{f.GlobalRules, f.Services, f.PluginConfigs, f.Routes} {
		for _, h := range list {
			if ka, ok := h.Plugins["key-auth"]; ok && strings.EqualFold(str(ka["header"]), "authorization") {
				r.fromAuthorization = true
			}
		}
	}
	index := map[string]int{}
	rules := apisixRules{groupMembers: map[string][]string{}}
	var credentials []apisixConsumer
	for i, ac := range entries {
		if m := credentialID.FindStringSubmatch(str(ac.ID)); m != nil && ac.Username == "" {
			credentials = append(credentials, ac)
			continue
		}
		if ac.Username == "" {
			return nil, fmt.Errorf("consumer #%d has no username", i+1)
		}
		where := fmt.Sprintf("consumer %q", ac.Username)
		c := consumers.ConsumerEntry{Username: ac.Username}
		for _, k := range sortedKeys(ac.Labels) {
			if k == "custom_id" {
				c.CustomID = ac.Labels[k]
				continue
			}
			if err := consumers.CheckLabelName(k); err != nil {
				r.note("%s: label %q not migrated: %v", where, k, err)
				continue
			}
			if err := consumers.CheckLabelValue(ac.Labels[k]); err != nil {
				r.note("%s: label %q not migrated: %v", where, k, err)
				continue
			}
			if c.Labels == nil {
				c.Labels = map[string]string{}
			}
			c.Labels[k] = ac.Labels[k]
		}
		if g := str(ac.GroupID); g != "" {
			rules.groupMembers[g] = append(rules.groupMembers[g], ac.Username)
			r.addGroup(&c, g, "group_id")
		}
		if cr, ok := ac.Plugins[restrictionPlugin]; ok {
			rules.consumers = append(rules.consumers, consumerRule{ac.Username, cr})
		}
		if err := apisixPlugins(r, &c, "", ac.Plugins, where, o); err != nil {
			return nil, err
		}
		index[ac.Username] = len(r.Doc.Consumers)
		r.Doc.Consumers = append(r.Doc.Consumers, c)
	}
	for _, cr := range credentials {
		m := credentialID.FindStringSubmatch(str(cr.ID))
		where := fmt.Sprintf("consumer %q, credential %q", m[1], m[2])
		i, ok := index[m[1]]
		if !ok {
			return nil, fmt.Errorf("%s: the file holds no consumer %q", where, m[1])
		}
		if len(cr.Labels) > 0 {
			r.note("%s: labels not migrated (credentials have no labels)", where)
		}
		if err := apisixPlugins(r, &r.Doc.Consumers[i], m[2], cr.Plugins, where, o); err != nil {
			return nil, err
		}
	}

	for _, g := range f.ConsumerGroups {
		// A consumer group's plugins are its members': its
		// consumer-restriction goes with each of them.
		if cr, ok := g.Plugins[restrictionPlugin]; ok {
			for _, u := range rules.groupMembers[str(g.ID)] {
				rules.consumers = append(rules.consumers, consumerRule{u, cr})
			}
		}
		for _, p := range sortedKeys(g.Plugins) {
			if p == restrictionPlugin {
				continue
			}
			r.note("consumer group %q: plugin %s not migrated", name(g.Name, g.ID), p)
		}
	}
	rules.plugins(r, f)
	if missingEnd && f.List == nil {
		r.note("the file does not end with the line #END, without which APISIX does not load apisix.yaml: imported all the same (if it was cut short, what is missing is not here)")
	}
	return r, nil
}

// apisixPlugins takes the key of a consumer's (or credential's) key-auth
// plugin and lists its other plugins as not migrated.
func apisixPlugins(r *Result, c *consumers.ConsumerEntry, id string, plugins map[string]map[string]any, where string, o Options) error {
	for _, name := range sortedKeys(plugins) {
		cfg := plugins[name]
		if name == restrictionPlugin && id == "" {
			continue // carried into the blocks
		}
		if name != "key-auth" {
			r.note("%s: plugin %s not migrated", where, name)
			continue
		}
		key, err := keyString(cfg["key"], where)
		if err != nil {
			return err
		}
		if key, err = resolve(key, where, o); err != nil {
			return err
		}
		key = r.withoutScheme(key, where)
		r.warnUnrendered(key, where)
		for k := range cfg {
			if k != "key" && k != "_meta" {
				r.note("%s: key-auth option %s not migrated", where, k)
			}
		}
		if err := addKey(c, id, key, "", where, o.Plain); err != nil {
			return err
		}
	}
	return nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// resolve resolves APISIX's secret references in a key. APISIX falls back
// to the literal reference when it cannot resolve one; an import fails
// closed instead, as a key that is the text "$env://X" is no one's key.
func resolve(key, where string, o Options) (string, error) {
	lower := strings.ToLower(key)
	switch {
	case strings.HasPrefix(lower, "$secret://"):
		return "", fmt.Errorf("%s: the key is a $secret:// reference to a secret manager, which import cannot read; put the key in an environment variable and use $env://", where)
	case strings.HasPrefix(lower, "$env://"):
		name := key[len("$env://"):]
		if !envName.MatchString(name) {
			return "", fmt.Errorf("%s: the key's $env:// reference %q is not a plain variable name", where, name)
		}
		v, ok := lookupEnv(o)(name)
		if !ok || v == "" {
			return "", fmt.Errorf("%s: the key's environment variable %s is not set", where, name)
		}
		return v, nil
	}
	return key, nil
}

// apisixKeyAuthLines maps the key-auth plugin's route configuration: header
// and query (each default apikey), hide_credentials, anonymous_consumer,
// realm.
func apisixKeyAuthLines(r *Result, cfg map[string]any, where string) []string {
	var lines []string
	header, query := "apikey", "apikey"
	if s := str(cfg["header"]); s != "" {
		header = s
	}
	if s := str(cfg["query"]); s != "" {
		query = s
	}
	switch {
	case header != query:
		lines = append(lines, "key_names "+caddyfileArg(header)+" "+caddyfileArg(query))
		r.note("key-auth on %s: APISIX takes header %s and query parameter %s; key_auth takes each name in both", where, header, query)
	case header != "apikey":
		lines = append(lines, "key_names "+caddyfileArg(header))
	}
	if b, ok := cfg["hide_credentials"].(bool); ok && b {
		lines = append(lines, "hide_credentials")
	}
	if s := str(cfg["anonymous_consumer"]); s != "" {
		lines = append(lines, "anonymous "+caddyfileArg(s))
	}
	if s := str(cfg["realm"]); s != "" {
		lines = append(lines, "realm "+caddyfileArg(s))
	}
	for _, k := range sortedKeys(cfg) {
		switch k {
		case "header", "query", "hide_credentials", "anonymous_consumer", "realm", "_meta":
		default:
			r.note("key-auth on %s: option %s has no key_auth equivalent", where, k)
		}
	}
	return lines
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
