//go:build race

package transport

// raceEnabled shrinks bulk transfers: the race detector slows them ~10x.
const raceEnabled = true
