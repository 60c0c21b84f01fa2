package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/apikey"
	"github.com/keyauth/caddy-keyauth/consumers/docfile"
)

func newCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "new --consumer <username> [--file <consumers file>] [--id <credential id>] [--prefix <prefix>] [--expires <duration or RFC 3339>] [--create] [--canary]",
		Short: "Mints a key and prints it, once",
		Long: `
Mints a key of the shape <prefix>_<43 random base-62 digits><6-digit checksum>
from 32 bytes of crypto/rand, and prints it on standard output, once. Nothing
else ever prints it: hand it over now.

With --file, the key's sha256: hash (never the key) is added to the consumer
in that consumers file, written atomically; --create adds the consumer (and
the file) when missing. Without --file, the credential entry to paste into
a consumers file is printed on standard error.

--id is the credential id the upstream is told (X-Credential-Identifier);
default <username>-<8 random hex digits>. --expires takes a duration from
now (2h, 90d) or an RFC 3339 time. The entry records when it was made
(created_at). --canary marks the key as a canary: a
key issued to nobody, planted where a leak would expose it.
`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.String("consumer", "", "username of the consumer the key is for (required)")
	f.String("file", "", "consumers file to add the key's hash to")
	f.String("id", "", "credential id (default <username>-<random>)")
	f.String("prefix", apikey.DefaultPrefix, "key prefix: a letter, then letters, digits and _")
	f.String("expires", "", "expiry: a duration from now (90d, 12h) or an RFC 3339 time")
	f.Bool("create", false, "add the consumer (and the file) if missing")
	f.Bool("canary", false, "mark the key as a canary")
	cmd.RunE = runNew
	return cmd
}

func runNew(cmd *cobra.Command, _ []string) error {
	if err := requireFlag(cmd, "consumer"); err != nil {
		return err
	}
	fl := cmd.Flags()
	username, _ := fl.GetString("consumer")
	path, _ := fl.GetString("file")
	id, _ := fl.GetString("id")
	prefix, _ := fl.GetString("prefix")
	expiresFlag, _ := fl.GetString("expires")
	create, _ := fl.GetBool("create")
	canary, _ := fl.GetBool("canary")
	if fl.Changed("id") && id == "" {
		return fmt.Errorf("--id must not be empty")
	}
	if create && path == "" {
		return fmt.Errorf("--create needs --file")
	}
	if err := apikey.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("--prefix: %w", err)
	}
	var expires string
	if expiresFlag != "" {
		var err error
		if expires, err = parseExpires(expiresFlag); err != nil {
			return err
		}
	}
	key, err := apikey.Generate(prefix)
	if err != nil {
		return err
	}
	// created_at is what max_idle and `stale` count from while the key is
	// unused; to the second, in UTC, like the expiry from a duration.
	created := now().UTC().Truncate(time.Second).Format(time.RFC3339)
	cred := consumers.CredentialEntry{ID: id, Hash: consumers.HashKey(key), ExpiresAt: expires, CreatedAt: created, Canary: canary}

	if path == "" {
		if cred.ID == "" {
			cred.ID = apikey.CredentialID(username)
		}
		// The entry must load: check it as a one-consumer document.
		doc := &consumers.Document{Consumers: []consumers.ConsumerEntry{{Username: username, Keys: []consumers.CredentialEntry{cred}}}}
		if _, err := doc.Marshal(); err != nil {
			return err
		}
		entry, _ := json.Marshal(cred)
		fmt.Fprintln(cmd.OutOrStdout(), key)
		fmt.Fprintf(cmd.ErrOrStderr(), "Add this entry to the \"keys\" of consumer %q (it holds the key's hash, not the key):\n%s\n",
			username, indent(entry))
		return nil
	}

	open := docfile.Open
	if create {
		open = docfile.OpenOrNew
	}
	file, err := open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w (--create makes it)", err)
	}
	if err != nil {
		return err
	}
	c, ok := file.Doc.Consumer(username)
	if ok && c.Disabled {
		return fmt.Errorf("consumer %q is disabled in %s, so a new key of it would be refused: enable it first (remove its \"disabled\": true)", username, path)
	}
	if !ok {
		if !create {
			return fmt.Errorf("consumers file %s has no consumer %q (--create adds it)", path, username)
		}
		file.Doc.Consumers = append(file.Doc.Consumers, consumers.ConsumerEntry{Username: username})
		c = &file.Doc.Consumers[len(file.Doc.Consumers)-1]
	}
	if cred.ID == "" {
		for {
			cred.ID = apikey.CredentialID(username)
			if _, _, taken := file.Doc.Credential(cred.ID); !taken {
				break
			}
		}
	}
	c.Keys = append(c.Keys, cred)
	testHookBeforeSave(file.Path)
	if err := file.Save(); err != nil {
		return err
	}
	// Printed only once the file holds it: a key that failed to be
	// added is never seen.
	fmt.Fprintln(cmd.OutOrStdout(), key)
	kind := "key"
	if canary {
		kind = "canary key"
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Added %s %q to consumer %q in %s (its hash; the key went to standard output, once).\n", kind, cred.ID, username, path)
	return nil
}

