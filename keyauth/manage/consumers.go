package manage

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/keyauth"
)

// Listing's page size: the default, and the most a request may ask for.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// listConsumers is GET /consumers: a page of consumers in username order,
// filtered by ?group= and ?label=name:value (each may repeat: all must
// match), ?limit= of them after ?after=, and the cursor of the next page.
func (h *Handler) listConsumers(q *call) (int, any, *apiError) {
	var groups []string
	var labels [][2]string
	limit, after := DefaultLimit, ""
	for name, vals := range q.r.URL.Query() {
		switch name {
		case "group":
			for _, g := range vals {
				if err := consumers.CheckGroupName(g); err != nil {
					return 0, nil, badRequest("group: %v", err)
				}
				groups = append(groups, g)
			}
		case "label":
			for _, l := range vals {
				n, v, ok := strings.Cut(l, ":")
				if !ok {
					return 0, nil, badRequest("label: want name:value")
				}
				if err := consumers.CheckLabelName(n); err != nil {
					return 0, nil, badRequest("label: %v", err)
				}
				if err := consumers.CheckLabelValue(v); err != nil {
					return 0, nil, badRequest("label: %v", err)
				}
				labels = append(labels, [2]string{n, v})
			}
		case "limit":
			n, err := strconv.Atoi(vals[len(vals)-1])
			if err != nil || n < 1 || n > MaxLimit {
				return 0, nil, badRequest("limit: want a number from 1 to %d", MaxLimit)
			}
			limit = n
		case "after":
			after = vals[len(vals)-1]
		default:
			return 0, nil, badRequest("unknown query parameter %q (want group, label, limit or after)", name)
		}
	}
	match := func(c *consumers.ConsumerEntry) bool {
		if !h.inScope(q, c) {
			return false
		}
		for _, g := range groups {
			if !slices.Contains(c.Groups, g) {
				return false
			}
		}
		for _, l := range labels {
			if v, ok := c.Labels[l[0]]; !ok || v != l[1] {
				return false
			}
		}
		return true
	}
	var page []*consumers.ConsumerEntry
	var next string
	err := h.writer.Consumers(q.r.Context(), after, func(c *consumers.ConsumerEntry) bool {
		if !match(c) {
			return true
		}
		if len(page) == limit {
			next = page[len(page)-1].Username
			return false
		}
		cc := *c
		page = append(page, &cc)
		return true
	})
	if err != nil {
		return 0, nil, h.unavailable(q, err)
	}
	views, err := h.views(q.r.Context(), page)
	if err != nil {
		return 0, nil, h.unavailable(q, err)
	}
	return http.StatusOK, struct {
		Consumers []consumerView `json:"consumers"`
		// Next is the ?after= of the next page, absent on the last.
		Next string `json:"next,omitempty"`
	}{views, next}, nil
}

// getConsumer is GET /consumers/{username}.
func (h *Handler) getConsumer(q *call) (int, any, *apiError) {
	c, err := h.writer.ReadConsumer(q.r.Context(), q.username)
	if err != nil {
		return 0, nil, h.unavailable(q, err)
	}
	if c == nil || !h.inScope(q, c) {
		return 0, nil, notFound(q.username)
	}
	v, err := h.view(q.r.Context(), c)
	if err != nil {
		return 0, nil, h.unavailable(q, err)
	}
	return http.StatusOK, v, nil
}

