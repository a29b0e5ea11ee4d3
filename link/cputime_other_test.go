//go:build !unix

package link

import "time"

// processCPU is not measured here; benchmarks then leave out their CPU
// figures.
func processCPU() time.Duration { return 0 }
