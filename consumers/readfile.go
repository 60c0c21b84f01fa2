package consumers

// ReadError is a file that could not be read, as opposed to one refused
// for what it holds: it is tried again at the next poll.
type ReadError struct{ Err error }

func (e ReadError) Error() string { return e.Err.Error() }
func (e ReadError) Unwrap() error { return e.Err }
