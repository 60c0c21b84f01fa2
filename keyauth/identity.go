package keyauth

import (
	"net/http"
	"strings"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2"

	"github.com/keyauth/caddy-keyauth/consumers"
)

// A request's identity: who the upstream, the logs and later handlers are
// told called. The rest of the package uses only this file's small API:
//
//   - (*Handler).identify: the request goes on as a consumer;
//   - identifyNobody: it goes on without one (a preflight, a failure handed
//     to the error routes);
//   - identifyOtherUser: another auth handler's user stays the request's;
//   - authenticatedBefore: what an earlier auth handler established;
//   - ConsumerOf: the consumer matcher's (and other modules') view.
//
// Each of them sets or removes every identity header. Behind them, one
// allocation holds the header values and serves the placeholders (see
// identity). It stays because it pays end to end: identifying a consumer
// with groups, labels and tags costs about 0.35 µs and 2 allocations this
// way, 1.5-3 µs and 20 allocations with a slice per header and a
// Replacer.Set per placeholder (BenchmarkIdentifyAlternatives), against
// about 25 µs of Caddy CPU per request. The cast back from the user value
// saves the consumer matcher a second placeholder lookup (about 40-100 ns)
// on every evaluation.

// identity holds the values of one request's identity headers and
// placeholders. The headers' values point into it and its placeholder
// method serves the placeholders, so a request's identity costs two small
// allocations: this and the method value handed to the replacer. (Seven
// Replacer.Set calls would cost a lock and a map insert each, and the
// growth of the request's empty placeholder map: measured, three times
// the time and four times the bytes.)
//
// A request has at most one: a key_auth handler after the first finds it
// through the replacer ({http.auth.user.id} is its user) and overwrites
// it, so whichever handler identifies a request last is its identity in
// every header, placeholder and the access log's user_id. (Keeping it in
// the request's vars instead was measured slower: a replacer miss costs
// about 60 ns, and it also answers whether another auth handler set a
// static user; the vars map lookup and insert plus a sweep of the static
// placeholders cost about 95 ns.)
type identity struct {
	// vals are the username, consumer id, custom id, credential id,
	// anonymous and groups. They come first: &vals[0] is the user, which
	// leads back here.
	vals     [6]string
	repl     *caddy.Replacer
	consumer consumers.Consumer // valid when hasConsumer
	// cred is the credential the request presented and view the source's
	// view it was found in, for IdentityOf; zero for an anonymous consumer.
	cred consumers.Credential
	view View
	// lim is the request's limits, when a key_auth with limits charged it:
	// the {http.auth.user.limits.*} placeholders read it.
	lim *limitView
	// hasConsumer is false for nobody: a request let on without a consumer.
	hasConsumer bool
	anonymous   bool
	// static is set when the identity's placeholders are static values,
	// because a provider that cannot be removed answers before its own.
	static bool
}

// clear makes the identity nobody's: a request that goes on without a
// consumer has empty placeholders and no consumer.
func (id *identity) clear() {
	id.vals = nobodyVals
	id.consumer, id.hasConsumer, id.anonymous = consumers.Consumer{}, false, false
	id.cred, id.view, id.lim = consumers.Credential{}, nil, nil
	if id.static {
		// The shared nobody, mapped before, answers once these are gone.
		id.repl.DeleteByPrefix(placeholderPrefix)
	}
}

// nobodyVals are the values of a request without a consumer.
var nobodyVals = [6]string{4: "false"}

// placeholder makes a string in identity a placeholder value without
// boxing a copy of it.
type placeholder string

func (p *placeholder) String() string { return string(*p) }

// user is the value of {http.auth.user.id}: the username, and the way a
// later handler finds the request's identity through the replacer. A *user
// is the address of an identity's vals[0], so the identity is at the same
// address; its kind is string, so CEL (`expression {http.auth.user.id} ==
// 'alice'`) reads it as the string it is, where it refused a struct.
type user string

func (u *user) String() string { return string(*u) }

// id is the identity whose username u is.
func (u *user) id() *identity { return (*identity)(unsafe.Pointer(u)) }

