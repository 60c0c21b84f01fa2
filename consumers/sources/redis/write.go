package redis

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

// The Redis source is writable: Source implements keyauth.Writer, the
// management API's view of a source it can change. It writes the layout
// (Layout, with its writers' indexes) as push does.
//
// On a standalone Redis an edit is one transaction: the hashes it reads are
// WATCHed, and MULTI/EXEC writes only if none changed meanwhile (else the
// change runs again on what is there now, sources.EditTries times at
// most, then consumers.ErrConflict). A Redis Cluster spreads a consumer's
// hashes over slots, which no transaction spans: there an edit reads again
// what it read just before writing (a change meanwhile: again, as above),
// then writes in an order that never shows a lookup a credential without
// its consumer: the credentials' ids claimed, the consumer hash, the new
// credential hashes, the index, then what is gone, credentials first; a
// deletion removes the credentials first and the consumer last. Two edits
// of one consumer from two instances at the very same moment may
// interleave there; a failure midway leaves what was written (an edit
// again repairs it).
//
// After a write the instance drops what its cache held of the consumer and
// its credentials, so it answers the change at once; other instances hear
// of it from Redis (CLIENT TRACKING), as of any write.

// live is the source's looker, once provisioned.
func (s *Source) live() (*looker, error) {
	l, ok := s.Live().(*looker)
	if !ok {
		return nil, errors.New("the Redis source is not provisioned")
	}
	return l, nil
}

// Consumers calls yield with the consumers in Redis, in bytewise username
// order after after, read a page at a time (keyauth.Writer). A consumer
// whose hashes are refused is logged once and left out.
func (s *Source) Consumers(ctx context.Context, after string, yield func(*consumers.ConsumerEntry) bool) error {
	l, err := s.live()
	if err != nil {
		return err
	}
	return l.consumers(ctx, after, yield)
}

// ReadConsumer is the consumer named username in Redis, or nil
// (keyauth.Writer).
func (s *Source) ReadConsumer(ctx context.Context, username string) (*consumers.ConsumerEntry, error) {
	l, err := s.live()
	if err != nil {
		return nil, err
	}
	c, err := l.writeClient()
	if err != nil {
		return nil, err
	}
	st, err := readStored(ctx, c, l.layout, []string{username}, false)
	if err != nil {
		return nil, err
	}
	return st[0].entry(username)
}

// Edit changes the consumer named username in Redis (keyauth.Writer): see
// above for what a write is on a standalone Redis and in a cluster.
func (s *Source) Edit(ctx context.Context, username string, change func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error)) error {
	l, err := s.live()
	if err != nil {
		return err
	}
	return l.edit(ctx, username, change)
}

// LastUsed is when each credential of ids last let a request in, anywhere
// in the fleet, as the instances recorded it in Redis (keyauth.Writer).
func (s *Source) LastUsed(ctx context.Context, ids []string) ([]time.Time, error) {
	l, err := s.live()
	if err != nil {
		return nil, err
	}
	return l.lastUsedOf(ctx, ids)
}

// writeClient is the client, or ErrUnavailable while not connected.
func (l *looker) writeClient() (rueidis.Client, error) {
	c := l.client.Load()
	if c == nil {
		return nil, sources.ErrUnavailable
	}
	return c.Client, nil
}

// consumersPage is how many consumers Consumers reads at a time.
const consumersPage = 100

func (l *looker) consumers(ctx context.Context, after string, yield func(*consumers.ConsumerEntry) bool) error {
	c, err := l.writeClient()
	if err != nil {
		return err
	}
	return ReadConsumers(ctx, c, l.layout, after, yield, func(username string, err error) {
		l.logBad("consumer refused; it is left out of the list", "consumer", username, err)
	})
}

