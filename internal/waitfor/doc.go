// Package waitfor owns bounded waits on a sync.WaitGroup, for shutdowns
// that must not hang on work that is slow to finish.
//
// It knows nothing of the work waited for and must not start or stop it:
// the caller bounds that work and decides what an expired wait means.
package waitfor