// userOf is the value of id's {http.auth.user.id}.
func userOf(id *identity) *user { return (*user)(&id.vals[0]) }

// user must be the first bytes of an identity.
var _ [0]struct{} = [unsafe.Offsetof(identity{}.vals)]struct{}{}

const (
	placeholderPrefix = "http.auth.user."
	userIDPlaceholder = placeholderPrefix + "id"
	labelsPrefix      = "labels."
	limitsPrefix      = "limits."
)

// emptyPlaceholder is the value of a placeholder of nobody.
var emptyPlaceholder = new(placeholder)

// placeholder serves {http.auth.user.*}: id, consumer_id, custom_id,
// credential_id, anonymous, groups, tags, labels.<name> and
// limits.<meter>.remaining, .max and .reset.
func (id *identity) placeholder(key string) (any, bool) {
	name, ok := strings.CutPrefix(key, placeholderPrefix)
	if !ok {
		return nil, false
	}
	var i int
	switch name {
	case "id":
		// Static values (Replacer.Set) come before every provider, so
		// when another auth handler (basic_auth) identified the request
		// after this one, its user is the one served.
		return userOf(id), true
	case "consumer_id":
		i = 1
	case "custom_id":
		i = 2
	case "credential_id":
		i = 3
	case "anonymous":
		i = 4
	case "groups":
		i = 5
	case "tags":
		if !id.hasConsumer || id.supersededBy() {
			return emptyPlaceholder, true
		}
		return id.consumer.TagsJoined(), true
	default:
		if rest, ok := strings.CutPrefix(name, limitsPrefix); ok {
			if id.lim == nil || !id.hasConsumer || id.supersededBy() {
				return emptyPlaceholder, true
			}
			return id.lim.placeholder(rest)
		}
		label, ok := strings.CutPrefix(name, labelsPrefix)
		if !ok {
			return nil, false
		}
		if !id.hasConsumer || id.supersededBy() {
			return emptyPlaceholder, true
		}
		v, _ := id.consumer.Label(label)
		return v, true
	}
	if id.supersededBy() {
		// The request's user is another auth handler's, which has no
		// consumer: these placeholders are nobody's, not a stale one's.
		return (*placeholder)(&nobodyVals[i]), true
	}
	return (*placeholder)(&id.vals[i]), true
}

// supersededBy reports whether another auth handler set
// {http.auth.user.id} after this identity was given: a static value, which
// comes before this provider.
func (id *identity) supersededBy() bool {
	if id.repl == nil {
		return false
	}
	v, ok := id.repl.Get(userIDPlaceholder)
	u, mine := v.(*user)
	return ok && (!mine || u.id() != id)
}

// requestIdentity returns the identity the request's replacer serves,
// giving it one if none does; nil when the shared nobody serves it and
// nobody is what is wanted, or the request has no replacer. An earlier
// key_auth handler's identity is reused; another auth handler's
// placeholders (basic_auth's static http.auth.user.*) are removed, so they
// do not outlive the identity that replaces them.
//
// spare, when not nil, is the memory a new identity takes (a limitRun's),
// so that a request with limits allocates no more than one without.
func requestIdentity(r *http.Request, nobody bool, spare *identity) *identity {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return nil
	}
	v, ok := repl.Get(userIDPlaceholder)
	if ok {
		if _, mine := v.(*user); !mine {
			repl.DeleteByPrefix(placeholderPrefix)
			v, ok = repl.Get(userIDPlaceholder)
		}
	}
	u, mine := v.(*user)
	switch {
	case !ok && nobody:
		repl.Map(nobodyPlaceholders)
		return nil
	case !ok:
		id := spare
		if id == nil {
			id = new(identity)
		}
		id.repl = repl
		repl.Map(id.placeholder)
		return id
	case mine && u.id() != nobodyIdentity:
		return u.id()
	case mine && nobody:
		return nil // the shared nobody already answers
	}
	// A provider that cannot be removed answers first: the shared nobody,
	// or another module's. Static values come before every provider; set
	// by setStatic once the identity has its values.
	id := spare
	if id == nil {
		id = new(identity)
	}
	id.repl, id.static = repl, true
	return id
}

