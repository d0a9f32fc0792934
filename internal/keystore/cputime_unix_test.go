//go:build unix

package keystore_test

import (
	"syscall"
	"time"
)

// processCPUTime returns the CPU time the process has used (user and
// system, every thread, SoftHSM2's included since it runs in the process).
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
