package keyauth

import (
	"errors"
	"fmt"
	"slices"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// aclMode is the kind of group list a handler checks, as Kong's acl plugin
// has one.
type aclMode uint8

const (
	aclNone aclMode = iota
	aclAllow
	aclDeny
)

// errAllowAndDeny refuses a handler given both lists. Kong's acl plugin
// takes one list too: which one wins is not a question a config should
// leave open.
var errAllowAndDeny = errors.New("allow and deny cannot be used together: list the groups to let on (allow) or those to refuse (deny)")

// checkACL checks the allow and deny options: at most one of them, each a
// list of valid group names, listed once.
func checkACL(allow, deny []string) error {
	if allow != nil && deny != nil {
		return errAllowAndDeny
	}
	if err := checkGroupList(allow); err != nil {
		return fmt.Errorf("allow: %w", err)
	}
	if err := checkGroupList(deny); err != nil {
		return fmt.Errorf("deny: %w", err)
	}
	return nil
}

// checkGroupList checks an allow or deny list, when there is one: at least
// one group, each a name a consumer can have (a name no consumer can have
// would never match), listed once.
func checkGroupList(groups []string) error {
	if groups == nil {
		return nil
	}
	if len(groups) == 0 {
		return errors.New("list at least one group")
	}
	for i, g := range groups {
		if err := consumers.CheckGroupName(g); err != nil {
			return err
		}
		if slices.Contains(groups[:i], g) {
			return fmt.Errorf("group %q is listed twice", g)
		}
	}
	return nil
}

// refuse applies the allow or deny list to the consumer a request would go
// on as, the way Kong 3.x's acl plugin does (kong/plugins/acl/handler.lua).
// The lists are a few names, each tested against the consumer's groups,
// which were joined at load: nothing is allocated. A request let on as
// nobody (a preflight) is not refused; another auth handler's user has no
// consumer, so no groups: allow refuses it, deny lets it on.
func (h *Handler) refuse(v *verdict) *failure {
	if h.acl == aclNone || v.way == goNobody {
		return nil
	}
	hasGroups := v.way != goOtherAuth && v.consumer.HasGroups()
	switch h.acl {
	case aclAllow:
		if hasGroups {
			for _, g := range h.groups {
				if v.consumer.InGroup(g) {
					return nil
				}
			}
		} else if v.anonymous {
			return errAnonymousNoGroups
		}
		return errForbidden
	case aclDeny:
		if hasGroups {
			for _, g := range h.groups {
				if v.consumer.InGroup(g) {
					return errForbidden
				}
			}
		}
	}
	return nil
}
