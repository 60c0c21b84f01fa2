package manage

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/apikey"
)

// newKey is the body of POST /consumers/{username}/keys.
type newKey struct {
	// ID is the credential's id; default <username>-<8 random hex
	// digits>, as `caddy key-auth new`.
	ID string `json:"id,omitempty"`
	// Key is the key, for one that exists elsewhere (a migration); without
	// it the API generates one. Stored as its hash.
	Key       string `json:"key,omitempty"`
	ExpiresAt string `json:"expires_at,omitempty"`
	Disabled  bool   `json:"disabled,omitempty"`
}

// issued is the answer to a new or rolled key: the key itself only when
// the API generated it, in this answer only.
type issued struct {
	ID        string `json:"id"`
	ExpiresAt string `json:"expires_at,omitempty"`
	CreatedAt string `json:"created_at,omitempty"`
	Key       string `json:"key,omitempty"`
	// PreviousExpiresAt is, after a roll, when the secret it replaced
	// stops working; absent when it stopped at once.
	PreviousExpiresAt string `json:"previous_expires_at,omitempty"`
}

// addKey is POST /consumers/{username}/keys: a key given or generated.
// An id the consumer has already is 409, so a client that retries after a
// timeout with the id it chose cannot add the key twice.
func (h *Handler) addKey(q *call) (int, any, *apiError) {
	body, e := readBody(q.w, q.r, true)
	if e != nil {
		return 0, nil, e
	}
	var in newKey
	if e := decodeStrict(body, &in); e != nil {
		return 0, nil, e
	}
	if in.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339, in.ExpiresAt)
		if err != nil {
			return 0, nil, badRequest("expires_at: want an RFC 3339 time, such as 2027-01-01T00:00:00Z")
		}
		if !t.After(h.now()) {
			return 0, nil, badRequest("expires_at: not in the future")
		}
	}
	key, generated := in.Key, false
	if key == "" {
		var err error
		if key, err = apikey.Generate(h.KeyPrefix); err != nil {
			return 0, nil, fail(http.StatusInternalServerError, "generating a key failed")
		}
		generated = true
	} else if e := checkKey(key); e != nil {
		return 0, nil, e
	}
	id := in.ID
	if id == "" {
		id = apikey.CredentialID(q.username)
	}
	q.credID = id
	cred := consumers.CredentialEntry{ID: id, Hash: consumers.HashKey(key), ExpiresAt: in.ExpiresAt,
		CreatedAt: h.stamp(), Disabled: in.Disabled}
	err := h.writer.Edit(q.r.Context(), q.username, func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		if cur == nil || !h.inScope(q, cur) {
			return nil, notFound(q.username)
		}
		if keyIndex(cur, id) >= 0 {
			return nil, fail(http.StatusConflict, "credential id %q is already in use", id)
		}
		next := *cur
		next.Keys = append(slices.Clip(cur.Keys), cred)
		if err := check(&next); err != nil {
			return nil, badRequest("%v", err)
		}
		return &next, nil
	})
	if err != nil {
		return 0, nil, h.writeFailed(q, err)
	}
	out := issued{ID: id, ExpiresAt: cred.ExpiresAt, CreatedAt: cred.CreatedAt}
	if generated {
		out.Key = key
	}
	return http.StatusCreated, out, nil
}

// checkKey applies the document's rules for a key in plain text to a key
// a client brings. The errors never quote it.
func checkKey(key string) *apiError {
	if len(key) > consumers.MaxKeyLength {
		return badRequest("key: longer than %d bytes", consumers.MaxKeyLength)
	}
	if err := consumers.ValidateKey(key); err != nil {
		return badRequest("key: %v", err)
	}
	return nil
}

// keyIndex is the index of the credential of c with id (its own or
// derived), or -1.
func keyIndex(c *consumers.ConsumerEntry, id string) int {
	for i := range c.Keys {
		if c.CredentialID(i) == id {
			return i
		}
	}
	return -1
}

// keyPatch is what PATCH /consumers/{username}/keys/{id} changes.
type keyPatch struct {
	Disabled  bool   `json:"disabled,omitempty"`
	ExpiresAt string `json:"expires_at,omitempty"`
}

