//go:build !race

package rendezvous

// raceSlowdown stretches the time budgets of the flood tests (see
// race_on_test.go); without the race detector they are as specified.
const raceSlowdown = 1