// putConsumer is PUT /consumers/{username}: the consumer, in the
// document's shape, created (201) or replaced (200). Keys may come as
// `key`, which is stored as its hash, or as `hash`. A key whose id and
// secret are unchanged keeps its created_at and its previous secrets
// unless the body gives them; any other gets created_at now.
func (h *Handler) putConsumer(q *call) (int, any, *apiError) {
	body, e := readBody(q.w, q.r, false)
	if e != nil {
		return 0, nil, e
	}
	var in consumers.ConsumerEntry
	if e := decodeStrict(body, &in); e != nil {
		return 0, nil, e
	}
	if in.Username != "" && in.Username != q.username {
		return 0, nil, badRequest("username: the body names another consumer than the path")
	}
	in.Username = q.username
	if e := h.scopeLabel(q, &in); e != nil {
		return 0, nil, e
	}
	// The document's rules, keys in plain text included, before any key
	// becomes a hash.
	if err := check(&in); err != nil {
		return 0, nil, badRequest("%v", err)
	}
	stamp := h.stamp()
	var written *consumers.ConsumerEntry
	created := false
	err := h.writer.Edit(q.r.Context(), q.username, func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		if cur != nil && !h.inScope(q, cur) {
			return nil, fail(http.StatusConflict, "username %q is taken", q.username)
		}
		next := in
		next.Keys = slices.Clone(in.Keys)
		for i := range next.Keys {
			k := &next.Keys[i]
			d, _ := k.Digest()
			if k.Key != "" {
				k.Hash, k.Key = consumers.HashKey(k.Key), ""
			}
			if old := sameCredential(cur, next.CredentialID(i), d); old != nil {
				if k.CreatedAt == "" {
					k.CreatedAt = old.CreatedAt
				}
				if k.Previous == nil {
					k.Previous = old.Previous
				}
			}
			if k.CreatedAt == "" {
				k.CreatedAt = stamp
			}
		}
		created, written = cur == nil, &next
		return &next, nil
	})
	// put_consumer (the route's) stays when the change never ran: the
	// source could not say whether the consumer exists.
	switch {
	case written == nil:
	case created:
		q.action = "create_consumer"
	default:
		q.action = "replace_consumer"
	}
	if err != nil {
		return 0, nil, h.writeFailed(q, err)
	}
	v, err := h.view(q.r.Context(), written)
	if err != nil {
		return 0, nil, h.unavailable(q, err)
	}
	if created {
		return http.StatusCreated, v, nil
	}
	return http.StatusOK, v, nil
}

// sameCredential is the credential of cur with id and the key of digest d,
// or nil.
func sameCredential(cur *consumers.ConsumerEntry, id string, d consumers.Digest) *consumers.CredentialEntry {
	if cur == nil {
		return nil
	}
	for i := range cur.Keys {
		if cur.CredentialID(i) != id {
			continue
		}
		if old, ok := cur.Keys[i].Digest(); ok && old == d {
			return &cur.Keys[i]
		}
	}
	return nil
}

