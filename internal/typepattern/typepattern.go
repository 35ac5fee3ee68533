// Package typepattern holds the rule for the event-type patterns a handler
// registers for, so that the consumer library and the consumer CLI accept
// the same patterns and explain a refusal the same way. It is pure: no I/O,
// no dependencies beyond the standard library.
package typepattern

import (
	"fmt"
	"strings"
)

// Pattern is a parsed event-type pattern: exactly one of its fields is set.
type Pattern struct {
	All    bool   // "*": every type
	Prefix string // "lesson.*": types starting with "lesson." (the dot included)
	Exact  string // "lesson.created": that type only
}

// Parse parses p: "*", "prefix.*" (a non-empty prefix without '*') or an
// exact type (non-empty, without '*'). A '*' anywhere else is refused rather
// than read as a wildcard, so that a pattern never means something other
// than what it looks like.
func Parse(p string) (Pattern, error) {
	switch {
	case p == "*":
		return Pattern{All: true}, nil
	case len(p) > 2 && strings.HasSuffix(p, ".*") && !strings.Contains(p[:len(p)-2], "*"):
		return Pattern{Prefix: p[:len(p)-1]}, nil
	case p == "" || strings.Contains(p, "*"):
		return Pattern{}, fmt.Errorf("event type pattern %q: want an exact type, prefix.* or *", p)
	default:
		return Pattern{Exact: p}, nil
	}
}
