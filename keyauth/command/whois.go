package command

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/apikey"
	"github.com/keyauth/caddy-keyauth/consumers/docfile"
)

func whoisCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "whois --file <consumers file> < key",
		Short: "Tells which consumer and credential a key belongs to",
		Long: `
Reads one key from standard input (never from an argument, which would end in
the shell's history) and prints which consumer and credential of the
consumers file it belongs to, and whether it is expired, disabled, a
canary, or a previous secret of its credential (replaced by a roll, working
until the end of its grace period). One trailing newline is not part of the key. Exit status 1 when the
key belongs to no one.

  caddy key-auth whois --file consumers.json < key.txt
  pbpaste | caddy key-auth whois --file consumers.json
`,
	}
	cmd.Flags().String("file", "", "consumers file (required)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("whois takes no arguments: name the consumers file with --file and send the key on standard input (an argument ends up in shell history)")
		}
		if err := requireFlag(cmd, "file"); err != nil {
			return err
		}
		path, _ := cmd.Flags().GetString("file")
		in, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), consumers.MaxKeyLength+3))
		if err != nil {
			return fmt.Errorf("reading the key from standard input: %w", err)
		}
		in = bytes.TrimSuffix(bytes.TrimSuffix(in, []byte("\n")), []byte("\r"))
		switch {
		case len(in) == 0:
			return fmt.Errorf("no key on standard input")
		case len(in) > consumers.MaxKeyLength:
			return fmt.Errorf("the key on standard input is longer than %d bytes, so no credential has it", consumers.MaxKeyLength)
		case bytes.ContainsAny(in, "\n"):
			return fmt.Errorf("standard input holds several lines; give one key")
		}
		set, err := consumers.ParseFile(path)
		if err != nil {
			return fmt.Errorf("consumers file %s: %w", path, err)
		}
		digest := sha256.Sum256(in)
		cred, ok := set.Lookup(&digest)
		out := cmd.OutOrStdout()
		if !ok {
			fmt.Fprintf(out, "No credential of %s has this key.\n", path)
			if apikey.LooksGenerated(string(in)) && !apikey.ChecksumOK(string(in)) {
				fmt.Fprintln(out, "It has the shape of a generated key, but its checksum is wrong: a typo, or a copy cut short.")
			}
			return silent(cmd)
		}
		c := cred.Consumer()
		fmt.Fprintf(out, "consumer %q (id %q", c.Username(), c.ID())
		if c.CustomID() != "" {
			fmt.Fprintf(out, ", custom id %q", c.CustomID())
		}
		fmt.Fprintf(out, "), credential %q\n", cred.ID())
		if cred.Previous() {
			// The Set knows a previous secret's expiry, capped by the
			// credential's; the document's expires_at is the current key's.
			at, _ := cred.ExpiresAt()
			verb := "works until"
			if cred.ExpiredAt(now()) {
				verb = "stopped working at"
			}
			fmt.Fprintf(out, "The key is a previous secret of the credential, replaced by a roll: it %s %s.\n", verb, at.UTC().Format(time.RFC3339))
		}
		// The states the Set keeps to itself are read from the document.
		if file, err := docfile.Open(path); err == nil {
			if dc, ok := file.Doc.Consumer(c.Username()); ok {
				if dc.Disabled {
					fmt.Fprintln(out, "The consumer is disabled: the key is refused.")
				}
				for i := range dc.Keys {
					if dc.CredentialID(i) != cred.ID() {
						continue
					}
					k := dc.Keys[i]
					if k.Disabled {
						fmt.Fprintln(out, "The key is disabled: it is refused.")
					}
					if k.Canary {
						fmt.Fprintln(out, "The key is a canary: whoever holds it found it where it leaked.")
					}
					if k.ExpiresAt != "" && !cred.Previous() {
						verb := "expires"
						if cred.ExpiredAt(now()) {
							verb = "expired"
						}
						t, _ := time.Parse(time.RFC3339, k.ExpiresAt)
						fmt.Fprintf(out, "The key %s at %s.\n", verb, t.UTC().Format(time.RFC3339))
					}
				}
			}
		}
		return nil
	}
	return cmd
}
