//go:build !linux

package consumers

import "os"

// parseFile parses a consumers file.
func parseFile(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, readError{err}
	}
	return Parse(data)
}
