// Command weft is the Weft service mesh: CLI, control plane, proxy, ingress
// and demo applications in one binary.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/weft-mesh/weft/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