// consumerPatch is what PATCH /consumers/{username} changes.
type consumerPatch struct {
	CustomID string            `json:"custom_id,omitempty"`
	Disabled bool              `json:"disabled,omitempty"`
	Groups   []string          `json:"groups,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Tags     []string          `json:"tags,omitempty"`
}

// patchConsumer is PATCH /consumers/{username}: a JSON merge patch (RFC
// 7396) of custom_id, disabled, groups, labels and tags.
func (h *Handler) patchConsumer(q *call) (int, any, *apiError) {
	body, e := readPatch(q, "custom_id", "disabled", "groups", "labels", "tags")
	if e != nil {
		return 0, nil, e
	}
	var written *consumers.ConsumerEntry
	err := h.writer.Edit(q.r.Context(), q.username, func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		if cur == nil || !h.inScope(q, cur) {
			return nil, notFound(q.username)
		}
		p := consumerPatch{CustomID: cur.CustomID, Disabled: cur.Disabled, Groups: cur.Groups, Labels: cur.Labels, Tags: cur.Tags}
		if e := mergePatch(&p, body); e != nil {
			return nil, e
		}
		next := *cur
		next.CustomID, next.Disabled, next.Groups, next.Labels, next.Tags = p.CustomID, p.Disabled, p.Groups, p.Labels, p.Tags
		if h.Scope != nil && next.Labels[h.Scope.Label] != q.scope {
			return nil, badRequest("labels.%s: a manager cannot change the label of its scope", h.Scope.Label)
		}
		if err := check(&next); err != nil {
			return nil, badRequest("%v", err)
		}
		written = &next
		return &next, nil
	})
	if err != nil {
		return 0, nil, h.writeFailed(q, err)
	}
	v, err := h.view(q.r.Context(), written)
	if err != nil {
		return 0, nil, h.unavailable(q, err)
	}
	return http.StatusOK, v, nil
}

// deleteConsumer is DELETE /consumers/{username}: the consumer and its keys
// go.
func (h *Handler) deleteConsumer(q *call) (int, any, *apiError) {
	err := h.writer.Edit(q.r.Context(), q.username, func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		if cur == nil || !h.inScope(q, cur) {
			return nil, notFound(q.username)
		}
		return nil, nil
	})
	if err != nil {
		return 0, nil, h.writeFailed(q, err)
	}
	return http.StatusNoContent, nil, nil
}

// readPatch reads a merge patch: a JSON object whose members are among
// fields.
func readPatch(q *call, fields ...string) ([]byte, *apiError) {
	body, e := readBody(q.w, q.r, false)
	if e != nil {
		return nil, e
	}
	var members map[string]json.RawMessage
	if e := decodeStrict(body, &members); e != nil {
		return nil, e
	}
	for name := range members {
		if !slices.Contains(fields, name) {
			return nil, badRequest("unknown field %q: a patch here changes %s", name, strings.Join(fields, ", "))
		}
	}
	return body, nil
}

// mergePatch applies a merge patch, read by readPatch, to p: its fields'
// JSON patched, decoded strictly back.
func mergePatch(p any, patch []byte) *apiError {
	doc, err := json.Marshal(p)
	if err != nil {
		return fail(http.StatusInternalServerError, "encoding the current values failed")
	}
	merged, err := jsonpatch.MergePatch(doc, patch)
	if err != nil {
		return badRequest("the merge patch cannot be applied: %v", err)
	}
	// Decoded afresh: a member the patch removed is absent from merged,
	// and would otherwise keep its value in p.
	reflect.ValueOf(p).Elem().SetZero()
	return decodeStrict(merged, p)
}

// scopeLabel gives a consumer written by a scoped manager the manager's
// label, and refuses another value for it.
func (h *Handler) scopeLabel(q *call, c *consumers.ConsumerEntry) *apiError {
	if h.Scope == nil {
		return nil
	}
	name := h.Scope.Label
	if v, ok := c.Labels[name]; ok && v != q.scope {
		return badRequest("labels.%s: a manager creates consumers of its own %s only", name, name)
	}
	labels := make(map[string]string, len(c.Labels)+1)
	for k, v := range c.Labels {
		labels[k] = v
	}
	labels[name] = q.scope
	c.Labels = labels
	return nil
}

// inScope reports whether the manager of q manages c.
func (h *Handler) inScope(q *call, c *consumers.ConsumerEntry) bool {
	if h.Scope == nil {
		return true
	}
	v, ok := c.Labels[h.Scope.Label]
	return ok && v == q.scope
}

// check applies the document's rules to one consumer (consumers.Build of a
// document of it alone); the rules across consumers are the source's to
// apply when it writes.
func check(c *consumers.ConsumerEntry) error {
	_, err := consumers.Build(&consumers.Document{Consumers: []consumers.ConsumerEntry{*c}})
	return err
}

// stamp is now as a created_at: to the second, in UTC, as the CLI writes
// it.
func (h *Handler) stamp() string {
	return h.now().UTC().Truncate(time.Second).Format(time.RFC3339)
}

// writeFailed answers an Edit that wrote nothing: the change's own refusal,
// another writer's change meanwhile or a taken credential id (409), a
// document the source refused (400, its message naming the field), or a
// source that failed (503).
func (h *Handler) writeFailed(q *call, err error) *apiError {
	if e, ok := errors.AsType[*apiError](err); ok {
		return e
	}
	switch {
	case errors.Is(err, keyauth.ErrConflict):
		return fail(http.StatusConflict, "the consumers changed meanwhile; nothing was changed: read again and retry")
	case errors.Is(err, keyauth.ErrCredentialTaken):
		// Its message names the credential written, never the other one
		// (which may be outside the manager's scope).
		return fail(http.StatusConflict, "%v", err)
	case errors.Is(err, keyauth.ErrRefused):
		return badRequest("%v", err)
	}
	return h.unavailable(q, err)
}
