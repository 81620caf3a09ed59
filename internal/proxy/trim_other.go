//go:build !linux

package proxy

// TrimExecutable does nothing outside Linux (see trim_linux.go).
func TrimExecutable() (int64, error) { return 0, nil }
