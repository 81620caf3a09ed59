package tlsid

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Files of an identity directory (D/identity in local mode). The anchor's
// key is kept so a new issuer can be made when this one expires; proxies
// only ever see AnchorsFile.
const (
	AnchorsFile    = "ca.crt"
	AnchorKeyFile  = "ca.key"
	IssuerCertFile = "issuer.crt"
	IssuerKeyFile  = "issuer.key"
	lockFile       = ".lock"
)

// Files names the PEM files an Authority is loaded from, as Linkerd's
// --identity-trust-anchors-file, --identity-issuer-certificate-file and
// --identity-issuer-key-file do.
type Files struct {
	TrustAnchors      string
	IssuerCertificate string
	IssuerKey         string
}

// DirFiles are the files of identity directory dir.
func DirFiles(dir string) Files {
	return Files{
		TrustAnchors:      filepath.Join(dir, AnchorsFile),
		IssuerCertificate: filepath.Join(dir, IssuerCertFile),
		IssuerKey:         filepath.Join(dir, IssuerKeyFile),
	}
}

// Load reads an Authority's certificates and key from files. The issuer
// certificate file may hold further intermediates after the issuer. The
// result is not validated; call Validate.
func Load(f Files, d Domain) (*Authority, error) {
	anchors, err := LoadCertificates(f.TrustAnchors)
	if err != nil {
		return nil, err
	}
	issuer, err := LoadCertificates(f.IssuerCertificate)
	if err != nil {
		return nil, err
	}
	key, err := LoadKey(f.IssuerKey)
	if err != nil {
		return nil, err
	}
	return &Authority{Anchors: anchors, Issuer: issuer[0], IssuerKey: key, Intermediates: issuer[1:], Domain: d}, nil
}

// LoadCertificates reads a PEM file of one or more certificates.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsid: reading certificates: %w", err)
	}
	certs, err := ParseCertificates(raw)
	if err != nil {
		return nil, fmt.Errorf("tlsid: %s: %w", path, err)
	}
	return certs, nil
}

