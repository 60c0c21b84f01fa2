package consumers

import "strings"

// StripBearer is the key an Authorization value carries: the value without
// a Bearer scheme, in any case, and the blanks after it; a value without
// the scheme is the key itself. The bare scheme carries no key: "". The
// handler calls it per request, so it slices and never allocates.
func StripBearer(v string) string {
	const scheme = "bearer"
	if len(v) >= len(scheme) && strings.EqualFold(v[:len(scheme)], scheme) &&
		(len(v) == len(scheme) || v[len(scheme)] == ' ' || v[len(scheme)] == '\t') {
		return strings.TrimLeft(v[len(scheme):], " \t")
	}
	return v
}
