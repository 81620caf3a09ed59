package tlsid

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
)

// NewCSR makes a DER certificate signing request for identity name with
// key: one DNS name and nothing else, as ParseCSR demands.
func NewCSR(key crypto.Signer, name string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: name},
		DNSNames: []string{name},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("tlsid: creating a certificate signing request for %s: %w", name, err)
	}
	return der, nil
}

// TLSCertificate assembles what a workload presents: its leaf, the chain
// to the anchors, and its key.
func TLSCertificate(leaf *x509.Certificate, chain [][]byte, key crypto.Signer) *tls.Certificate {
	c := &tls.Certificate{
		Certificate: make([][]byte, 0, 1+len(chain)),
		PrivateKey:  key,
		Leaf:        leaf,
	}
	c.Certificate = append(c.Certificate, leaf.Raw)
	c.Certificate = append(c.Certificate, chain...)
	return c
}
