//go:build unix

package docfile

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// owner is a file's owner and group.
type owner struct {
	uid, gid int
	ok       bool
}

func ownerOf(fi fs.FileInfo) owner {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return owner{}
	}
	return owner{uid: int(st.Uid), gid: int(st.Gid), ok: true}
}

// chownLike gives tmp the owner o unless it has it already, which is what an
// unprivileged process editing its own file gets without asking.
func chownLike(tmp *os.File, o owner) error {
	fi, err := tmp.Stat()
	if err != nil {
		return err
	}
	if ownerOf(fi) == o {
		return nil
	}
	return tmp.Chown(o.uid, o.gid)
}

// String is "name:group (uid:gid)", the names when the system has them.
func (o owner) String() string {
	u, g := strconv.Itoa(o.uid), strconv.Itoa(o.gid)
	name, group := u, g
	if x, err := user.LookupId(u); err == nil {
		name = x.Username
	}
	if x, err := user.LookupGroupId(g); err == nil {
		group = x.Name
	}
	return fmt.Sprintf("%s:%s (uid %s, gid %s)", name, group, u, g)
}

func processOwner() owner { return owner{uid: os.Geteuid(), gid: os.Getegid(), ok: true} }
