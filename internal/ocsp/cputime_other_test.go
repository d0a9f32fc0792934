//go:build !unix

package ocsp_test

import "time"

// processCPUTime is unknown here; the benchmarks then report wall time only.
func processCPUTime() time.Duration { return 0 }