func indent(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}

func revokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke --file <consumers file> (--credential <id> | --consumer <username>)",
		Short: "Removes a key, or disables a consumer",
		Long: `
--credential removes that key from the consumers file (keys after it that
have derived ids get those ids written out, so no other key's id changes).
--consumer disables the consumer ("disabled": true): every key of it is
refused, and nothing is deleted; remove the field to enable it again.
`,
		Args: noArgs,
	}
	cmd.Flags().String("file", "", "consumers file (required)")
	cmd.Flags().String("credential", "", "id of the credential to remove")
	cmd.Flags().String("consumer", "", "username of the consumer to disable")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := requireFlag(cmd, "file"); err != nil {
			return err
		}
		path, _ := cmd.Flags().GetString("file")
		credID, _ := cmd.Flags().GetString("credential")
		username, _ := cmd.Flags().GetString("consumer")
		if (credID == "") == (username == "") {
			return fmt.Errorf("give one of --credential and --consumer")
		}
		file, err := docfile.Open(path)
		if err != nil {
			return err
		}
		if credID != "" {
			c, i, ok := file.Doc.Credential(credID)
			if !ok {
				return fmt.Errorf("consumers file %s has no credential %q", path, credID)
			}
			c.RemoveKey(i)
			testHookBeforeSave(file.Path)
			if err := file.Save(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Removed credential %q of consumer %q from %s.\n", credID, c.Username, path)
			return nil
		}
		c, ok := file.Doc.Consumer(username)
		if !ok {
			return fmt.Errorf("consumers file %s has no consumer %q", path, username)
		}
		if c.Disabled {
			fmt.Fprintf(cmd.ErrOrStderr(), "Consumer %q is disabled already; %s is unchanged.\n", username, path)
			return nil
		}
		c.Disabled = true
		testHookBeforeSave(file.Path)
		if err := file.Save(); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "Disabled consumer %q (%s) in %s.\n", username, plural(len(c.Keys), "key", "keys"), path)
		return nil
	}
	return cmd
}

func hashCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hash --file <consumers file>",
		Short: "Replaces every plain key of a consumers file by its hash",
		Long: `
Replaces every plain "key" of the consumers file by its "hash"
(sha256: and the hex SHA-256 of the key). Afterwards the file holds no secret,
and every key works as before.
`,
		Args: noArgs,
	}
	cmd.Flags().String("file", "", "consumers file (required)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := requireFlag(cmd, "file"); err != nil {
			return err
		}
		path, _ := cmd.Flags().GetString("file")
		file, err := docfile.Open(path)
		if err != nil {
			return err
		}
		n := 0
		for i := range file.Doc.Consumers {
			for k := range file.Doc.Consumers[i].Keys {
				cr := &file.Doc.Consumers[i].Keys[k]
				if cr.Key != "" {
					cr.Hash, cr.Key = consumers.HashKey(cr.Key), ""
					n++
				}
			}
		}
		if n == 0 {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s holds no plain key; it is unchanged.\n", path)
			return nil
		}
		testHookBeforeSave(file.Path)
		if err := file.Save(); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "Hashed %s in %s; it holds no plain key now.\n", plural(n, "key", "keys"), path)
		return nil
	}
	return cmd
}
