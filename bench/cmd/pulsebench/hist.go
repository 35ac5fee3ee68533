package main

import (
	"math"
	"sync"
	"time"
)

// histogram records durations in logarithmic buckets (2% wide, 1 µs to
// about 1,000 s) in constant memory, so a contender can keep latency
// statistics for millions of events without the memory showing in its RSS.
type histogram struct {
	mu     sync.Mutex
	counts []int64
	n      int64
	max    time.Duration
}

const (
	histGrowth  = 1.02
	histMinNs   = 1e3
	histBuckets = 1400 // 1.02^1400 µs is about 10^12 µs
)

var histLogGrowth = math.Log(histGrowth)

func newHistogram() *histogram { return &histogram{counts: make([]int64, histBuckets)} }

func histBucket(d time.Duration) int {
	if float64(d) <= histMinNs {
		return 0
	}
	i := int(math.Log(float64(d)/histMinNs)/histLogGrowth) + 1
	return min(i, histBuckets-1)
}

// Record adds one duration; negative ones count as zero.
func (h *histogram) Record(d time.Duration) {
	d = max(d, 0)
	i := histBucket(d)
	h.mu.Lock()
	h.counts[i]++
	h.n++
	h.max = max(h.max, d)
	h.mu.Unlock()
}

// Count returns how many durations were recorded.
func (h *histogram) Count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Quantile returns the upper bound of the bucket holding the q-quantile
// (0..1), in milliseconds, capped at the largest value seen; 0 when empty.
func (h *histogram) Quantile(q float64) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			upper := histMinNs * math.Pow(histGrowth, float64(i))
			return math.Min(upper, float64(h.max)) / 1e6
		}
	}
	return float64(h.max) / 1e6
}

// MaxMs returns the largest duration recorded, in milliseconds.
func (h *histogram) MaxMs() float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return float64(h.max) / 1e6
}
