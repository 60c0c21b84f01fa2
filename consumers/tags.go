package consumers

import (
	"bytes"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// CheckTag reports why tag cannot be a consumer's tag, or nil: a tag is not
// empty, holds no comma and has no white space at either end, so that every
// source gives a consumer the same tags (why: the list fields of
// consumers/sources/redis.Layout). Kong refuses a comma in a tag too.
func CheckTag(tag string) error {
	if f := tagFault([]byte(tag)); f != "" {
		return fmt.Errorf("tag %q %s", tag, f)
	}
	return nil
}

// tagFault is why a tag is refused, or "".
func tagFault(tag []byte) string {
	if len(tag) == 0 {
		return "is empty"
	}
	if bytes.IndexByte(tag, ',') >= 0 {
		return "holds a comma (tags are comma-separated in Redis)"
	}
	first, _ := utf8.DecodeRune(tag)
	last, _ := utf8.DecodeLastRune(tag)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return "starts or ends with white space"
	}
	return ""
}

func (d *consumerDraft) checkTags() error {
	for i, t := range d.tags {
		if f := tagFault(d.s(t)); f != "" {
			if len(d.s(t)) == 0 {
				return fmt.Errorf("%s: tag #%d %s", d.name(), i+1, f)
			}
			return fmt.Errorf("%s: tag %q %s", d.name(), d.s(t), f)
		}
	}
	return nil
}
