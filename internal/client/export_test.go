package client

import (
	"context"
	"time"
)

// SetWatchHooks replaces Watch's sleep and random number source.
func SetWatchHooks(o *WatchOptions, sleep func(context.Context, time.Duration) error, random func() float64) {
	o.sleep, o.random = sleep, random
}