// ReadConsumers calls yield with the consumers under the layout's prefix,
// in bytewise username order after after ("" for the first), read through
// the writers' indexes a page at a time, until yield returns false or none
// is left: the management API's list, `caddy key-auth stale --redis`. A
// consumer whose hashes are refused goes to refused (unless nil), and is
// left out.
func ReadConsumers(ctx context.Context, c rueidis.Client, layout Layout, after string, yield func(*consumers.ConsumerEntry) bool, refused func(username string, err error)) error {
	for {
		from := "-"
		if after != "" {
			from = "(" + after
		}
		names, err := c.Do(ctx, c.B().Zrange().Key(layout.ConsumersKey()).Min(from).Max("+").Bylex().Limit(0, consumersPage).Build()).AsStrSlice()
		if err != nil {
			return fmt.Errorf("listing the consumers: %w", err)
		}
		st, err := readStored(ctx, c, layout, names, false)
		if err != nil {
			return err
		}
		for i, name := range names {
			e, err := st[i].entry(name)
			if err != nil {
				if refused != nil {
					refused(name, err)
				}
				continue
			}
			if e != nil && !yield(e) {
				return nil
			}
		}
		if len(names) < consumersPage {
			return nil
		}
		after = names[len(names)-1]
	}
}

func (l *looker) lastUsedOf(ctx context.Context, ids []string) ([]time.Time, error) {
	out := make([]time.Time, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	c, err := l.writeClient()
	if err != nil {
		return nil, err
	}
	vals, err := c.Do(ctx, c.B().Hmget().Key(l.layout.LastUsedKey()).Field(ids...).Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("reading the last use: %w", err)
	}
	for i, v := range vals {
		if s, err := v.ToString(); err == nil {
			if m, err := strconv.ParseUint(s, 10, 32); err == nil && m != 0 {
				out[i] = sources.MinuteTime(sources.Minute(m))
			}
		}
	}
	return out, nil
}

// stored is what Redis holds of one consumer: its consumer hash, its
// consumer-keys hash and the credential hashes that names, by hex digest.
type stored struct {
	cons, keys map[string]string
	creds      map[string]map[string]string
}

// entry is the consumer as a document entry, or nil when it has no
// consumer hash.
func (s *stored) entry(username string) (*consumers.ConsumerEntry, error) {
	if len(s.cons) == 0 {
		return nil, nil
	}
	return DecodeEntry(username, s.cons, s.keys, s.creds)
}

func (s *stored) equal(o *stored) bool {
	return maps.Equal(s.cons, o.cons) && maps.Equal(s.keys, o.keys) &&
		maps.EqualFunc(s.creds, o.creds, func(a, b map[string]string) bool { return maps.Equal(a, b) })
}

// readStored reads the consumers named, in two round trips however many;
// watch WATCHes each hash before it is read (a transaction's reads).
func readStored(ctx context.Context, c rueidis.CoreClient, layout Layout, usernames []string, watch bool) ([]stored, error) {
	out := make([]stored, len(usernames))
	if len(usernames) == 0 {
		return out, nil
	}
	var keys []string
	for _, u := range usernames {
		keys = append(keys, layout.ConsumerKey(u), layout.ConsumerKeysKey(u))
	}
	maps1, err := hgetallMany(ctx, c, keys, watch)
	if err != nil {
		return nil, err
	}
	var credKeys []string
	for i := range usernames {
		out[i].cons, out[i].keys = maps1[2*i], maps1[2*i+1]
		out[i].creds = map[string]map[string]string{}
		for _, x := range slices.Sorted(maps.Keys(out[i].keys)) {
			credKeys = append(credKeys, layout.cred+x)
		}
	}
	creds, err := hgetallMany(ctx, c, credKeys, watch)
	if err != nil {
		return nil, err
	}
	n := 0
	for i := range usernames {
		for _, x := range slices.Sorted(maps.Keys(out[i].keys)) {
			if len(creds[n]) > 0 {
				out[i].creds[x] = creds[n]
			}
			n++
		}
	}
	return out, nil
}

// hgetallMany reads hashes, pipelined, untracked; watch WATCHes them first.
func hgetallMany(ctx context.Context, c rueidis.CoreClient, keys []string, watch bool) ([]map[string]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	var cmds rueidis.Commands
	if watch {
		cmds = append(cmds, c.B().Watch().Key(keys...).Build())
	}
	for _, k := range keys {
		cmds = append(cmds, c.B().Hgetall().Key(k).Build())
	}
	res := c.DoMulti(ctx, cmds...)
	if watch {
		if err := res[0].Error(); err != nil {
			return nil, fmt.Errorf("watching: %w", err)
		}
		res = res[1:]
	}
	out := make([]map[string]string, len(keys))
	for i, r := range res {
		m, err := r.AsStrMap()
		if err != nil {
			// Not naming the key: a credential hash's key is a key's digest.
			return nil, fmt.Errorf("reading hash %d of %d: %w", i+1, len(keys), err)
		}
		out[i] = m
	}
	return out, nil
}

// edit applies change to the consumer: one write at a time per instance
// (so this instance's writers never conflict), a transaction on a
// standalone Redis, ordered writes in a cluster.
func (l *looker) edit(ctx context.Context, username string, change func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error)) error {
	c, err := l.writeClient()
	if err != nil {
		return err
	}
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	var p *plan
	if c.Mode() == rueidis.ClientModeCluster {
		p, err = l.editOrdered(ctx, c, username, change)
	} else {
		err = c.Dedicated(func(dc rueidis.DedicatedClient) error {
			p, err = l.editAtomic(ctx, dc, username, change)
			return err
		})
	}
	var ce sources.ChangeError
	if errors.As(err, &ce) {
		return ce.Err
	}
	if p != nil {
		l.forget(p)
	}
	return err
}

