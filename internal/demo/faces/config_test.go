package faces

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name string
		role Role
		env  map[string]string
		want Config
	}{
		{
			name: "defaults",
			role: RoleSmiley,
			want: Config{Role: RoleSmiley, UserHeader: "X-Faces-User", Pod: "unknown", Smiley: "&#x1F603;"},
		},
		{
			name: "chart values",
			role: RoleColor,
			env: map[string]string{
				"ERROR_FRACTION": "20", "DELAY_BUCKETS": "0,5,10,15,20,50,200,500,1500",
				"USER_HEADER_NAME": "X-Who", "HOSTNAME": "color-5d8-xk2", "COLOR": "green",
			},
			want: Config{
				Role: RoleColor, ErrorFraction: 20, DelayBuckets: []int{0, 5, 10, 15, 20, 50, 200, 500, 1500},
				UserHeader: "X-Who", Pod: "color-5d8-xk2", Color: "#228833",
			},
		},
		{
			name: "clamping and junk",
			role: RoleFace,
			env: map[string]string{
				"ERROR_FRACTION": "250", "LATCH_FRACTION": "-3", "DELAY_BUCKETS": "x, 7,-4,,1e3",
				"MAX_RATE": "nope", "DEBUG_ENABLED": "true", "SMILEY_SERVICE": "127.0.0.1:9", "COLOR_SERVICE": " ",
			},
			want: Config{
				Role: RoleFace, ErrorFraction: 100, LatchFraction: 0, DelayBuckets: []int{7, 0},
				UserHeader: "X-Faces-User", Pod: "unknown", Debug: true,
				SmileyService: "127.0.0.1:9", ColorService: "color",
			},
		},
		{
			name: "pod precedence: HOST_IP first",
			role: RoleSmiley,
			env:  map[string]string{"HOST_IP": "10.0.0.7", "POD_NAME": "smiley-a-b", "HOSTNAME": "laptop", "SMILEY": "heareyes"},
			want: Config{Role: RoleSmiley, UserHeader: "X-Faces-User", Pod: "10.0.0.7", Smiley: "&#x1F610;"},
		},
		{
			name: "pod precedence: POD_NAME before HOSTNAME",
			role: RoleSmiley,
			env:  map[string]string{"POD_NAME": "smiley-a-b", "HOSTNAME": "laptop", "SMILEY": "heartEYES", "MAX_RATE": "9.5"},
			want: Config{Role: RoleSmiley, MaxRate: 9.5, UserHeader: "X-Faces-User", Pod: "smiley-a-b", Smiley: "&#x1F60D;"},
		},
		{
			name: "gui",
			role: RoleGUI,
			env:  map[string]string{"COLOR": "black", "HIDE_KEY": "1", "SHOW_PODS": "yes", "FACE_SERVICE": "127.0.0.1:5"},
			want: Config{Role: RoleGUI, UserHeader: "X-Faces-User", Pod: "unknown", PageColor: "black", HideKey: true, FaceService: "127.0.0.1:5"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ConfigFromEnv(tt.role, envMap(tt.env))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ConfigFromEnv(%s) mismatch (-want +got):\n%s", tt.role, diff)
			}
		})
	}
}

func TestLookupColor(t *testing.T) {
	for in, want := range map[string]string{
		"blue": "#66CCEE", "RED": "#EE6677", "#123abc": "#123abc", "#xyz": "#CCBB44", "mauve": "#CCBB44", "#": "#CCBB44",
	} {
		if got := lookupColor(in); got != want {
			t.Errorf("lookupColor(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, ok := range []string{"gui", "face", "Smiley", " color "} {
		if _, err := ParseRole(ok); err != nil {
			t.Errorf("ParseRole(%q) = %v, want ok", ok, err)
		}
	}
	for _, bad := range []string{"", "load", "faces-gui"} {
		if _, err := ParseRole(bad); err == nil {
			t.Errorf("ParseRole(%q) succeeded, want error", bad)
		}
	}
}

func FuzzParseDelayBuckets(f *testing.F) {
	for _, s := range []string{"", "0,5,10,15,20,50,200,500,1500", "-1,x,,3", " 7 , 8", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := parseDelayBuckets(s)
		if slices.ContainsFunc(got, func(n int) bool { return n < 0 }) {
			t.Fatalf("parseDelayBuckets(%q) = %v: negative bucket", s, got)
		}
		if n := len(got); n > strings.Count(s, ",")+1 {
			t.Fatalf("parseDelayBuckets(%q) = %v: more buckets than input", s, got)
		}
	})
}

func FuzzConfigFromEnv(f *testing.F) {
	f.Add("20", "5", "1.5", "Grinning", "blue")
	f.Add("-1", "101", "NaN", "", "#zz")
	f.Fuzz(func(t *testing.T, errFrac, latch, rate, smiley, color string) {
		env := envMap(map[string]string{"ERROR_FRACTION": errFrac, "LATCH_FRACTION": latch, "MAX_RATE": rate, "SMILEY": smiley, "COLOR": color})
		for _, role := range []Role{RoleSmiley, RoleColor} {
			c := ConfigFromEnv(role, env)
			if c.ErrorFraction < 0 || c.ErrorFraction > 100 || c.LatchFraction < 0 || c.LatchFraction > 100 {
				t.Fatalf("fractions out of range: %+v", c)
			}
			if role == RoleSmiley && !slices.Contains(mapValues(Smileys), c.Smiley) {
				t.Fatalf("smiley %q not in the table", c.Smiley)
			}
			if role == RoleColor && (len(c.Color) < 2 || c.Color[0] != '#') {
				t.Fatalf("color %q is not #hex", c.Color)
			}
		}
	})
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
