package consumercmd

import (
	"math"
	"strings"
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

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// validTopic reports whether t is a legal Kafka topic name.
func validTopic(t string) bool {
	if t == "" || len(t) > 249 || t == "." || t == ".." {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