// setStatic sets the identity's placeholders as static values, for an
// identity whose provider would not be asked (see requestIdentity). Rare:
// a request let on as nobody by one key_auth and identified by a later one.
func (id *identity) setStatic() {
	repl := id.repl
	repl.DeleteByPrefix(placeholderPrefix)
	repl.Set(userIDPlaceholder, userOf(id))
	for i := 1; i < len(placeholderNames); i++ {
		repl.Set(placeholderPrefix+placeholderNames[i], (*placeholder)(&id.vals[i]))
	}
	repl.Set(placeholderPrefix+"tags", id.consumer.TagsJoined())
	// A label the consumer lacks is left to the shared nobody: empty.
	for name, value := range id.consumer.AllLabels() {
		repl.Set(placeholderPrefix+labelsPrefix+name, value)
	}
}

// placeholderNames are the placeholders served from identity.vals, after
// placeholderPrefix, in its order.
var placeholderNames = [...]string{"id", "consumer_id", "custom_id", "credential_id", "anonymous", "groups"}

// identify tells the upstream, the logs and later handlers who called. It
// sets every identity header that applies and removes the others, which a
// client may have sent, in any spelling. It returns the request's identity,
// for the caller to note the credential (see IdentityOf).
func (h *Handler) identify(r *http.Request, c consumers.Consumer, credentialID string, anonymous bool) *identity {
	return h.identifyWith(r, c, credentialID, anonymous, nil)
}

// identifyWith is identify with the request's limits (li; nil without),
// whose view the limits placeholders read and whose memory a new identity
// takes.
func (h *Handler) identifyWith(r *http.Request, c consumers.Consumer, credentialID string, anonymous bool, li *limitIdentity) *identity {
	var spare *identity
	var view *limitView
	if li != nil {
		spare, view = &li.id, &li.view
	}
	id := requestIdentity(r, false, spare)
	if id == nil {
		id = new(identity)
	}
	id.vals = [6]string{c.Username(), c.ID(), c.CustomID(), credentialID, "false", c.GroupsHeader()}
	id.consumer, id.hasConsumer, id.anonymous = c, true, anonymous
	id.cred, id.view, id.lim = consumers.Credential{}, nil, view
	hdr := r.Header
	hdr[headerUsername] = id.vals[0:1:1]
	hdr[headerConsumerID] = id.vals[1:2:2]
	if id.vals[2] != "" {
		hdr[headerCustomID] = id.vals[2:3:3]
	} else {
		delete(hdr, headerCustomID)
	}
	if anonymous {
		id.vals[4] = "true"
		hdr[headerAnonymous] = id.vals[4:5:5]
		delete(hdr, headerCredentialID)
	} else {
		hdr[headerCredentialID] = id.vals[3:4:4]
		delete(hdr, headerAnonymous)
	}
	if id.vals[5] != "" && !h.HideGroupsHeader {
		hdr[headerGroups] = id.vals[5:6:6]
	} else {
		delete(hdr, headerGroups)
	}
	if id.static {
		id.setStatic()
	}
	return id
}

// identifyNobody readies a request that goes on without a consumer (a
// preflight, or a failure handed to the error routes): no identity headers,
// and empty placeholders rather than their literal names. It replaces an
// identity an earlier handler gave the request: the request goes on as
// nobody.
func identifyNobody(r *http.Request) {
	removeIdentityHeaders(r.Header)
	if id := requestIdentity(r, true, nil); id != nil {
		id.clear()
	}
}

// identifyOtherUser readies a request another auth handler (basic_auth)
// identified and that goes on as its user: the identity headers, which it
// does not set, must not be a client's, and the consumer placeholders are
// nobody's (its static user id comes before them).
func identifyOtherUser(r *http.Request) {
	removeIdentityHeaders(r.Header)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(nobodyPlaceholders)
	}
}

// nobodyIdentity is the empty identity of a request without a consumer;
// made once, it costs such a request nothing. It is never written to.
var nobodyIdentity = func() *identity {
	id := &identity{vals: nobodyVals}
	return id
}()