// patchKey is PATCH /consumers/{username}/keys/{id}: a JSON merge patch of
// disabled and expires_at (null: never expires).
func (h *Handler) patchKey(q *call) (int, any, *apiError) {
	body, e := readPatch(q, "disabled", "expires_at")
	if e != nil {
		return 0, nil, e
	}
	var written *consumers.ConsumerEntry
	var index int
	err := h.writer.Edit(q.r.Context(), q.username, func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		i, e := h.findKey(q, cur)
		if e != nil {
			return nil, e
		}
		k := cur.Keys[i]
		p := keyPatch{Disabled: k.Disabled, ExpiresAt: k.ExpiresAt}
		if e := mergePatch(&p, body); e != nil {
			return nil, e
		}
		if p.ExpiresAt != "" {
			if _, err := time.Parse(time.RFC3339, p.ExpiresAt); err != nil {
				return nil, badRequest("expires_at: want an RFC 3339 time, such as 2027-01-01T00:00:00Z")
			}
		}
		next := *cur
		next.Keys = slices.Clone(cur.Keys)
		next.Keys[i].Disabled, next.Keys[i].ExpiresAt = p.Disabled, p.ExpiresAt
		if err := check(&next); err != nil {
			return nil, badRequest("%v", err)
		}
		written, index = &next, i
		return &next, nil
	})
	if err != nil {
		return 0, nil, h.writeFailed(q, err)
	}
	v, err := h.view(q.r.Context(), written)
	if err != nil {
		return 0, nil, h.unavailable(q, err)
	}
	return http.StatusOK, v.Keys[index], nil
}

// deleteKey is DELETE /consumers/{username}/keys/{id}: the key is revoked.
// Keys after it with derived ids get those ids written out, so no other
// key's id changes (as `caddy key-auth revoke`).
func (h *Handler) deleteKey(q *call) (int, any, *apiError) {
	err := h.writer.Edit(q.r.Context(), q.username, func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		i, e := h.findKey(q, cur)
		if e != nil {
			return nil, e
		}
		next := *cur
		next.Keys = slices.Clone(cur.Keys)
		next.RemoveKey(i)
		return &next, nil
	})
	if err != nil {
		return 0, nil, h.writeFailed(q, err)
	}
	return http.StatusNoContent, nil, nil
}

// findKey is the index of the path's credential in cur, the path's
// consumer.
func (h *Handler) findKey(q *call, cur *consumers.ConsumerEntry) (int, *apiError) {
	if cur == nil || !h.inScope(q, cur) {
		return 0, notFound(q.username)
	}
	i := keyIndex(cur, q.credID)
	if i < 0 {
		return 0, fail(http.StatusNotFound, "consumer %q has no credential %q", q.username, q.credID)
	}
	return i, nil
}

// rollBody is the body of POST /consumers/{username}/keys/{id}/roll.
type rollBody struct {
	// Grace is how long the current secret keeps working: a duration
	// such as 24h or 7d. Default 0: it stops at once.
	Grace string `json:"grace,omitempty"`
}

// rollKey is POST /consumers/{username}/keys/{id}/roll: a new generated
// secret for the credential, its current one kept working for the grace
// (consumers.ConsumerEntry.Roll, as `caddy key-auth roll`).
func (h *Handler) rollKey(q *call) (int, any, *apiError) {
	body, e := readBody(q.w, q.r, true)
	if e != nil {
		return 0, nil, e
	}
	var in rollBody
	if e := decodeStrict(body, &in); e != nil {
		return 0, nil, e
	}
	var grace time.Duration
	if in.Grace != "" {
		d, err := caddy.ParseDuration(in.Grace)
		if err != nil || d < 0 {
			return 0, nil, badRequest("grace: want a duration such as 24h or 7d")
		}
		grace = d
	}
	key, err := apikey.Generate(h.KeyPrefix)
	if err != nil {
		return 0, nil, fail(http.StatusInternalServerError, "generating a key failed")
	}
	now := h.now()
	var rolled consumers.CredentialEntry
	var until time.Time
	err = h.writer.Edit(q.r.Context(), q.username, func(cur *consumers.ConsumerEntry) (*consumers.ConsumerEntry, error) {
		i, e := h.findKey(q, cur)
		if e != nil {
			return nil, e
		}
		next := *cur
		next.Keys = slices.Clone(cur.Keys)
		u, err := next.Roll(i, consumers.HashKey(key), grace, now)
		switch {
		case errors.Is(err, consumers.ErrRollCanary), errors.Is(err, consumers.ErrRollExpired):
			return nil, fail(http.StatusConflict, "%v", err)
		case err != nil:
			return nil, badRequest("%v", err)
		}
		rolled, until = next.Keys[i], u
		return &next, nil
	})
	if err != nil {
		return 0, nil, h.writeFailed(q, err)
	}
	out := issued{ID: q.credID, ExpiresAt: rolled.ExpiresAt, CreatedAt: rolled.CreatedAt, Key: key}
	if until.After(now) {
		out.PreviousExpiresAt = formatTime(until)
	}
	return http.StatusCreated, out, nil
}
