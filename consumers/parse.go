package consumers

import (
	"fmt"
	"reflect"
	"strings"
)

// Parse checks a consumers document and builds its Set. Its errors name the
// consumer and the credential at fault, never a key.
//
// It reads the document twice: the first pass checks it and counts what the
// Set needs, the second fills arrays of exactly that size, so a large document
// leaves no slack behind and needs no copy at the end.
func Parse(doc []byte) (*Set, error) { return parse(doc, nil) }

// parse is Parse telling release, as it goes, which stretches of the
// document it is done with in the current pass, so a caller holding the
// document in a mapped file can let those pages go.
func parse(doc []byte, release func(from, to int)) (*Set, error) {
	var b builder
	if err := (&parser{data: doc, b: &b, release: release}).document(); err != nil {
		return nil, err
	}
	if err := b.startFill(); err != nil {
		return nil, err
	}
	if err := (&parser{data: doc, b: &b, release: release}).document(); err != nil {
		return nil, err
	}
	return b.finish(), nil
}

// releaseEvery is how much of the document the parser moves through
// between two calls of its release function.
const releaseEvery = 8 << 20

type parser struct {
	data    []byte
	pos     int
	b       *builder
	draft   consumerDraft
	scratch []byte

	release  func(from, to int)
	released int
}

func (p *parser) document() error {
	seen := false
	err := p.object(fixed("the document"), func(name []byte, at int) error {
		if string(name) != "consumers" {
			return p.errAt(at, `unknown field in the document (it holds "consumers")`)
		}
		if seen {
			return p.errAt(at, `"consumers" given twice`)
		}
		seen = true
		if p.null() {
			// A generator's nil list would otherwise wipe every consumer.
			return p.errAt(at, `"consumers" is null; an empty list is []`)
		}
		return p.array(fixed(`"consumers"`), p.consumer)
	})
	if err != nil {
		return err
	}
	if !seen {
		return p.errAt(0, `the document has no "consumers" field`)
	}
	if p.peek() != 0 {
		return p.errAt(p.pos, "unexpected data after the document")
	}
	return nil
}

func (p *parser) consumer(index int) error {
	d := &p.draft
	d.reset(index, p.pos)
	err := p.fields(label{consumer: index + 1}, consumerFields, func(field string) error {
		var err error
		switch field {
		case "username":
			d.hasUsername, err = p.optStr(fixed("username"), &d.username)
		case "id":
			d.hasID, err = p.optStr(fixed("id"), &d.id)
		case "custom_id":
			_, err = p.optStr(fixed("custom_id"), &d.customID)
		case "tags":
			err = p.array(fixed("tags"), func(int) error {
				s, err := p.str(fixed("a tag"))
				if err == nil {
					d.tags = append(d.tags, p.keep(s))
				}
				return err
			})
		case "keys":
			err = p.array(fixed("keys"), p.credential)
		case "groups":
			err = p.array(fixed("groups"), func(int) error {
				s, err := p.str(fixed("a group"))
				if err == nil {
					d.groups = append(d.groups, p.keep(s))
				}
				return err
			})
		case "labels":
			err = p.labels()
		case "disabled":
			err = p.optBool("disabled", &d.disabled)
		default:
			err = errNotParsed(field)
		}
		return err
	})
	if err != nil {
		return err
	}
	err = d.check()
	if err == nil {
		err = p.b.add(d)
	}
	if err != nil {
		return fmt.Errorf("line %d: %w", p.lineOf(d.at), err)
	}
	if p.release != nil && p.pos-p.released >= releaseEvery {
		p.release(p.released, p.pos)
		p.released = p.pos
	}
	return nil
}

func (p *parser) credential(int) error {
	d := &p.draft
	d.credentials = append(d.credentials, credentialDraft{})
	c := &d.credentials[len(d.credentials)-1]
	return p.fields(label{consumer: d.index + 1, key: len(d.credentials)}, credentialFields, func(field string) error {
		var err error
		switch field {
		case "id":
			c.hasID, err = p.optStr(fixed("id"), &c.id)
		case "key":
			c.hasKey, err = p.optStr(fixed("key"), &c.key)
		case "hash":
			c.hasHash, err = p.optStr(fixed("hash"), &c.hash)
		case "expires_at":
			c.hasExpiry, err = p.optStr(fixed("expires_at"), &c.expiry)
		case "disabled":
			err = p.optBool("disabled", &c.disabled)
		case "canary":
			err = p.optBool("canary", &c.canary)
		default:
			err = errNotParsed(field)
		}
		return err
	})
}

// labels reads a consumer's labels: an object of strings, or null for none.
// Their names and values are checked with the consumer, so that the error
// names it.
func (p *parser) labels() error {
	if p.null() {
		return nil
	}
	d := &p.draft
	return p.object(fixed("labels"), func(name []byte, _ int) error {
		l := labelDraft{name: p.keep(name)} // kept before str reuses its buffer
		v, err := p.str(fixed("a label value"))
		if err != nil {
			return err
		}
		l.value = p.keep(v)
		d.labels = append(d.labels, l)
		return nil
	})
}

// The members a consumer and a credential may have: the JSON names of the
// fields of their description, ConsumerEntry and CredentialEntry. A field
// added there and not parsed here is refused (errNotParsed) until it is.
var (
	consumerFields   = jsonNames(reflect.TypeFor[ConsumerEntry]())
	credentialFields = jsonNames(reflect.TypeFor[CredentialEntry]())
)

func jsonNames(t reflect.Type) []string {
	names := make([]string, t.NumField())
	for i := range names {
		names[i], _, _ = strings.Cut(t.Field(i).Tag.Get("json"), ",")
	}
	if len(names) > maxFields {
		panic(fmt.Sprintf("consumers: %s has %d fields, the parser tracks at most %d", t, len(names), maxFields))
	}
	return names
}

// maxFields is how many members of one object fields can tell apart.
const maxFields = 16

// errNotParsed is a member that the description has and the parser does not
// read: a bug, which TestParseReadsEveryField finds.
func errNotParsed(field string) error {
	return fmt.Errorf("field %s is described but not parsed", field)
}

// fields walks an object whose members must be among names, each at most
// once, and has parse read the value of each, by its name.
func (p *parser) fields(what label, names []string, parse func(field string) error) error {
	var seen [maxFields]bool
	return p.object(what, func(name []byte, at int) error {
		field := -1
		for i, n := range names {
			if string(name) == n { // compares in place, without a copy
				field = i
				break
			}
		}
		if field < 0 {
			// The name is not quoted: a broken document may have a key there.
			return p.errAt(at, "unknown field in %s (fields: %s)", what, strings.Join(names, ", "))
		}
		if seen[field] {
			return p.errAt(at, "field %s given twice in %s", name, what)
		}
		seen[field] = true
		return parse(names[field])
	})
}
