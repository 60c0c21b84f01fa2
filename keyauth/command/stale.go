package command

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/rueidis"
	"github.com/spf13/cobra"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/consumers/sources/redis"
)

func staleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stale (--file <consumers file> [--data-dir <Caddy data directory>] | --redis <address[,address...]> [--prefix <prefix>]) --unused <duration>",
		Short: "Lists the keys unused for a while",
		Long: `
Lists the credentials that have let no request in for --unused (90d, 12h):
by their last use, to the minute, or by their created_at when never used.
Keys with neither are exempt, as for key_auth's max_idle, and counted on
standard error. A credential rolled (caddy key-auth roll) is one credential:
its previous keys share its use, and its line says until when the last of
them works.

With --file, the last use is the one the Caddy that serves the file
recorded in its data directory: run the command on the machine, and as the
user, that runs Caddy, or point --data-dir at its data directory (default:
$XDG_DATA_HOME/caddy, else Caddy's default). Each instance records its own
use.

With --redis, the consumers and their last use are those in Redis, the
fleet's, read as push connects (the same flags and environment).

  caddy key-auth stale --file /etc/caddy/consumers.json --unused 90d
  caddy key-auth stale --redis 10.0.0.5:6379 --unused 90d
`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.String("file", "", "consumers file")
	f.String("unused", "", "how long unused: 90d, 12h (required)")
	f.String("data-dir", "", "Caddy's data directory (default: Caddy's own)")
	redisFlags(f)
	cmd.RunE = runStale
	return cmd
}

// staleKey is a credential as stale weighs it.
type staleKey struct {
	consumer, id string
	created      time.Time
	hasCreated   bool
	// rolled is when the last of its previous keys stops working, or zero
	// when none works any more.
	rolled time.Time
}

func runStale(cmd *cobra.Command, _ []string) error {
	if err := requireFlag(cmd, "unused"); err != nil {
		return err
	}
	fl := cmd.Flags()
	path, _ := fl.GetString("file")
	addrs, _ := fl.GetString("redis")
	unusedFlag, _ := fl.GetString("unused")
	unused, err := parseDuration("unused", unusedFlag)
	if err != nil {
		return err
	}
	var keys []staleKey
	var used map[string]sources.Minute
	switch {
	case (path == "") == (addrs == ""):
		return errors.New("give --file or --redis, one of them")
	case path != "":
		if keys, used, err = staleFromFile(cmd, path); err != nil {
			return err
		}
	default:
		if keys, used, err = staleFromRedis(cmd); err != nil {
			return err
		}
	}
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	t := now()
	stale, exempt := 0, 0
	for _, k := range keys {
		var since time.Time
		what := "last used"
		if m, ok := used[k.id]; ok {
			since = sources.MinuteTime(m)
		} else if k.hasCreated {
			since, what = k.created, "never used, created"
		} else {
			exempt++
			continue
		}
		if idle := t.Sub(since); idle >= unused {
			stale++
			fmt.Fprintf(out, "consumer %q, credential %q: %s %s, %s ago", k.consumer, k.id,
				what, since.UTC().Format(time.RFC3339), within(idle))
			if !k.rolled.IsZero() {
				fmt.Fprintf(out, "; rolled, its previous key works until %s", k.rolled.UTC().Format(time.RFC3339))
			}
			fmt.Fprintln(out)
		}
	}
	fmt.Fprintf(errOut, "%d of %s unused for %s", stale, plural(len(keys), "key", "keys"), unusedFlag)
	if exempt > 0 {
		fmt.Fprintf(errOut, "; %s never used and without created_at, exempt", plural(exempt, "key", "keys"))
	}
	fmt.Fprintln(errOut, ".")
	return nil
}

// staleFromFile is the keys of a consumers file, and their last use as the
// Caddy whose data directory --data-dir names recorded it.
func staleFromFile(cmd *cobra.Command, path string) ([]staleKey, map[string]sources.Minute, error) {
	dataDir, _ := cmd.Flags().GetString("data-dir")
	if dataDir == "" {
		dataDir = caddy.AppDataDir()
	}
	// The file source keys its record by the file's absolute path.
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, fmt.Errorf("consumers file %s: %w", path, err)
	}
	set, err := consumers.ParseFile(abs)
	if err != nil {
		return nil, nil, fmt.Errorf("consumers file %s: %w", path, err)
	}
	record := sources.UseFile(sources.UseDirIn(dataDir), sources.SourceInfo{Kind: "file", Location: abs})
	used, err := sources.ReadUseFile(record)
	if err != nil {
		return nil, nil, err
	}
	if used == nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "No record of use at %s: no key of %s has been used there (or Caddy never ran it with this data directory).\n", record, abs)
	}
	_, n := set.Len()
	keys := make([]staleKey, n)
	for i := range keys {
		cred := set.CredentialAt(i)
		keys[i] = staleKey{consumer: cred.Consumer().Username(), id: cred.ID()}
		keys[i].created, keys[i].hasCreated = cred.CreatedAt()
	}
	// A rolled credential's previous keys share its record of use.
	t := now()
	for p := range set.AllPrevious() {
		if at, _ := p.ExpiresAt(); at.After(t) && at.After(keys[p.Index()].rolled) {
			keys[p.Index()].rolled = at
		}
	}
	return keys, used, nil
}

// staleFromRedis is the keys in Redis, listed through the writers' indexes
// (push writes them), and their last use, the fleet's.
func staleFromRedis(cmd *cobra.Command) ([]staleKey, map[string]sources.Minute, error) {
	opt, err := pushClientOption(cmd)
	if err != nil {
		return nil, nil, err
	}
	prefix, _ := cmd.Flags().GetString("prefix")
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to redis: %w", err)
	}
	defer c.Close()
	layout := redis.NewLayout(prefix)
	var keys []staleKey
	var bad error
	err = redis.ReadConsumers(cmd.Context(), c, layout, "", func(e *consumers.ConsumerEntry) bool {
		for i, k := range e.Keys {
			sk := staleKey{consumer: e.Username, id: e.CredentialID(i)}
			for _, p := range k.Previous {
				// As the source reads it: its own expiry, as its hash holds it.
				if at, err := time.Parse(time.RFC3339, p.ExpiresAt); err == nil && at.After(now()) && at.After(sk.rolled) {
					sk.rolled = at
				}
			}
			if k.CreatedAt != "" {
				if sk.created, err = time.Parse(time.RFC3339, k.CreatedAt); err != nil {
					bad = fmt.Errorf("consumer %q, credential %q: created_at: %w", e.Username, sk.id, err)
					return false
				}
				sk.hasCreated = true
			}
			keys = append(keys, sk)
		}
		return true
	}, func(username string, err error) {
		fmt.Fprintf(cmd.ErrOrStderr(), "Consumer %q is left out: %v\n", username, err)
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return nil, nil, err
	}
	used, err := redis.ReadLastUsed(cmd.Context(), c, layout)
	if err != nil {
		return nil, nil, err
	}
	return keys, used, nil
}
