package cli

import "github.com/spf13/cobra"

// PLACEHOLDER: replaced by the real commands.
func newCmdDemo(g *Globals) *cobra.Command { return &cobra.Command{Use: "demo", Hidden: true} }
