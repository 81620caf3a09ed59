package forward

import (
	"testing"
)

func TestBufferPoolReuses(t *testing.T) {
	var p bufferPool
	b := p.Get()
	if len(b) != bufferSize {
		t.Fatalf("Get returned %d bytes, want %d", len(b), bufferSize)
	}
	b[0] = 42
	p.Put(b)
	// A short buffer never enters the pool.
	p.Put(make([]byte, 10))
	for range 3 {
		if got := p.Get(); len(got) != bufferSize {
			t.Fatalf("Get after Put returned %d bytes, want %d", len(got), bufferSize)
		}
	}
}

// BenchmarkBufferPool is one ReverseProxy response's Get and Put: it
// must not allocate once warm (a []byte put in a sync.Pool would box its
// slice header every time).
// Run: go test -run '^$' -bench BufferPool -benchmem ./internal/proxy/forward/
func BenchmarkBufferPool(b *testing.B) {
	var p bufferPool
	p.Put(p.Get())
	b.ReportAllocs()
	for b.Loop() {
		p.Put(p.Get())
	}
}
