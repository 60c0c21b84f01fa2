// Package command is `caddy key-auth`, the key lifecycle on the command
// line: mint, roll, revoke and hash keys in a consumers file, check consumers files
// and the configs that use them, tell whose a key is, and import consumers
// from Kong and APISIX. It registers with Caddy's command line, the way
// Caddy's basic_auth registers hash-password, so every Caddy built with this
// module has it.
package command

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "key-auth",
		Usage: "<new|roll|revoke|hash|check|whois|stale|import|push> [flags]",
		Short: "Manages key_auth's keys and consumers files",
		Long: `
Manages the API keys and consumers files of the key_auth handler.

Commands that edit a consumers file write it atomically (a temporary file in
the same directory, renamed over it, with the file's mode, owner and group),
and refuse to write a document that Caddy would refuse (with the errors of a
load), a file whose owner this user cannot keep, a file another command is
writing (it holds <file>.lock), and a file that changed meanwhile. A running Caddy picks the change up within the
file source's refresh. No command prints a key, except new and roll, once.

Run 'caddy key-auth <command> --help' for each command.
`,
		CobraFunc: Setup,
	})
}

// Setup fills in the key-auth command: its subcommands.
func Setup(cmd *cobra.Command) {
	cmd.Args = cobra.NoArgs
	cmd.SilenceUsage = true
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	cmd.AddCommand(newCmd(), rollCmd(), revokeCmd(), hashCmd(), checkCmd(), whoisCmd(), staleCmd(), importCmd(), pushCmd())
}

// testHookBeforeSave runs between reading a consumers file and writing it
// back, so a test can change the file meanwhile.
var testHookBeforeSave = func(path string) {}

// now is the clock of the commands; tests set it.
var now = time.Now

// parseDuration reads a duration as the Caddyfile does: Go's units and d
// for days (90d, 1d12h).
func parseDuration(flag, s string) (time.Duration, error) {
	d, err := caddy.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--%s %q: want a duration such as 90d, 12h or 30m", flag, s)
	}
	return d, nil
}

// parseExpires reads --expires: a duration from now, or an RFC 3339 time,
// into the RFC 3339 time the document stores.
func parseExpires(s string) (string, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		d, derr := caddy.ParseDuration(s)
		if derr != nil || d <= 0 {
			return "", fmt.Errorf("--expires %q: want a duration such as 90d or 12h, or an RFC 3339 time such as 2027-01-01T00:00:00Z", s)
		}
		t = now().Add(d).Truncate(time.Second)
	}
	if !t.After(now()) {
		return "", fmt.Errorf("--expires %s is not in the future", s)
	}
	return t.UTC().Format(time.RFC3339), nil
}

// requireFlag checks that a flag was given a value.
func requireFlag(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		if v, _ := cmd.Flags().GetString(n); v == "" {
			return fmt.Errorf("--%s is required", n)
		}
	}
	return nil
}

// silent is an exit status of 1 whose reason the command printed already.
func silent(cmd *cobra.Command) error {
	cmd.SilenceErrors = true
	return errors.New("failed")
}

// noArgs refuses arguments to a command that names its consumers file with
// --file: a file name given as an argument is the usual slip. The argument
// is not quoted back, as it may be a key.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments: name the consumers file with --file (see caddy key-auth %s --help)", cmd.Name(), cmd.Name())
	}
	return nil
}

// plural is n and the noun, singular for 1.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// within says how far off a time is, in the unit a person reads: days from
// two days on, hours from one hour, else minutes; rounded down.
func within(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return plural(int(d/(24*time.Hour)), "day", "days")
	case d >= time.Hour:
		return plural(int(d/time.Hour), "hour", "hours")
	default:
		return plural(int(d/time.Minute), "minute", "minutes")
	}
}
