package command

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyauth/caddy-keyauth/consumers/importer"
)

func importCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import --from <kong|apisix> [--plain] [--as-of <RFC 3339 time>] <file>",
		Short: "Writes a consumers document from Kong's or APISIX's consumers",
		Long: `
Reads another gateway's consumers and writes a consumers document on standard
output, with every key as its sha256: hash unless --plain. Standard output
holds the document and nothing else:

  caddy key-auth import --from kong kong.yaml > consumers.json

--from kong: a decK file (deck gateway dump; _format_version 3.0, or none:
read as 1.1), a Kong DB-less file (kong.yml, kong config db_export), YAML or
JSON, or a JSON object of Admin API list answers keyed by endpoint
(consumers, key-auths, acls, plugins, services, routes). Consumers keep
username, id, custom_id and tags; keyauth_credentials keep id and key; ACL
groups become groups. decK's ${{ env "DECK_NAME" }} is rendered from the
environment (DECK_ variables only; unset is an error). A Kong ttl above
100000000 is the instant of expiry (db_export, DB-less files); a smaller one
is the seconds a key had left when the file was written (Admin API, decK):
--as-of says when that was (default: the file's modification time).

--from apisix: APISIX's standalone apisix.yaml or apisix.json, or the Admin
API's consumer list (GET /apisix/admin/consumers). Consumers keep username,
labels (custom_id becomes custom_id), group_id (as a group) and their
key-auth key; credentials <username>/credentials/<id> (APISIX 3.11+) become
keys with that id. ${{NAME}} and ${{NAME:=default}} are substituted from the
environment as APISIX does (unset without a default is an error). $env://NAME keys are read from the environment now; an
unset variable and any $secret:// reference are errors.

Standard error lists, one line each, what has no equivalent here (other
credential kinds, other plugins, consumer-scoped plugin configs), then each
key-auth plugin configuration as the equivalent key_auth Caddyfile block.
Use - as the file to read standard input.
`,
		Args: cobra.ExactArgs(1),
	}
	cmd.Flags().String("from", "", "the export's format: kong or apisix (required)")
	cmd.Flags().Bool("plain", false, "write keys in plain text, not hashed")
	cmd.Flags().String("as-of", "", "when a Kong file was written, RFC 3339, for a ttl of seconds left (default: its modification time)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := requireFlag(cmd, "from"); err != nil {
			return err
		}
		from, _ := cmd.Flags().GetString("from")
		plain, _ := cmd.Flags().GetBool("plain")
		asOfFlag, _ := cmd.Flags().GetString("as-of")
		var run func([]byte, importer.Options) (*importer.Result, error)
		switch from {
		case "kong":
			run = importer.Kong
		case "apisix":
			run = importer.APISIX
		default:
			return fmt.Errorf("--from %q: want kong or apisix", from)
		}
		opt := importer.Options{Plain: plain}
		if asOfFlag != "" {
			t, err := time.Parse(time.RFC3339, asOfFlag)
			if err != nil {
				return fmt.Errorf("--as-of %q: want an RFC 3339 time such as 2026-03-01T12:00:00Z", asOfFlag)
			}
			opt.AsOf = t
		}
		path := args[0]
		var data []byte
		var err error
		if path == "-" {
			data, err = io.ReadAll(cmd.InOrStdin())
		} else {
			data, err = os.ReadFile(path)
			if fi, serr := os.Stat(path); err == nil && serr == nil && opt.AsOf.IsZero() {
				opt.AsOf = fi.ModTime()
			}
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		res, err := run(data, opt)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		doc, err := res.Doc.Marshal()
		if err != nil {
			// The line of a load error is one of the generated document,
			// which the user never sees: it would point into their file
			// wrongly. The consumer and credential it names are enough.
			return fmt.Errorf("%s: importing: %s", path, generatedLine.ReplaceAllString(err.Error(), ""))
		}
		stderr := cmd.ErrOrStderr()
		for _, n := range res.Notes {
			fmt.Fprintf(stderr, "import: %s\n", n)
		}
		for _, b := range res.Blocks {
			fmt.Fprintf(stderr, "\n%s", b)
		}
		keys := 0
		for _, c := range res.Doc.Consumers {
			keys += len(c.Keys)
		}
		how := "hashed"
		if plain {
			how = "in plain text"
		}
		fmt.Fprintf(stderr, "\nImported %s and %s (%s) from %s.\n", plural(len(res.Doc.Consumers), "consumer", "consumers"), plural(keys, "key", "keys"), how, path)
		_, err = cmd.OutOrStdout().Write(doc)
		return err
	}
	return cmd
}

// generatedLine is the position a load error gives: "line 11: " or
// "line 11, column 3: ".
var generatedLine = regexp.MustCompile(`\bline \d+(, column \d+)?: `)
