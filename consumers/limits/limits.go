// Package limits counts what consumers use against their limits (issue 18):
// quotas over fixed windows, in-flight caps and reservations settled later
// (token budgets). It is Caddy-free, as package consumers is: the key_auth
// handler decides what a request charges (package keyauth), a store counts
// it (in memory here; in Redis in package sources/redis), and both speak the
// types of this file.
package limits

import "time"

// ScopeKind is what a limit belongs to: a metric label, never a name.
type ScopeKind uint8

const (
	// Credential is one key's own limit.
	Credential ScopeKind = iota + 1
	// Consumer is a consumer's own limit, or its group tier's
	// member_limits (every member counted on its own).
	Consumer
	// Group is a group's limits: one pool its members share.
	Group
)

func (k ScopeKind) String() string {
	switch k {
	case Credential:
		return "credential"
	case Consumer:
		return "consumer"
	case Group:
		return "group"
	}
	return "unknown"
}

// InFlight is the meter of concurrent requests: a slot is taken at
// admission and given back when the request ends, whatever the window.
const InFlight = "in_flight"

// Charge is one limit a request must have room in, and what it takes of it.
type Charge struct {
	// Kind and Scope name the counter's owner: a credential id, a consumer
	// id, a group name. Kind keeps a credential and a group of one name
	// apart.
	Kind  ScopeKind
	Scope string

	// Meter is the meter's name (requests, tokens), or InFlight.
	Meter string

	// Max is the limit: usage after the charge must not exceed it.
	Max int64

	// Start and End bound the fixed window the charge falls in, as the
	// handler computed them for the time of the request (package consumers
	// knows the calendar); a counter is one window's, and it is gone after
	// End. Both are zero for InFlight.
	Start, End time.Time

	// Cost is what the request takes: the amount, or the reservation of a
	// meter settled from the response; 1 for InFlight.
	Cost int64
}

// Admission is a store's answer to a request's charges.
type Admission struct {
	// Allowed is true when every charge had room and all were taken; when
	// false none was.
	Allowed bool

	// Refused is the index of a charge that had no room when !Allowed.
	Refused int

	// Remaining is, per charge, the room left after this admission (or,
	// refused, without it); never negative. It may be the store's memory,
	// valid until Settle: copy what is needed later.
	Remaining []int64

	// Ticket is what Settle needs to settle reservations and give back
	// in-flight slots; the store's own, opaque to the handler.
	Ticket any
}

// Every Admission a store returned without an error goes to Settle exactly
// once, refused ones too: a refused admission took nothing, and Settle only
// lets the store reuse its memory (the local store allocates nothing per
// request that way).

// Settlement ends an admitted request: Actual[i] replaces the Cost of
// charge i where Settle is asked to (a reservation settled from the
// response; -1 keeps the reservation, and so does a charge past the end of
// Actual, which may be nil), and every in-flight slot is given back. The
// usage a settlement leaves is never negative.
type Settlement struct {
	Actual []int64
}
