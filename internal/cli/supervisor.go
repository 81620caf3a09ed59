package cli

import "github.com/spf13/cobra"

// PLACEHOLDER: replaced by the real commands.
func newCmdUp(g *Globals) *cobra.Command     { return &cobra.Command{Use: "up", Hidden: true} }
func newCmdDown(g *Globals) *cobra.Command   { return &cobra.Command{Use: "down", Hidden: true} }
func newCmdStatus(g *Globals) *cobra.Command { return &cobra.Command{Use: "status", Hidden: true} }
func newCmdLogs(g *Globals) *cobra.Command   { return &cobra.Command{Use: "logs", Hidden: true} }
func newCmdScale(g *Globals) *cobra.Command  { return &cobra.Command{Use: "scale", Hidden: true} }
func newCmdSet(g *Globals) *cobra.Command    { return &cobra.Command{Use: "set", Hidden: true} }
