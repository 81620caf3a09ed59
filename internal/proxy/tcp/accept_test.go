package tcp

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func TestAcceptHandlesUntilCancelThenWaits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	var handled, finished atomic.Int32
	type result struct {
		wait func()
		err  error
	}
	done := make(chan result, 1)
	go func() {
		wait, err := Accept(ctx, ln, func(c net.Conn) {
			defer c.Close()
			handled.Add(1)
			<-release
			finished.Add(1)
		})
		done <- result{wait, err}
	}()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for handled.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("handled %d connections, want 3", handled.Load())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	r := <-done
	if r.err != nil {
		t.Fatalf("Accept after cancel = %v, want nil", r.err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener still accepts after Accept returned")
	}
	if finished.Load() != 0 {
		t.Fatal("handlers finished before they were released")
	}
	close(release)
	r.wait()
	if finished.Load() != 3 {
		t.Fatalf("wait returned with %d of 3 handlers finished", finished.Load())
	}
}

func TestAcceptReturnsListenerErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	wait, err := Accept(context.Background(), ln, func(c net.Conn) { c.Close() })
	if err == nil {
		t.Fatal("Accept on a closed listener returned no error")
	}
	wait()
}
