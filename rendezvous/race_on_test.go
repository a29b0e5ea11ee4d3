//go:build race

package rendezvous

// raceSlowdown stretches the time budgets of the flood tests: the race
// detector makes every goroutine several times slower, and a flood runs
// thousands of them on a shared machine.
const raceSlowdown = 3