// ParseCertificates decodes PEM "CERTIFICATE" blocks; there must be at least
// one and nothing else.
func ParseCertificates(raw []byte) ([]*x509.Certificate, error) {
	blocks, err := decodePEM(raw, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	if len(blocks) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	certs := make([]*x509.Certificate, 0, len(blocks))
	for i, der := range blocks {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i+1, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// ParseAnchors decodes PEM trust anchors into a pool.
func ParseAnchors(raw []byte) (*x509.CertPool, error) {
	certs, err := ParseCertificates(raw)
	if err != nil {
		return nil, fmt.Errorf("tlsid: trust anchors: %w", err)
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p, nil
}

// LoadAnchors reads a PEM trust anchors file into a pool.
func LoadAnchors(path string) (*x509.CertPool, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsid: reading trust anchors: %w", err)
	}
	p, err := ParseAnchors(raw)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return p, nil
}

// LoadKey reads a PEM private key (PKCS#8, SEC 1 "EC PRIVATE KEY" or
// PKCS#1).
func LoadKey(path string) (crypto.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsid: reading private key: %w", err)
	}
	blk, _ := pem.Decode(raw)
	if blk == nil {
		return nil, fmt.Errorf("tlsid: %s: no PEM private key found", path)
	}
	var key any
	switch blk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("tlsid: %s: PEM block %q is not a private key", path, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("tlsid: %s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("tlsid: %s: %T cannot sign", path, key)
	}
	return s, nil
}

func decodePEM(raw []byte, typ string) ([][]byte, error) {
	var out [][]byte
	for {
		var blk *pem.Block
		blk, raw = pem.Decode(raw)
		if blk == nil {
			break
		}
		if blk.Type != typ {
			return nil, fmt.Errorf("unexpected PEM block %q (want %q)", blk.Type, typ)
		}
		out = append(out, blk.Bytes)
	}
	return out, nil
}

// EncodeCertificates returns certificates as PEM.
func EncodeCertificates(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// EncodeKey returns an ECDSA key as PEM (SEC 1, as Linkerd's tooling writes).
func EncodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("tlsid: encoding a key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// Generated is a freshly made trust anchor and issuer.
type Generated struct {
	Anchor    *x509.Certificate
	AnchorKey *ecdsa.PrivateKey
	Issuer    *x509.Certificate
	IssuerKey *ecdsa.PrivateKey
}

// Generate makes a trust anchor "root.<control-ns>.<trust-domain>" and an
// issuer "identity.<control-ns>.<trust-domain>" signed by it, both valid
// from now (backdated by the clock skew) for validity.
func Generate(d Domain, now time.Time, validity time.Duration) (*Generated, error) {
	d = d.withDefaults()
	if err := d.Validate(); err != nil {
		return nil, err
	}
	nb, na := now.Add(-DefaultClockSkew), now.Add(validity)
	anchor, anchorKey, err := NewRoot("root."+d.ControlNamespace+"."+d.TrustDomain, nb, na)
	if err != nil {
		return nil, err
	}
	issuer, issuerKey, err := NewIntermediate("identity."+d.ControlNamespace+"."+d.TrustDomain, anchor, anchorKey, nb, na)
	if err != nil {
		return nil, err
	}
	return &Generated{Anchor: anchor, AnchorKey: anchorKey, Issuer: issuer, IssuerKey: issuerKey}, nil
}

// WriteDir writes the generated files into dir (created 0700; keys 0600),
// never replacing existing files.
func (g *Generated) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tlsid: creating identity directory: %w", err)
	}
	ak, err := EncodeKey(g.AnchorKey)
	if err != nil {
		return err
	}
	ik, err := EncodeKey(g.IssuerKey)
	if err != nil {
		return err
	}
	// Keys first and the anchors last: a directory with ca.crt is complete.
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{AnchorKeyFile, ak, 0o600},
		{IssuerKeyFile, ik, 0o600},
		{IssuerCertFile, EncodeCertificates(g.Issuer), 0o644},
		{AnchorsFile, EncodeCertificates(g.Anchor), 0o644},
	}
	for _, f := range files {
		if err := WriteFileExclusive(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// WriteFileExclusive writes a file atomically and only if it does not exist:
// a temporary file is hard-linked into place, so readers never see a
// partial file and two writers cannot both win.
func WriteFileExclusive(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("tlsid: writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("tlsid: writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("tlsid: writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("tlsid: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("tlsid: writing %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("tlsid: writing %s: %w", path, err)
	}
	return nil
}

// LoadOrGenerate returns the Authority kept in identity directory dir,
// first generating a trust anchor and issuer there (valid DefaultCAValidity)
// if the directory has none. It reports whether it generated them. Several
// processes may call it at once: a lock file serialises them.
func LoadOrGenerate(dir string, d Domain, now time.Time) (a *Authority, generated bool, err error) {
	unlock, err := LockDir(dir)
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	files := DirFiles(dir)
	if _, err := os.Stat(files.TrustAnchors); errors.Is(err, os.ErrNotExist) {
		for _, name := range []string{AnchorKeyFile, IssuerKeyFile, IssuerCertFile} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				return nil, false, fmt.Errorf("tlsid: identity directory %s has %s but no %s: it is incomplete; restore %s or remove the directory's certificate files to generate new ones", dir, name, AnchorsFile, AnchorsFile)
			}
		}
		g, err := Generate(d, now, DefaultCAValidity)
		if err != nil {
			return nil, false, err
		}
		if err := g.WriteDir(dir); err != nil {
			return nil, false, err
		}
		generated = true
	} else if err != nil {
		return nil, false, fmt.Errorf("tlsid: %w", err)
	}
	a, err = Load(files, d)
	if err != nil {
		return nil, false, err
	}
	return a, generated, nil
}

// LockDir serialises writers of identity directory dir (created 0700 if
// absent) until the returned function is called: CA generation and the
// token key are created under it.
func LockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsid: creating identity directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("tlsid: locking identity directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("tlsid: locking identity directory %s: %w", dir, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