// errAborted is a transaction that a change meanwhile aborted.
var errAborted = errors.New("aborted")

func (l *looker) editAtomic(ctx context.Context, dc rueidis.DedicatedClient, username string, change func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error)) (*plan, error) {
	unwatch := func() { _ = dc.Do(ctx, dc.B().Unwatch().Build()).Error() }
	for range sources.EditTries {
		p, err := l.prepare(ctx, dc, username, change, true)
		if err != nil || p == nil {
			unwatch()
			return nil, err
		}
		cmds := rueidis.Commands{dc.B().Multi().Build()}
		for _, phase := range p.phases(dc) {
			cmds = append(cmds, phase...)
		}
		cmds = append(cmds, dc.B().Exec().Build())
		res := dc.DoMulti(ctx, cmds...)
		switch err := execError(res); {
		case errors.Is(err, errAborted):
			continue
		case err != nil:
			return nil, err
		}
		return p, nil
	}
	return nil, consumers.Conflict(fmt.Errorf("consumer %q changed in Redis while it was being written, %d times; nothing written", username, sources.EditTries))
}

// execError is the error of a MULTI ... EXEC, or errAborted.
func execError(res []rueidis.RedisResult) error {
	for _, r := range res[:len(res)-1] {
		if err := r.Error(); err != nil {
			return fmt.Errorf("writing: %w", err)
		}
	}
	exec := res[len(res)-1]
	if err := exec.Error(); rueidis.IsRedisNil(err) {
		return errAborted
	} else if err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	replies, err := exec.ToArray()
	if err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	for _, r := range replies {
		if err := r.Error(); err != nil {
			return fmt.Errorf("writing: %w", err)
		}
	}
	return nil
}

