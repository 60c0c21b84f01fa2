// Push makes Redis hold exactly a consumers document's
// consumers, in the Redis source's layout: `caddy key-auth push`. It writes
// only what changed (so the caches of running instances lose only those
// entries), never leaves a changed hash missing for a moment, and removes
// what the document no longer has, in pipelined batches.

package command

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/rueidis"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyauth/caddy-keyauth/consumers"
	"github.com/keyauth/caddy-keyauth/consumers/sources"
	"github.com/keyauth/caddy-keyauth/consumers/sources/redis"
)

// pushCmd is `caddy key-auth push`.
func pushCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use: "push --redis <address[,address...]> --file <consumers file> [--prefix <prefix>] [--db <n>] " +
			"[--username <name>] [--tls] [--tls-root-ca <file>] [--tls-client-certificate <file> --tls-client-certificate-key <file>]",
		Short: "Makes Redis hold exactly a consumers file's consumers",
		Long: `
Writes the consumers, keys and groups with limits of a consumers file into
Redis in the layout the key_auth Redis source reads, and removes the
consumers, keys and groups under the prefix that the file no longer has.
Only what changed is written.
Several --redis addresses are the seeds of a Redis Cluster.

The connection takes the Redis source's options: --db (standalone Redis
only), the ACL user (--username, else the REDIS_USERNAME environment
variable), the password from the REDIS_PASSWORD environment variable (never
a flag, which other users could read in the process list), and TLS: --tls
with the system's roots, or --tls-root-ca (repeatable) to trust those CAs
instead, and --tls-client-certificate with --tls-client-certificate-key to
present a client certificate; either implies --tls.`,
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	fs.String("file", "", "the consumers file")
	redisFlags(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		get := func(n string) string { v, _ := cmd.Flags().GetString(n); return v }
		addrs, file := get("redis"), get("file")
		if addrs == "" || file == "" {
			return errors.New("--redis and --file are required")
		}
		opt, err := pushClientOption(cmd)
		if err != nil {
			return err
		}
		doc, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("reading consumers file: %w", err)
		}
		c, err := rueidis.NewClient(opt)
		if err != nil {
			return fmt.Errorf("connecting to redis: %w", err)
		}
		defer c.Close()
		start := time.Now()
		progress, done := pushProgress(cmd.ErrOrStderr())
		st, err := PushProgress(cmd.Context(), c, doc, get("prefix"), progress)
		done()
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		groups := ""
		if st.Groups > 0 {
			groups = fmt.Sprintf(", %d groups with limits", st.Groups)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%d consumers and %d keys%s: %d hashes written, %d unchanged, %d removed in %v\n",
			st.Consumers, st.Keys, groups, st.Written, st.Unchanged, st.Removed, time.Since(start).Round(time.Millisecond))
		return nil
	}
	return cmd
}

// redisFlags are the flags of a command that connects to Redis as the Redis
// source does (push, stale --redis): pushClientOption reads them.
func redisFlags(fs *pflag.FlagSet) {
	fs.String("redis", "", "Redis address(es), host:port, comma-separated")
	fs.String("prefix", redis.DefaultPrefix, "key prefix")
	fs.Int("db", 0, "database number (standalone Redis only)")
	fs.String("username", "", "Redis ACL user (default $REDIS_USERNAME)")
	fs.Bool("tls", false, "connect with TLS")
	fs.StringArray("tls-root-ca", nil, "PEM CA certificate(s) to trust instead of the system's roots (repeatable)")
	fs.String("tls-client-certificate", "", "PEM client certificate to present")
	fs.String("tls-client-certificate-key", "", "PEM key of the client certificate")
}

