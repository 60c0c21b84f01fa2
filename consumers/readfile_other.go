//go:build !linux

package consumers

import "os"

// ParseFile parses a consumers file.
func ParseFile(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, ReadError{err}
	}
	return Parse(data)
}