func (l *looker) editOrdered(ctx context.Context, c rueidis.Client, username string, change func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error)) (*plan, error) {
	for range sources.EditTries {
		p, err := l.prepare(ctx, c, username, change, false)
		if err != nil || p == nil {
			return nil, err
		}
		again, err := readStored(ctx, c, l.layout, []string{username}, false)
		if err != nil {
			return nil, err
		}
		if !again[0].equal(&p.old) {
			continue
		}
		for _, phase := range p.phases(c) {
			for i, r := range c.DoMulti(ctx, phase...) {
				if err := r.Error(); err != nil {
					// What was written stays: the next edit of the
					// consumer writes it whole again.
					l.forget(p)
					return nil, fmt.Errorf("writing (step %d of the edit): %w", i+1, err)
				}
			}
		}
		return p, nil
	}
	return nil, consumers.Conflict(fmt.Errorf("consumer %q changed in Redis while it was being written, %d times; nothing written", username, sources.EditTries))
}

// plan is one edit: what Redis held, what it will hold, and what the
// checks read.
type plan struct {
	layout   Layout
	username string
	old      stored
	oldEntry *consumers.ConsumerEntry
	next     *EntryHashes // nil: the consumer is deleted
	// current are the hashes the checks read, by key: the new credential
	// hashes (whose stale fields go) and the consumer-id hash of the
	// consumer's old id.
	current map[string]map[string]string
}

// prepare reads the consumer (watched on a standalone Redis), runs the
// change, checks its entry, and reads what the checks need (watched too).
// A nil plan without error has nothing to write.
func (l *looker) prepare(ctx context.Context, c rueidis.CoreClient, username string, change func(*consumers.ConsumerEntry) (*consumers.ConsumerEntry, error), watch bool) (*plan, error) {
	st, err := readStored(ctx, c, l.layout, []string{username}, watch)
	if err != nil {
		return nil, err
	}
	cur, err := st[0].entry(username)
	if err != nil {
		return nil, fmt.Errorf("consumer %q in Redis is refused (write it whole, or delete it, with push or HSET and DEL): %w", username, err)
	}
	var old *consumers.ConsumerEntry
	if cur != nil {
		old = cur.Clone()
	}
	next, err := change(cur)
	if err != nil {
		return nil, sources.ChangeError{Err: err}
	}
	if next == nil && old == nil {
		return nil, nil
	}
	p := &plan{layout: l.layout, username: username, old: st[0], oldEntry: old}
	if next != nil {
		set, err := sources.CheckEntry(username, next)
		if err != nil {
			return nil, err
		}
		h, err := EncodeEntry(next, set.ConsumerAt(0), set)
		if err != nil {
			return nil, err
		}
		p.next = &h
	}
	if err := p.check(ctx, c, next, watch); err != nil {
		return nil, err
	}
	return p, nil
}

// check reads the hashes that tell whether the new entry takes another
// consumer's credential id, key or id, and keeps what the writes need.
func (p *plan) check(ctx context.Context, c rueidis.CoreClient, next *consumers.ConsumerEntry, watch bool) error {
	l := p.layout
	var keys []string
	oldID := ""
	if p.oldEntry != nil && p.oldEntry.ConsumerID() != p.username {
		oldID = p.oldEntry.ConsumerID()
		keys = append(keys, l.ConsumerIDKey(oldID))
	}
	newID := ""
	if next != nil {
		newID = next.ConsumerID()
		keys = append(keys, l.ConsumerIDKey(newID))
		if newID != p.username {
			keys = append(keys, l.ConsumerKey(newID))
		}
		for _, id := range p.next.CredentialIDs {
			keys = append(keys, l.CredentialIDKey(id))
		}
		for _, ch := range p.next.Credentials {
			keys = append(keys, l.CredentialKey(&ch.Digest))
		}
	}
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	hs, err := hgetallMany(ctx, c, keys, watch)
	if err != nil {
		return err
	}
	p.current = make(map[string]map[string]string, len(keys))
	for i, k := range keys {
		p.current[k] = hs[i]
	}
	if next == nil {
		return nil
	}
	for i, id := range p.next.CredentialIDs {
		if u := p.current[l.CredentialIDKey(id)][FieldConsumer]; u != "" && u != p.username {
			return consumers.Taken(fmt.Sprintf("consumer %q: credential id %q is already in use", p.username, next.CredentialID(i)))
		}
	}
	for _, ch := range p.next.Credentials {
		if u := p.current[l.CredentialKey(&ch.Digest)][FieldConsumer]; u != "" && u != p.username {
			return consumers.Taken(fmt.Sprintf("consumer %q, credential %q: its key is already another credential's", p.username, p.next.Keys[hex.EncodeToString(ch.Digest[:])]))
		}
	}
	taken := false
	if newID != p.username {
		// A consumer named newID whose id is its name.
		if h := p.current[l.ConsumerKey(newID)]; len(h) > 0 && (h[FieldID] == "" || h[FieldID] == newID) {
			taken = true
		}
	}
	// A consumer whose id is newID, by the consumer-id index: its consumer
	// hash must say so (the index may be stale).
	if u := p.current[l.ConsumerIDKey(newID)][FieldConsumer]; !taken && u != "" && u != p.username {
		owner, err := hgetallMany(ctx, c, []string{l.ConsumerKey(u)}, watch)
		if err != nil {
			return err
		}
		taken = owner[0][FieldID] == newID
	}
	if taken {
		return consumers.Refused(fmt.Errorf("consumer %q: id %q is already another consumer's", p.username, newID))
	}
	return nil
}

