package app

import (
	"runtime/debug"

	"github.com/pkid/pkid/internal/config"
)

// DefaultGCPercent is the garbage collector's target (GOGC) of a pkid node
// unless the environment sets GOGC.
//
// Go's default of 100 lets the heap grow to twice what is live before it
// collects. A node's live heap is small (caches of OCSP responses and CRLs,
// a few MB per hundred thousand certificates), while issuance allocates
// several hundred KB per certificate (parsing, linting, encoding), so at the
// default the collector ran often enough to take about 8% of the CPU of a
// busy node. Four times the live heap costs a few tens of MB more and
// makes collection about four times rarer. Set GOGC (or GOMEMLIMIT) to
// choose otherwise.
const DefaultGCPercent = 400

// TuneRuntime applies DefaultGCPercent unless env sets GOGC. It
// changes the whole process, so only commands call it (pkid serve and the
// load benchmark, which measures what pkid serve runs), never a library.
func TuneRuntime(env config.Getenv) {
	if _, set := env("GOGC"); !set {
		debug.SetGCPercent(DefaultGCPercent)
	}
}
