package identity

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func testKey(t testing.TB, b byte) []byte {
	t.Helper()
	return bytes.Repeat([]byte{b}, tokenKeySize)
}

func TestTokenRoundTrip(t *testing.T) {
	key := testKey(t, 1)
	w := Workload{Namespace: "faces", ServiceAccount: "smiley", Pod: "smiley-5d8f7-abcde"}
	tok, err := MintToken(key, w)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewHMACValidator(key).Validate(context.Background(), tok)
	if err != nil || got != w {
		t.Fatalf("Validate = %+v, %v; want %+v", got, err, w)
	}
}

func TestTokenRefusals(t *testing.T) {
	key := testKey(t, 1)
	good, err := MintToken(key, Workload{Namespace: "faces", ServiceAccount: "smiley", Pod: "p"})
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := MintToken(testKey(t, 2), Workload{Namespace: "faces", ServiceAccount: "smiley", Pod: "p"})
	if err != nil {
		t.Fatal(err)
	}
	// Swap in another workload's payload under the original MAC.
	forged := func() []byte {
		other, _ := MintToken(key, Workload{Namespace: "faces", ServiceAccount: "color", Pod: "p"})
		gp := strings.Split(string(good), ".")
		op := strings.Split(string(other), ".")
		return []byte(gp[0] + "." + op[1] + "." + gp[2])
	}()
	tests := []struct {
		name  string
		token []byte
		want  string
	}{
		{"empty", nil, "not a weft token"},
		{"kubernetes jwt", []byte("eyJhbGciOiJSUzI1NiJ9.e30.sig"), "not a weft token"},
		{"no mac", []byte("weft1.abc"), "malformed"},
		{"other key", otherKey, "bad signature"},
		{"forged payload", forged, "bad signature"},
		{"truncated mac", good[:len(good)-4], "bad signature"},
	}
	v := NewHMACValidator(key)
	for _, tt := range tests {
		_, err := v.Validate(context.Background(), tt.token)
		if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v, want ErrInvalidToken containing %q", tt.name, err, tt.want)
		}
	}
}

func TestMintTokenRefusesBadWorkloads(t *testing.T) {
	for _, w := range []Workload{
		{Namespace: "", ServiceAccount: "sa", Pod: "p"},
		{Namespace: "ns", ServiceAccount: "a.b", Pod: "p"},
		{Namespace: "NS", ServiceAccount: "sa", Pod: "p"},
		{Namespace: "ns", ServiceAccount: "sa", Pod: ""},
	} {
		if _, err := MintToken(testKey(t, 1), w); err == nil {
			t.Errorf("MintToken(%+v) succeeded", w)
		}
	}
	if _, err := MintToken([]byte("short"), Workload{Namespace: "ns", ServiceAccount: "sa", Pod: "p"}); err == nil {
		t.Error("MintToken with a short key succeeded")
	}
}

func TestLoadOrCreateTokenKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "identity")
	// The supervisor and the control plane may race for it: all agree.
	var wg sync.WaitGroup
	keys := make([][]byte, 8)
	errs := make([]error, 8)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], errs[i] = LoadOrCreateTokenKey(dir)
		}()
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatal("concurrent LoadOrCreateTokenKey returned different keys")
		}
	}
	st, err := os.Stat(filepath.Join(dir, TokenKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("token key mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if err := os.WriteFile(filepath.Join(dir, TokenKeyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateTokenKey(dir); err == nil || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("short key: %v", err)
	}
}

func FuzzParseToken(f *testing.F) {
	key := bytes.Repeat([]byte{7}, tokenKeySize)
	tok, _ := MintToken(key, Workload{Namespace: "faces", ServiceAccount: "smiley", Pod: "p"})
	f.Add(tok)
	f.Add([]byte("weft1.."))
	f.Add([]byte("weft1.e30.AAAA"))
	f.Fuzz(func(t *testing.T, token []byte) {
		w, err := parseToken(key, token)
		if err != nil {
			return
		}
		// Only a token minted with the key can pass; re-minting gives a
		// token for the same workload.
		again, err := MintToken(key, w)
		if err != nil {
			t.Fatalf("accepted token with an unmintable workload %+v: %v", w, err)
		}
		if w2, err := parseToken(key, again); err != nil || w2 != w {
			t.Fatalf("re-minted token: %+v, %v", w2, err)
		}
	})
}