// pushClientOption is the connection push's flags and environment ask for:
// a Redis source filled from them, checked by its own Validate, with its TLS
// configuration built as the source builds it.
func pushClientOption(cmd *cobra.Command) (rueidis.ClientOption, error) {
	fl := cmd.Flags()
	get := func(n string) string { v, _ := fl.GetString(n); return v }
	var src redis.Source
	for a := range strings.SplitSeq(get("redis"), ",") {
		src.Addresses = append(src.Addresses, strings.TrimSpace(a))
	}
	src.DB, _ = fl.GetInt("db")
	if err := src.Validate(); err != nil {
		return rueidis.ClientOption{}, flagError(err)
	}
	src.Username = get("username")
	if !fl.Changed("username") {
		src.Username = os.Getenv("REDIS_USERNAME")
	}
	// Validate reads {env.*} in an address as the source does: so does the
	// connection.
	repl := caddy.NewReplacer()
	for i, a := range src.Addresses {
		src.Addresses[i] = repl.ReplaceKnown(a, "")
	}
	opt := rueidis.ClientOption{
		InitAddress:  src.Addresses,
		Username:     src.Username,
		Password:     os.Getenv("REDIS_PASSWORD"),
		SelectDB:     src.DB,
		DisableCache: true,
	}
	useTLS, _ := fl.GetBool("tls")
	roots, _ := fl.GetStringArray("tls-root-ca")
	cert, key := get("tls-client-certificate"), get("tls-client-certificate-key")
	if !useTLS && len(roots) == 0 && cert == "" && key == "" {
		return opt, nil
	}
	if (cert == "") != (key == "") {
		return opt, errors.New("--tls-client-certificate and --tls-client-certificate-key go together")
	}
	src.TLS = &sources.HTTPSourceTLS{ClientCertificateFile: cert, ClientCertificateKeyFile: key, RootCAPEMFiles: roots}
	cfg, err := src.TLS.FileConfig()
	if err != nil {
		return opt, flagError(err)
	}
	opt.TLSConfig = cfg
	return opt, nil
}

// pushFlags are push's flags by the name of the Redis source's option they
// set.
var pushFlags = map[string]string{"addresses": "--redis", "db": "--db", "root_ca_pem_files": "--tls-root-ca"}

// flagError names the flag an error of the source's checks is about.
func flagError(err error) error {
	var oe *sources.OptionError
	if errors.As(err, &oe) {
		if f, ok := pushFlags[oe.Option]; ok {
			return errors.New(f + oe.Rest)
		}
	}
	return err
}

// Stats is what a push did.
type Stats struct {
	Consumers, Keys    int
	Groups             int // the document's groups that have limits: those with a hash
	Written, Unchanged int // group, consumer and credential hashes
	Removed            int
	// IDsWritten counts the consumer-id hashes written, apart: they only
	// index the consumers whose id is not their username.
	IDsWritten int
	// IndexesWritten and IndexesRemoved count the writers' indexes written
	// and removed, apart: consumer-keys and credential-id hashes, members
	// of the consumers set, and last-used fields of credentials gone.
	IndexesWritten, IndexesRemoved int
}

// batch is how many hashes go in one pipeline.
const batch = 1000

type hash struct {
	key    string
	fields map[string]string
}

// Push makes Redis hold exactly doc's consumers under prefix. The document
// passes the load checks first; a refused one writes nothing.
func Push(ctx context.Context, c rueidis.Client, doc []byte, prefix string) (Stats, error) {
	return PushProgress(ctx, c, doc, prefix, nil)
}