// phases are the edit's writes, in the order a cluster takes them (see the
// package's note on writing); a transaction takes them all at once.
func (p *plan) phases(c rueidis.CoreClient) []rueidis.Commands {
	l, u := p.layout, p.username
	b := c.B()
	oldHexes := slices.Sorted(maps.Keys(p.old.keys))
	oldIDs := map[string]bool{}
	for _, id := range p.old.keys {
		oldIDs[id] = true
	}
	var out []rueidis.Commands
	if p.next == nil {
		var creds, indexes rueidis.Commands
		for _, x := range oldHexes {
			creds = append(creds, b.Del().Key(l.cred+x).Build())
		}
		indexes = append(indexes, b.Del().Key(l.ConsumerKeysKey(u)).Build(), b.Zrem().Key(l.ConsumersKey()).Member(u).Build())
		for _, id := range slices.Sorted(maps.Keys(oldIDs)) {
			indexes = append(indexes, b.Del().Key(l.CredentialIDKey(id)).Build())
		}
		if len(oldIDs) > 0 {
			indexes = append(indexes, b.Hdel().Key(l.LastUsedKey()).Field(slices.Sorted(maps.Keys(oldIDs))...).Build())
		}
		if cmd, ok := p.dropOldConsumerID(b, ""); ok {
			indexes = append(indexes, cmd)
		}
		out = append(out, creds, indexes, rueidis.Commands{b.Del().Key(l.ConsumerKey(u)).Build()})
		return nonEmpty(out)
	}
	n := p.next
	var claims, consumer, creds, index, gone rueidis.Commands
	newIDs := map[string]bool{}
	for _, id := range n.CredentialIDs {
		newIDs[id] = true
		claims = append(claims, hset(b, l.CredentialIDKey(id), EncodeCredentialID(u), p.current[l.CredentialIDKey(id)])...)
	}
	newConsumerID := u
	if n.ConsumerID != nil {
		newConsumerID = n.Consumer[FieldID]
		claims = append(claims, hset(b, l.ConsumerIDKey(newConsumerID), n.ConsumerID, p.current[l.ConsumerIDKey(newConsumerID)])...)
	}
	consumer = append(consumer, hset(b, l.ConsumerKey(u), n.Consumer, p.old.cons)...)
	consumer = append(consumer, b.Zadd().Key(l.ConsumersKey()).ScoreMember().ScoreMember(0, u).Build())
	newHexes := map[string]bool{}
	for _, ch := range n.Credentials {
		key := l.CredentialKey(&ch.Digest)
		newHexes[hex.EncodeToString(ch.Digest[:])] = true
		creds = append(creds, hset(b, key, ch.Fields, p.current[key])...)
	}
	index = append(index, hset(b, l.ConsumerKeysKey(u), n.Keys, p.old.keys)...)
	for _, x := range oldHexes {
		if !newHexes[x] {
			gone = append(gone, b.Del().Key(l.cred+x).Build())
		}
	}
	var goneIDs []string
	for _, id := range slices.Sorted(maps.Keys(oldIDs)) {
		if !newIDs[id] {
			goneIDs = append(goneIDs, id)
			gone = append(gone, b.Del().Key(l.CredentialIDKey(id)).Build())
		}
	}
	if len(goneIDs) > 0 {
		gone = append(gone, b.Hdel().Key(l.LastUsedKey()).Field(goneIDs...).Build())
	}
	if cmd, ok := p.dropOldConsumerID(b, newConsumerID); ok {
		gone = append(gone, cmd)
	}
	return nonEmpty([]rueidis.Commands{claims, consumer, creds, index, gone})
}

