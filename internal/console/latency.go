package console

import (
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edupulse/pulsebus/pkg/dispatch/dispatchprom"
)

// commitToHandleP99 reads the 99th percentile of each handler's
// commit-to-handle latency from the process's own histogram
// (dispatchprom.NameCommitToHandle), since the process started: the upper
// bound of the bucket holding it. A handler without observations is left
// out; nil when g is nil or has no such histogram.
func commitToHandleP99(g prometheus.Gatherer) map[string]time.Duration {
	if g == nil {
		return nil
	}
	families, err := g.Gather()
	if err != nil {
		return nil
	}
	out := map[string]time.Duration{}
	for _, f := range families {
		if f.GetName() != dispatchprom.NameCommitToHandle {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			if h == nil || h.GetSampleCount() == 0 {
				continue
			}
			handler := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "handler" {
					handler = l.GetValue()
				}
			}
			want := math.Ceil(0.99 * float64(h.GetSampleCount()))
			bound := math.Inf(1)
			for _, b := range h.GetBucket() {
				if float64(b.GetCumulativeCount()) >= want {
					bound = b.GetUpperBound()
					break
				}
			}
			if math.IsInf(bound, 1) {
				out[handler] = -1 // above the largest bucket
				continue
			}
			out[handler] = time.Duration(bound * float64(time.Second))
		}
	}
	return out
}