// PushProgress is Push, calling progress (if not nil) with the counts so far
// after each pipelined batch and each page of the scan for stale keys.
func PushProgress(ctx context.Context, c rueidis.Client, doc []byte, prefix string, progress func(Stats)) (Stats, error) {
	var st Stats
	report := func() {
		if progress != nil {
			progress(st)
		}
	}
	// The document gives back what the Set does not: the keys themselves
	// (or their hashes) and the expiry as written.
	raw, err := consumers.DecodeDocument(doc)
	if err != nil {
		return st, err
	}
	set, err := consumers.Build(raw)
	if err != nil {
		return st, err
	}
	st.Consumers, st.Keys = set.Len()
	usernames := make(map[string]struct{}, st.Consumers)
	ids := map[string]struct{}{} // of the consumers whose id is not the username

	var pending []hash
	flush := func() error {
		err := syncHashes(ctx, c, pending, &st)
		pending = pending[:0]
		report()
		return err
	}
	add := func(h hash) error {
		pending = append(pending, h)
		if len(pending) == batch {
			return flush()
		}
		return nil
	}
	var idPending []hash
	var idSt Stats
	flushIDs := func() error {
		err := syncHashes(ctx, c, idPending, &idSt)
		idPending = idPending[:0]
		st.IDsWritten = idSt.Written
		report()
		return err
	}
	var idxPending []hash
	var idxSt Stats
	flushIndexes := func() error {
		err := syncHashes(ctx, c, idxPending, &idxSt)
		idxPending = idxPending[:0]
		st.IndexesWritten = idxSt.Written
		report()
		return err
	}
	addIndex := func(h hash) error {
		if idxPending = append(idxPending, h); len(idxPending) == batch {
			return flushIndexes()
		}
		return nil
	}
	layout := redis.NewLayout(prefix)
	// Groups first, so no consumer is read without its tier's limits;
	// consumers next, so no key is written before its consumer; their
	// indexes with them.
	groups := map[string]struct{}{}
	for g := range set.Groups() {
		if f, ok := redis.EncodeGroup(g); ok {
			groups[g.Name()] = struct{}{}
			st.Groups++
			if err := add(hash{layout.GroupKey(g.Name()), f}); err != nil {
				return st, err
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	entries := make([]redis.EntryHashes, st.Consumers)
	for i := range st.Consumers {
		cons := set.ConsumerAt(i)
		h, err := redis.EncodeEntry(&raw.Consumers[i], cons, set)
		if err != nil {
			return st, err
		}
		entries[i] = h
		usernames[cons.Username()] = struct{}{}
		if err := add(hash{layout.ConsumerKey(cons.Username()), h.Consumer}); err != nil {
			return st, err
		}
		if h.ConsumerID != nil {
			ids[cons.ID()] = struct{}{}
			if idPending = append(idPending, hash{layout.ConsumerIDKey(cons.ID()), h.ConsumerID}); len(idPending) == batch {
				if err := flushIDs(); err != nil {
					return st, err
				}
			}
		}
		if err := addIndex(hash{layout.ConsumerKeysKey(cons.Username()), h.Keys}); err != nil {
			return st, err
		}
		for _, id := range h.CredentialIDs {
			if err := addIndex(hash{layout.CredentialIDKey(id), redis.EncodeCredentialID(cons.Username())}); err != nil {
				return st, err
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	if err := flushIDs(); err != nil {
		return st, err
	}
	if err := flushIndexes(); err != nil {
		return st, err
	}
	// Every credential's hashes (a rolled one's previous secrets too).
	for i := range entries {
		for _, ch := range entries[i].Credentials {
			if err := add(hash{layout.CredentialKey(&ch.Digest), ch.Fields}); err != nil {
				return st, err
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	if err := listConsumers(ctx, c, layout, set, &st); err != nil {
		return st, err
	}
	if err := remove(ctx, c, layout, set, names{usernames, ids, groups}, &st, report); err != nil {
		return st, err
	}
	return st, removeMembers(ctx, c, layout, set, usernames, &st)
}

// listConsumers adds every username to the consumers set, in pipelined
// batches (ZADD of a member there already changes nothing).
func listConsumers(ctx context.Context, c rueidis.Client, layout redis.Layout, set *consumers.Set, st *Stats) error {
	n, _ := set.Len()
	for start := 0; start < n; start += batch {
		z := c.B().Zadd().Key(layout.ConsumersKey()).ScoreMember()
		for i := start; i < min(start+batch, n); i++ {
			z = z.ScoreMember(0, set.ConsumerAt(i).Username())
		}
		added, err := c.Do(ctx, z.Build()).AsInt64()
		if err != nil {
			return fmt.Errorf("listing the consumers: %w", err)
		}
		st.IndexesWritten += int(added)
	}
	return nil
}

// removeMembers removes from the consumers set the usernames the set does
// not have, and from the last-used hash the credentials it does not have.
func removeMembers(ctx context.Context, c rueidis.Client, layout redis.Layout, set *consumers.Set, usernames map[string]struct{}, st *Stats) error {
	index := consumers.NewIndex(set)
	for _, k := range []struct {
		key  string
		scan func(cursor uint64) rueidis.Completed
		keep func(string) bool
		del  func(members []string) rueidis.Completed
	}{
		{layout.ConsumersKey(),
			func(cursor uint64) rueidis.Completed {
				return c.B().Zscan().Key(layout.ConsumersKey()).Cursor(cursor).Count(batch).Build()
			},
			func(m string) bool { _, ok := usernames[m]; return ok },
			func(ms []string) rueidis.Completed {
				return c.B().Zrem().Key(layout.ConsumersKey()).Member(ms...).Build()
			}},
		{layout.LastUsedKey(),
			func(cursor uint64) rueidis.Completed {
				return c.B().Hscan().Key(layout.LastUsedKey()).Cursor(cursor).Count(batch).Build()
			},
			func(id string) bool { _, ok := index.Credential(id); return ok },
			func(ids []string) rueidis.Completed {
				return c.B().Hdel().Key(layout.LastUsedKey()).Field(ids...).Build()
			}},
	} {
		var cursor uint64
		for {
			e, err := c.Do(ctx, k.scan(cursor)).AsScanEntry()
			if err != nil {
				return fmt.Errorf("scanning %s: %w", k.key, err)
			}
			var gone []string
			// Members and scores (or fields and values) alternate.
			for i := 0; i < len(e.Elements); i += 2 {
				if !k.keep(e.Elements[i]) {
					gone = append(gone, e.Elements[i])
				}
			}
			if len(gone) > 0 {
				if err := c.Do(ctx, k.del(gone)).Error(); err != nil {
					return fmt.Errorf("removing from %s: %w", k.key, err)
				}
				st.IndexesRemoved += len(gone)
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return nil
}

// syncHashes writes the hashes that differ from what Redis holds: HSET of the
// fields, then HDEL of the fields no longer there, so a reader never finds
// a changed hash missing.
func syncHashes(ctx context.Context, c rueidis.Client, hs []hash, st *Stats) error {
	if len(hs) == 0 {
		return nil
	}
	cmds := make(rueidis.Commands, len(hs))
	for i, h := range hs {
		cmds[i] = c.B().Hgetall().Key(h.key).Build()
	}
	var writes rueidis.Commands
	for i, r := range c.DoMulti(ctx, cmds...) {
		have, err := r.AsStrMap()
		if err != nil {
			return fmt.Errorf("reading %s: %w", hs[i].key, err)
		}
		if maps.Equal(have, hs[i].fields) {
			st.Unchanged++
			continue
		}
		st.Written++
		if len(hs[i].fields) == 0 { // a hash without fields is no hash
			writes = append(writes, c.B().Del().Key(hs[i].key).Build())
			continue
		}
		fv := c.B().Hset().Key(hs[i].key).FieldValue()
		for _, n := range slices.Sorted(maps.Keys(hs[i].fields)) {
			fv = fv.FieldValue(n, hs[i].fields[n])
		}
		writes = append(writes, fv.Build())
		var gone []string
		for n := range have {
			if _, ok := hs[i].fields[n]; !ok {
				gone = append(gone, n)
			}
		}
		if len(gone) > 0 {
			writes = append(writes, c.B().Hdel().Key(hs[i].key).Field(gone...).Build())
		}
	}
	for _, r := range c.DoMulti(ctx, writes...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("writing: %w", err)
		}
	}
	return nil
}

// names are what a push keeps: the usernames, the ids of consumers whose
// id is not their username, and the groups with a hash.
type names struct{ usernames, ids, groups map[string]struct{} }

// remove deletes the credentials, consumers, their indexes and groups under
// prefix that the set does not have, scanning every node (each master of a
// cluster). The prefix is matched literally: SCAN's pattern has its glob
// characters escaped, and a key is deleted only if it starts with the
// prefix itself, so a prefix such as "app[v2]:" never reaches another
// application's "app2:" keys.
func remove(ctx context.Context, c rueidis.Client, layout redis.Layout, set *consumers.Set, keepNames names, st *Stats, report func()) error {
	var dels rueidis.Commands
	flush := func() error {
		for _, r := range c.DoMulti(ctx, dels...) {
			if err := r.Error(); err != nil {
				return fmt.Errorf("removing: %w", err)
			}
		}
		dels = dels[:0]
		return nil
	}
	index := consumers.NewIndex(set)
	// Credentials first, so no key outlives its consumer.
	for _, pass := range layout.KeyPrefixes() {
		for _, node := range c.Nodes() {
			var cursor uint64
			for {
				e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(globEscape(pass)+"*").Count(1000).Build()).AsScanEntry()
				if err != nil {
					return fmt.Errorf("scanning: %w", err)
				}
				for _, k := range e.Elements {
					if !strings.HasPrefix(k, pass) || keep(layout, k, set, index, keepNames) {
						continue
					}
					dels = append(dels, c.B().Del().Key(k).Build())
					if pass == layout.ConsumerKeysKey("") || pass == layout.CredentialIDKey("") {
						st.IndexesRemoved++
					} else {
						st.Removed++
					}
					if len(dels) == batch {
						if err := flush(); err != nil {
							return err
						}
					}
				}
				report()
				if cursor = e.Cursor; cursor == 0 {
					break
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
	return nil
}

func keep(layout redis.Layout, k string, set *consumers.Set, index *consumers.Index, n names) bool {
	var found bool
	switch kind, d, name := layout.Parse(k); kind {
	case redis.KindCredential:
		_, found = set.Lookup(&d)
	case redis.KindConsumer, redis.KindConsumerKeys:
		_, found = n.usernames[name]
	case redis.KindConsumerID:
		_, found = n.ids[name]
	case redis.KindCredentialID:
		_, found = index.Credential(name)
	case redis.KindGroup:
		_, found = n.groups[name]
	}
	return found
}

// globEscape escapes the characters special to Redis's glob-style patterns,
// so that s matches only itself.
func globEscape(s string) string {
	var b strings.Builder
	for i := range len(s) { // bytes: a key need not be UTF-8
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
