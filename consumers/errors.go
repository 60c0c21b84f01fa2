package consumers

import "errors"

// The errors of a write to a source (keyauth.Writer, whose package
// re-exports them): declared here, where every writer can reach them, since
// the sources cannot import the handler's package. Test them with
// errors.Is; the messages of the errors that wrap them say more.
var (
	// ErrConflict is a write that another writer's change, made meanwhile,
	// refused: nothing was written, and the caller may read again and
	// retry.
	ErrConflict = errors.New("the consumers changed meanwhile")

	// ErrCredentialTaken is a write that gives a credential an id, or a
	// key, that a credential of another consumer of the source already
	// has. Its message names the credential written, never the other one
	// (nor its consumer).
	ErrCredentialTaken = errors.New("credential id already in use")

	// ErrRefused is a write of a consumer that a load would refuse (a
	// field the document's rules refuse, an id that another consumer
	// already has): nothing was written. Its message names the field.
	ErrRefused = errors.New("refused by the consumers document's rules")
)

// Refused marks err, a check's error, as ErrRefused, keeping its message:
// errors.Is(Refused(err), ErrRefused), and errors.Is and errors.As still
// reach err.
func Refused(err error) error {
	if err == nil {
		return nil
	}
	return &markedError{err, ErrRefused}
}

// Taken is a write that gives a credential an id or a key another consumer's
// credential already has (ErrCredentialTaken), with msg as its message.
func Taken(msg string) error {
	return &markedError{errors.New(msg), ErrCredentialTaken}
}

// Conflict marks err as ErrConflict, keeping its message.
func Conflict(err error) error {
	if err == nil {
		return nil
	}
	return &markedError{err, ErrConflict}
}

// markedError is err with its message, also matching mark with errors.Is.
type markedError struct {
	err, mark error
}

func (e *markedError) Error() string   { return e.err.Error() }
func (e *markedError) Unwrap() []error { return []error{e.err, e.mark} }