// dropOldConsumerID deletes the consumer-id hash of the consumer's old id,
// when it names this consumer and the id is not newID.
func (p *plan) dropOldConsumerID(b rueidis.Builder, newID string) (rueidis.Completed, bool) {
	if p.oldEntry == nil {
		return rueidis.Completed{}, false
	}
	oldID := p.oldEntry.ConsumerID()
	if oldID == p.username || oldID == newID {
		return rueidis.Completed{}, false
	}
	key := p.layout.ConsumerIDKey(oldID)
	if p.current[key][FieldConsumer] != p.username {
		return rueidis.Completed{}, false
	}
	return b.Del().Key(key).Build(), true
}

// hset makes a hash hold exactly fields, given what it holds: HSET of the
// fields, then HDEL of the others, so the hash is never missing for a
// moment; nothing when it holds them already, DEL for no fields.
func hset(b rueidis.Builder, key string, fields, have map[string]string) rueidis.Commands {
	if maps.Equal(fields, have) {
		return nil
	}
	if len(fields) == 0 {
		return rueidis.Commands{b.Del().Key(key).Build()}
	}
	fv := b.Hset().Key(key).FieldValue()
	for _, n := range slices.Sorted(maps.Keys(fields)) {
		fv = fv.FieldValue(n, fields[n])
	}
	out := rueidis.Commands{fv.Build()}
	var gone []string
	for n := range have {
		if _, ok := fields[n]; !ok {
			gone = append(gone, n)
		}
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		out = append(out, b.Hdel().Key(key).Field(gone...).Build())
	}
	return out
}

func nonEmpty(phases []rueidis.Commands) []rueidis.Commands {
	return slices.DeleteFunc(phases, func(p rueidis.Commands) bool { return len(p) == 0 })
}

// forget drops what the local cache holds of the edit's consumer and
// credentials, old and new, so this instance answers the change at once.
func (l *looker) forget(p *plan) {
	l.cache.dropConsumer(l.layout.ConsumerKey(p.username), p.username)
	for x := range p.old.keys {
		var d consumers.Digest
		if _, err := hex.Decode(d[:], []byte(x)); err == nil && len(x) == 2*len(d) {
			l.cache.dropCredential(l.layout.cred+x, &d)
		}
	}
	if p.next != nil {
		for _, ch := range p.next.Credentials {
			l.cache.dropCredential(l.layout.CredentialKey(&ch.Digest), &ch.Digest)
		}
		if p.next.ConsumerID != nil {
			l.cache.dropConsumer(l.layout.ConsumerIDKey(p.next.Consumer[FieldID]), "")
		}
	}
	if p.oldEntry != nil && p.oldEntry.ConsumerID() != p.username {
		l.cache.dropConsumer(l.layout.ConsumerIDKey(p.oldEntry.ConsumerID()), "")
	}
}
