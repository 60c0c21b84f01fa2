package command

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
)

func staleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stale --file <consumers file> --unused <duration> [--data-dir <Caddy data directory>]",
		Short: "Lists the keys unused for a while",
		Long: `
Lists the credentials of a consumers file that have let no request in for
--unused (90d, 12h): by their last use as the Caddy that serves the file
recorded it (to the minute, in its data directory), or by their created_at
when that Caddy never saw them used. Keys with neither are exempt, as for
key_auth's max_idle, and counted on standard error. A credential rolled
(caddy key-auth roll) is one credential: its previous keys share its use,
and its line says until when the last of them works.

The record is the one this Caddy keeps: run the command on the machine, and
as the user, that runs Caddy, or point --data-dir at its data directory
(default: $XDG_DATA_HOME/caddy, else Caddy's default). Each instance
records its own use.

  caddy key-auth stale --file /etc/caddy/consumers.json --unused 90d
`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.String("file", "", "consumers file (required)")
	f.String("unused", "", "how long unused: 90d, 12h (required)")
	f.String("data-dir", "", "Caddy's data directory (default: Caddy's own)")
	cmd.RunE = runStale
	return cmd
}

func runStale(cmd *cobra.Command, _ []string) error {
	if err := requireFlag(cmd, "file", "unused"); err != nil {
		return err
	}
	fl := cmd.Flags()
	path, _ := fl.GetString("file")
	unusedFlag, _ := fl.GetString("unused")
	dataDir, _ := fl.GetString("data-dir")
	unused, err := parseDuration("unused", unusedFlag)
	if err != nil {
		return err
	}
	if dataDir == "" {
		dataDir = caddy.AppDataDir()
	}
	// The file source keys its record by the file's absolute path.
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("consumers file %s: %w", path, err)
	}
	set, err := consumers.ParseFile(abs)
	if err != nil {
		return fmt.Errorf("consumers file %s: %w", path, err)
	}
	record := sources.UseFile(sources.UseDirIn(dataDir), sources.SourceInfo{Kind: "file", Location: abs})
	used, err := sources.ReadUseFile(record)
	if err != nil {
		return err
	}
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if used == nil {
		fmt.Fprintf(errOut, "No record of use at %s: no key of %s has been used there (or Caddy never ran it with this data directory).\n", record, abs)
	}
	t := now()
	// A rolled credential's previous keys share its record of use: a line
	// says until when the last of them still works.
	rolled := map[int]time.Time{}
	for p := range set.AllPrevious() {
		if at, _ := p.ExpiresAt(); at.After(t) && at.After(rolled[p.Index()]) {
			rolled[p.Index()] = at
		}
	}
	_, keys := set.Len()
	stale, exempt := 0, 0
	for i := range keys {
		cred := set.CredentialAt(i)
		var since time.Time
		what := "last used"
		if m, ok := used[cred.ID()]; ok {
			since = sources.MinuteTime(m)
		} else if at, ok := cred.CreatedAt(); ok {
			since, what = at, "never used, created"
		} else {
			exempt++
			continue
		}
		if idle := t.Sub(since); idle >= unused {
			stale++
			fmt.Fprintf(out, "consumer %q, credential %q: %s %s, %s ago", cred.Consumer().Username(), cred.ID(),
				what, since.UTC().Format(time.RFC3339), within(idle))
			if at, ok := rolled[i]; ok {
				fmt.Fprintf(out, "; rolled, its previous key works until %s", at.UTC().Format(time.RFC3339))
			}
			fmt.Fprintln(out)
		}
	}
	fmt.Fprintf(errOut, "%d of %s unused for %s", stale, plural(keys, "key", "keys"), unusedFlag)
	if exempt > 0 {
		fmt.Fprintf(errOut, "; %s never used and without created_at, exempt", plural(exempt, "key", "keys"))
	}
	fmt.Fprintln(errOut, ".")
	return nil
}
