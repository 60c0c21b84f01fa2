package command

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/apikey"
	"github.com/keyauth/caddy-keyauth/consumers/docfile"
)

// defaultGrace is how long roll keeps the previous key working: a day,
// time enough for a deploy to pick up the new key everywhere.
const defaultGrace = "24h"

func rollCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "roll --file <consumers file> --credential <id> [--grace <duration>] [--prefix <prefix>] [--expires <duration or RFC 3339>]",
		Short: "Gives a credential a new key, keeping the old one working for a grace period",
		Long: `
Mints a new key for a credential of the consumers file, as new does, and
prints it on standard output, once. The credential keeps its id, consumer,
flags and created_at, so the upstream sees the same X-Credential-Identifier
for both keys and its last use carries over.

The old key keeps working, as the same credential, for --grace (default
24h), or until the credential expires if that comes first; --grace 0 stops
it at once. The file keeps it as a "previous" secret (its hash, never the
key) with that expiry; previous secrets already past theirs are removed.
--expires gives the credential a new expiry (a duration from now or an RFC
3339 time); by default it keeps its own. A canary or an expired credential
cannot be rolled.
`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.String("file", "", "consumers file (required)")
	f.String("credential", "", "id of the credential to roll (required)")
	f.String("grace", defaultGrace, "how long the old key keeps working: 24h, 7d, 0 for not at all")
	f.String("prefix", apikey.DefaultPrefix, "key prefix: a letter, then letters, digits and _")
	f.String("expires", "", "new expiry: a duration from now (90d, 12h) or an RFC 3339 time")
	cmd.RunE = runRoll
	return cmd
}

func runRoll(cmd *cobra.Command, _ []string) error {
	if err := requireFlag(cmd, "file", "credential"); err != nil {
		return err
	}
	fl := cmd.Flags()
	path, _ := fl.GetString("file")
	credID, _ := fl.GetString("credential")
	graceFlag, _ := fl.GetString("grace")
	prefix, _ := fl.GetString("prefix")
	expiresFlag, _ := fl.GetString("expires")
	grace, err := parseDuration("grace", graceFlag)
	if err != nil {
		return err
	}
	if err := apikey.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("--prefix: %w", err)
	}
	var expires string
	if expiresFlag != "" {
		if expires, err = parseExpires(expiresFlag); err != nil {
			return err
		}
	}
	key, err := apikey.Generate(prefix)
	if err != nil {
		return err
	}

	file, err := docfile.Open(path)
	if err != nil {
		return err
	}
	c, i, ok := file.Doc.Credential(credID)
	if !ok {
		return fmt.Errorf("consumers file %s has no credential %q", path, credID)
	}
	t := now()
	until, err := c.Roll(i, consumers.HashKey(key), grace, t)
	switch {
	case errors.Is(err, consumers.ErrRollExpired):
		return fmt.Errorf("%w: give it a later expires_at first, or mint a new key with new", err)
	case errors.Is(err, consumers.ErrRollCanary):
		return fmt.Errorf("%w: mint another canary with new --canary and revoke this one", err)
	case err != nil:
		return err
	}
	k := &c.Keys[i]
	if expires != "" {
		k.ExpiresAt = expires
	}
	testHookBeforeSave(file.Path)
	if err := file.Save(); err != nil {
		return err
	}
	// Printed only once the file holds it, as new does.
	fmt.Fprintln(cmd.OutOrStdout(), key)
	errOut := cmd.ErrOrStderr()
	old := "its previous key no longer works"
	if until.After(t) {
		old = fmt.Sprintf("its previous key works until %s", until.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(errOut, "Rolled credential %q of consumer %q in %s: %s (the new key went to standard output, once).\n", k.ID, c.Username, path, old)
	if c.Disabled || k.Disabled {
		fmt.Fprintln(errOut, "The credential or its consumer is disabled: neither key works until it is enabled.")
	}
	return nil
}
