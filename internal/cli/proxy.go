package cli

import "github.com/spf13/cobra"

// PLACEHOLDER: replaced by the real commands.
func newCmdProxy(g *Globals) *cobra.Command { return &cobra.Command{Use: "proxy", Hidden: true} }
