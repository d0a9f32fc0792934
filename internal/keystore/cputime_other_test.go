//go:build !unix

package keystore_test

import "time"

// processCPUTime is not measured here; the cpu-µs/op metric is left out.
func processCPUTime() time.Duration { return 0 }
