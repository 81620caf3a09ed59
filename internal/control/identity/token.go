package identity

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/weft-mesh/weft/internal/tlsid"
)

// Workload is who a token says its bearer is. The certificate a workload
// may have is for its service account in its namespace.
type Workload struct {
	Namespace      string `json:"ns"`
	ServiceAccount string `json:"sa"`
	Pod            string `json:"pod"`
}

// TokenValidator checks a proxy's token and says which workload it
// belongs to. Local mode uses HMACValidator; Kubernetes mode can answer
// with a TokenReview of the projected service account token.
type TokenValidator interface {
	Validate(ctx context.Context, token []byte) (Workload, error)
}

// ErrInvalidToken wraps every refusal of a token.
var ErrInvalidToken = errors.New("invalid identity token")

// TokenKeyFile is the HMAC key's file in the identity directory.
const TokenKeyFile = "token.key"

// tokenPrefix versions the token format: "weft1.<payload>.<mac>", payload
// and MAC base64url without padding, MAC = HMAC-SHA256(key, "weft1.<payload>").
const tokenPrefix = "weft1."

const tokenKeySize = 32

// LoadOrCreateTokenKey returns the token key kept in identity directory
// dir, creating it (0600) on first use. The supervisor (minting) and the
// control plane (validating) both call it; a lock makes them agree.
func LoadOrCreateTokenKey(dir string) ([]byte, error) {
	unlock, err := tlsid.LockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	defer unlock()
	path := filepath.Join(dir, TokenKeyFile)
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, tokenKeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("identity: generating the token key: %w", err)
		}
		if err := tlsid.WriteFileExclusive(path, key, 0o600); err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("identity: reading the token key: %w", err)
	}
	if len(key) < tokenKeySize {
		return nil, fmt.Errorf("identity: token key %s is %d bytes, want %d; remove it to make a new one (and restart the mesh)", path, len(key), tokenKeySize)
	}
	return key, nil
}

// MintToken makes the token a replica's proxy presents to Certify: it
// entitles the bearer to the identity of w's service account in w's
// namespace. The supervisor calls it once per replica.
func MintToken(key []byte, w Workload) ([]byte, error) {
	if err := checkWorkload(w); err != nil {
		return nil, err
	}
	if len(key) < tokenKeySize {
		return nil, fmt.Errorf("identity: token key is %d bytes, want at least %d", len(key), tokenKeySize)
	}
	payload, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("identity: encoding a token: %w", err)
	}
	msg := tokenPrefix + base64.RawURLEncoding.EncodeToString(payload)
	return []byte(msg + "." + base64.RawURLEncoding.EncodeToString(mac(key, msg))), nil
}

func mac(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

func checkWorkload(w Workload) error {
	// The names become DNS labels of the identity; refuse what would not.
	probe := tlsid.DefaultDomain.Name(w.Namespace, w.ServiceAccount)
	if _, _, err := tlsid.DefaultDomain.Parse(probe); err != nil {
		return fmt.Errorf("identity: workload namespace %q and service account %q must be DNS labels", w.Namespace, w.ServiceAccount)
	}
	if w.Pod == "" {
		return errors.New("identity: workload has no pod name")
	}
	return nil
}

// HMACValidator validates tokens made by MintToken with the same key.
type HMACValidator struct{ key []byte }

// NewHMACValidator returns a validator for tokens minted with key.
func NewHMACValidator(key []byte) *HMACValidator { return &HMACValidator{key: key} }

// Validate checks the token's MAC and returns its workload.
func (v *HMACValidator) Validate(_ context.Context, token []byte) (Workload, error) {
	return parseToken(v.key, token)
}

func parseToken(key, token []byte) (Workload, error) {
	s := string(token)
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return Workload{}, fmt.Errorf("%w: not a weft token (it must start with %q)", ErrInvalidToken, tokenPrefix)
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return Workload{}, fmt.Errorf("%w: malformed", ErrInvalidToken)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return Workload{}, fmt.Errorf("%w: malformed signature", ErrInvalidToken)
	}
	if !hmac.Equal(got, mac(key, tokenPrefix+payload)) {
		return Workload{}, fmt.Errorf("%w: bad signature (minted with another mesh's key?)", ErrInvalidToken)
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Workload{}, fmt.Errorf("%w: malformed payload", ErrInvalidToken)
	}
	var w Workload
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Workload{}, fmt.Errorf("%w: payload: %v", ErrInvalidToken, err)
	}
	if err := checkWorkload(w); err != nil {
		return Workload{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return w, nil
}
