package cli

import "github.com/spf13/cobra"

// PLACEHOLDER: replaced by the real commands.
func newCmdIngress(g *Globals) *cobra.Command { return &cobra.Command{Use: "ingress", Hidden: true} }
