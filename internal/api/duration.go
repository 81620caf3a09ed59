package api

import (
	"fmt"
	"strings"
	"time"
)

// ParseDuration parses a duration that must carry a unit ("300ms", "10s",
// "1m30s"). A bare number is refused: "10" is ambiguous between seconds and
// milliseconds, and Linkerd refuses it too.
func ParseDuration(s string) (time.Duration, error) {
	if !strings.ContainsAny(s, "nsuµmh") {
		// time.ParseDuration accepts a bare "0"; the unit is required here.
		return 0, fmt.Errorf("invalid duration %q: want a number with a unit, such as 300ms or 10s", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a number with a unit, such as 300ms or 10s", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return d, nil
}
