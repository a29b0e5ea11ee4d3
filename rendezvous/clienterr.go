package rendezvous

import (
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/internal/backoff"
)

// ReplacedError ends a control connection whose key another daemon
// registered: two daemons share one key, and the server keeps the newer.
type ReplacedError struct {
	// By is where the other daemon registered from, as the server saw it.
	By string
}

func (e *ReplacedError) Error() string {
	return fmt.Sprintf("another daemon uses this key (registered from %s)", e.By)
}

// PermanentError is a refusal that retrying will not change: the config
// must. Fix names the config key to look at.
type PermanentError struct {
	Err error
	Fix string
}

func (e *PermanentError) Error() string { return fmt.Sprintf("%v (check %s)", e.Err, e.Fix) }
func (e *PermanentError) Unwrap() error { return e.Err }

// Waits after a connection ends for good reasons of its own (another
// daemon took the key, the server refuses this config): long, so that two
// daemons sharing a key take turns by the minute rather than flap, and a
// wrong config costs the server a try every few minutes, not four a
// second; a restart or reload picks up a fixed config at once.
const (
	minLongRetry = time.Minute
	maxLongRetry = 30 * time.Minute
)

// retries are Run's waits between connections.
type retries struct {
	transient, long backoff.Backoff
}

func newRetries(maxTransient time.Duration) *retries {
	return &retries{
		transient: backoff.Backoff{Min: 250 * time.Millisecond, Max: maxTransient},
		long:      backoff.Backoff{Min: minLongRetry, Max: maxLongRetry},
	}
}

// after returns the wait after a connection that ended with err having
// lasted lasted, and logs why, once: an error with what to do for a lasting
// cause, a warning for the others.
func (r *retries) after(err error, lasted time.Duration, log logrus.FieldLogger) time.Duration {
	var replaced *ReplacedError
	var perm *PermanentError
	switch {
	case errors.As(err, &replaced):
		wait := r.long.Next()
		log.WithFields(logrus.Fields{"registered_from": replaced.By, "retry_in": wait.Round(time.Second)}).
			Error(replaced.Error() + "; stop one of them, or give one its own key (key_file, warren keygen)")
		return wait
	case errors.As(err, &perm):
		wait := r.long.Next()
		log.WithError(perm.Err).WithFields(logrus.Fields{"fix": perm.Fix, "retry_in": wait.Round(time.Second)}).
			Error("the rendezvous server refuses this daemon; fix " + perm.Fix)
		return wait
	}
	if lasted > time.Minute {
		r.transient.Reset()
		r.long.Reset()
	}
	wait := r.transient.Next()
	log.WithError(err).WithField("retry_in", wait.Round(time.Millisecond)).Warn("rendezvous connection lost")
	return wait
}