var nobodyPlaceholders = caddy.ReplacerFunc(nobodyIdentity.placeholder)

// removeIdentityHeaders removes every identity header in its canonical
// spelling; scrub removes the others.
func removeIdentityHeaders(hdr http.Header) {
	for _, name := range identityHeaders {
		delete(hdr, name)
	}
}

// authenticatedBefore tells whether an earlier handler authenticated the
// request: a key_auth handler (an identity with a consumer that is not
// anonymous), whose identity it returns, or another auth handler
// (basic_auth sets a static {http.auth.user.id}, which comes before every
// provider, so one Get answers both).
func authenticatedBefore(r *http.Request) (authBefore, *identity) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return notBefore, nil
	}
	v, ok := repl.Get(userIDPlaceholder)
	if !ok {
		return notBefore, nil
	}
	if u, mine := v.(*user); mine {
		if id := u.id(); id.hasConsumer && !id.anonymous {
			return byKeyAuth, id
		}
		return notBefore, nil
	}
	if caddy.ToString(v) != "" {
		return byOther, nil
	}
	return notBefore, nil
}

type authBefore uint8

const (
	notBefore authBefore = iota
	byKeyAuth
	byOther
)

// ConsumerOf reports the consumer a key_auth earlier in this request
// established (authenticated or anonymous); ok is false when none did (no
// key_auth ran, or it let the request on without a consumer: preflight,
// handle_errors).
//
// It reflects the request's last identity: when several key_auth handlers
// ran, the last one that identified the request; when another auth handler
// (basic_auth) identified it after key_auth, there is no consumer.
func ConsumerOf(r *http.Request) (c consumers.Consumer, anonymous bool, ok bool) {
	repl, found := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !found {
		return consumers.Consumer{}, false, false
	}
	// {http.auth.user.id} is the request's last identity: another auth
	// handler's static value comes before key_auth's provider.
	v, _ := repl.Get(userIDPlaceholder)
	if u, mine := v.(*user); mine && u.id().hasConsumer {
		return u.id().consumer, u.id().anonymous, true
	}
	return consumers.Consumer{}, false, false
}

// Identity is who a key_auth handler authenticated a request as, and the
// credential the request presented: what the management API (key_auth_api)
// answers GET /self with and names in its audit lines. Never a key.
type Identity struct {
	// Consumer is the consumer the request goes on as.
	Consumer consumers.Consumer
	// CredentialID is the id of the credential the request presented.
	CredentialID string
	// Credential is that credential, of the set key_auth found it in: its
	// EachLimit tells the limits the request is under.
	Credential consumers.Credential
	// ExpiresAt is when that credential stops working; zero for never.
	ExpiresAt time.Time
	// LastUsed is the credential's last use, to the minute, as the source
	// it was found in records it (this request counts); zero where the
	// source keeps no such record.
	LastUsed time.Time
}

// IdentityOf reports who a key_auth handler earlier in this request
// authenticated it as, by a key: ok is false when none did (no key_auth
// ran, it let the request on without a consumer or as the anonymous one,
// or another auth handler identified it afterwards). Like ConsumerOf, it
// reflects the request's last identity. It is not on the request path of
// key_auth: the handler only notes the credential it found.
func IdentityOf(r *http.Request) (Identity, bool) {
	repl, found := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !found {
		return Identity{}, false
	}
	v, _ := repl.Get(userIDPlaceholder)
	u, mine := v.(*user)
	if !mine || !u.id().hasConsumer || u.id().anonymous || u.id().view == nil {
		return Identity{}, false
	}
	id := u.id()
	out := Identity{Consumer: id.consumer, CredentialID: id.cred.ID(), Credential: id.cred}
	if t, ok := id.cred.ExpiresAt(); ok {
		out.ExpiresAt = t
	}
	if uv, ok := id.view.(UsageView); ok {
		if m := uv.LastUsed(id.cred); m != 0 {
			out.LastUsed = time.Unix(int64(m)*60, 0).UTC()
		}
	}
	return out, true
}
