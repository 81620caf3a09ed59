package cli

import "github.com/spf13/cobra"

// PLACEHOLDER: replaced by the real commands.
func newCmdControl(g *Globals) *cobra.Command { return &cobra.Command{Use: "control", Hidden: true} }
