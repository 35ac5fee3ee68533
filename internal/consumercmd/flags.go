package consumercmd

import (
	"math"
	"time"
)

// The widest bounds, for the numeric settings that validate checks itself,
// with errors that say more than a range would ("want at least 1", a retry
// interval shorter than another).
const (
	minInt                    = math.MinInt
	maxInt                    = math.MaxInt
	minDuration time.Duration = math.MinInt64
	maxDuration time.Duration = math.MaxInt64
)
