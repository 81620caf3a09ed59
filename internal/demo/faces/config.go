// Package faces is Weft's own implementation of the Faces demo application
// (BuoyantIO faces-demo, chart 1.4.1 behaviour): a browser GUI that polls a
// "face" service, which in turn calls "smiley" and "color" in parallel. Each
// backend can be told to fail, latch into failure, sleep, or rate-limit
// itself, so that a mesh's retries, timeouts and rate limits have something
// visible to fix.
//
// One Server type plays every role; the role and its knobs come from the
// same environment variables the upstream images read (see Config).
package faces

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// Role is which Faces service a Server plays.
type Role string

// The roles. The upstream "load" role is not implemented.
const (
	RoleGUI    Role = "gui"
	RoleFace   Role = "face"
	RoleSmiley Role = "smiley"
	RoleColor  Role = "color"
)

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(strings.TrimSpace(s))); r {
	case RoleGUI, RoleFace, RoleSmiley, RoleColor:
		return r, nil
	case "":
		return "", fmt.Errorf("faces: no role given: pass gui, face, smiley or color (or set FACES_SERVICE)")
	default:
		return "", fmt.Errorf("faces: unknown role %q: want gui, face, smiley or color", s)
	}
}

// Smileys maps the names SMILEY accepts to the HTML-entity strings the
// services put on the wire.
var Smileys = map[string]string{
	"Grinning":    "&#x1F603;",
	"Sleeping":    "&#x1F634;",
	"Cursing":     "&#x1F92C;",
	"Kaboom":      "&#x1F92F;",
	"HeartEyes":   "&#x1F60D;",
	"Neutral":     "&#x1F610;",
	"RollingEyes": "&#x1F644;",
	"Screaming":   "&#x1F631;",
	"Vomiting":    "&#x1F92E;",
}

// Colors is the palette COLOR accepts (Paul Tol's "bright" scheme).
var Colors = map[string]string{
	"grey":     "#BBBBBB",
	"black":    "#000000",
	"white":    "#FFFFFF",
	"darkblue": "#4477AA",
	"blue":     "#66CCEE",
	"green":    "#228833",
	"yellow":   "#CCBB44",
	"red":      "#EE6677",
	"purple":   "#AA3377",
}

// lookupSmiley resolves a smiley name, case-insensitively; unknown names
// give Neutral, as upstream does.
func lookupSmiley(name string) string {
	if v, ok := Smileys[name]; ok {
		return v
	}
	for k, v := range Smileys {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return Smileys["Neutral"]
}

// lookupColor resolves a palette name or passes a literal #hex through;
// anything else is yellow, as upstream does.
func lookupColor(name string) string {
	if strings.HasPrefix(name, "#") && len(name) > 1 {
		if _, err := strconv.ParseUint(name[1:], 16, 64); err == nil {
			return name
		}
		return Colors["yellow"]
	}
	if v, ok := Colors[strings.ToLower(name)]; ok {
		return v
	}
	return Colors["yellow"]
}

// Config is everything a Server reads from its environment. Field comments
// name the variable; empty or unparseable values give the default.
type Config struct {
	Role Role

	ErrorFraction int     // ERROR_FRACTION, 0-100: a request fails when rand(100) <= N
	LatchFraction int     // LATCH_FRACTION, 0-100: chance a failure latches (599 until 30 s idle)
	DelayBuckets  []int   // DELAY_BUCKETS, ms: each request sleeps one, chosen uniformly
	MaxRate       float64 // MAX_RATE, requests/s over a 10 s window; off below 0.1
	UserHeader    string  // USER_HEADER_NAME, default X-Faces-User
	Pod           string  // X-Faces-Pod value; see podName
	Debug         bool    // DEBUG_ENABLED: log every request

	Smiley string // smiley role: SMILEY name resolved to its entity (default Grinning)
	Color  string // color role: COLOR resolved to #hex (default blue)

	SmileyService string // face role: SMILEY_SERVICE host[:port], default smiley
	ColorService  string // face role: COLOR_SERVICE host[:port], default color

	// gui role.
	PageColor   string // COLOR, page background (default white)
	HideKey     bool   // HIDE_KEY: hide the legend
	ShowPods    bool   // SHOW_PODS: show the pod column at start
	DataPath    string // DATA_PATH: if set, index.html and assets are read from here first
	FaceService string // FACE_SERVICE (Weft extension): host[:port] the gui proxies /face/ to, default face
}

// rateLimitOn says whether MAX_RATE is active.
func (c *Config) rateLimitOn() bool { return c.MaxRate >= 0.1 }

// ConfigFromEnv reads a role's configuration with getenv (os.Getenv in
// production; a map in tests).
func ConfigFromEnv(role Role, getenv func(string) string) Config {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := Config{
		Role:          role,
		ErrorFraction: envPercent(getenv("ERROR_FRACTION")),
		LatchFraction: envPercent(getenv("LATCH_FRACTION")),
		DelayBuckets:  parseDelayBuckets(getenv("DELAY_BUCKETS")),
		MaxRate:       envFloat(getenv("MAX_RATE")),
		UserHeader:    envString(getenv("USER_HEADER_NAME"), "X-Faces-User"),
		Pod:           podName(getenv),
		Debug:         envBool(getenv("DEBUG_ENABLED")),
	}
	switch role {
	case RoleSmiley:
		c.Smiley = lookupSmiley(envString(getenv("SMILEY"), "Grinning"))
	case RoleColor:
		c.Color = lookupColor(envString(getenv("COLOR"), "blue"))
	case RoleFace:
		c.SmileyService = envString(getenv("SMILEY_SERVICE"), "smiley")
		c.ColorService = envString(getenv("COLOR_SERVICE"), "color")
	case RoleGUI:
		c.PageColor = envString(getenv("COLOR"), "white")
		c.HideKey = envBool(getenv("HIDE_KEY"))
		c.ShowPods = envBool(getenv("SHOW_PODS"))
		c.DataPath = getenv("DATA_PATH")
		c.FaceService = envString(getenv("FACE_SERVICE"), "face")
	}
	return c
}

// podName picks the X-Faces-Pod value. Upstream uses HOST_IP, else
// HOSTNAME, else "unknown". In Kubernetes HOSTNAME is the pod name and the
// chart never sets POD_NAME, so checking POD_NAME before HOSTNAME changes
// nothing there; in Weft's local mode every workload shares the machine's
// HOSTNAME but gets its own POD_NAME from the supervisor, and without this
// the GUI's pod column could not tell replicas apart.
func podName(getenv func(string) string) string {
	for _, k := range []string{"HOST_IP", "POD_NAME", "HOSTNAME"} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
	}
	return "unknown"
}

func envString(v, def string) string {
	if v = strings.TrimSpace(v); v == "" {
		return def
	}
	return v
}

func envBool(v string) bool {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	return err == nil && b
}

// envPercent parses an int clamped to 0-100; bad input is 0.
func envPercent(v string) int {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0
	}
	return min(max(n, 0), 100)
}

func envFloat(v string) float64 {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// parseDelayBuckets parses a comma list of milliseconds. Bad items are
// skipped and negatives become 0, as upstream does; nil means no delay.
func parseDelayBuckets(v string) []int {
	var out []int
	for item := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(item))
		if err != nil {
			continue
		}
		out = append(out, max(n, 0))
	}
	return out
}
