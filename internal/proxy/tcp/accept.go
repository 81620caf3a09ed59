package tcp

import (
	"context"
	"net"
	"sync"
)

// Accept runs handle for every connection ln accepts, each in its own
// goroutine, until ctx ends or Accept fails. It then closes ln and returns
// the Accept error (nil when ctx ended) and a wait function that blocks
// until every handler has returned. The two are separate so that a caller
// can drain its servers in between: stop accepting first, then let
// in-flight work finish, then wait for the handlers.
func Accept(ctx context.Context, ln net.Listener, handle func(net.Conn)) (wait func(), err error) {
	var wg sync.WaitGroup
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	select {
	case <-ctx.Done():
	case err = <-acceptErr:
	}
	ln.Close()
	return wg.Wait, err
}
