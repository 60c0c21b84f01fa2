package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"os"
	"strconv"
)

// resp writes, as RESP commands for `redis-cli --pipe`, the credentials
// [from, to) in the Redis source's layout: credential i has the key
// stableKey(i) and belongs to consumer user-(i/per), whose hash is written
// with its first credential. Credentials and consumers do not depend on the
// range they are written in, so two ranges written one after the other hold
// the same as one range covering both.
func resp(args []string) error {
	fs := flag.NewFlagSet("resp", flag.ExitOnError)
	from := fs.Int("from", 0, "first credential")
	to := fs.Int("to", 1000, "credential after the last")
	per := fs.Int("per", 10, "credentials per consumer")
	prefix := fs.String("prefix", "keyauth:", "key prefix of the Redis source")
	_ = fs.Parse(args)
	if *from < 0 || *to < *from || *per < 1 {
		usage()
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	for i := *from; i < *to; i++ {
		c := i / *per
		user := "user-" + strconv.Itoa(c)
		if i%*per == 0 || i == *from {
			command(w, "HSET", *prefix+"consumer:"+user, "id", user, "custom_id", "c-"+strconv.Itoa(c))
		}
		sum := sha256.Sum256([]byte(stableKey(i)))
		command(w, "HSET", *prefix+"cred:"+hex.EncodeToString(sum[:]), "consumer", user, "id", "k-"+strconv.Itoa(i))
	}
	return w.Flush()
}

// keys writes the keys of credentials [0, n), one a line.
func keys(args []string) error {
	fs := flag.NewFlagSet("keys", flag.ExitOnError)
	n := fs.Int("n", 1000, "number of keys")
	_ = fs.Parse(args)
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	for i := range *n {
		w.WriteString(stableKey(i) + "\n")
	}
	return w.Flush()
}

func command(w *bufio.Writer, args ...string) {
	var b [24]byte
	w.WriteByte('*')
	w.Write(strconv.AppendInt(b[:0], int64(len(args)), 10))
	w.WriteString("\r\n")
	for _, a := range args {
		w.WriteByte('$')
		w.Write(strconv.AppendInt(b[:0], int64(len(a)), 10))
		w.WriteString("\r\n")
		w.WriteString(a)
		w.WriteString("\r\n")
	}
}
