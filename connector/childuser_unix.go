//go:build unix

package connector

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// ChildUser is who a child process runs as: see LookupChildUser.
type ChildUser struct {
	// Credential goes in exec.Cmd.SysProcAttr.Credential.
	Credential *syscall.Credential
	// Name and Home are the user's, from the user database; empty for a
	// numeric uid it does not list.
	Name, Home string
}

// LookupChildUser resolves "USER[:GROUP]" (names, or numeric ids) to the
// credential a child process should start with: the user's uid, the
// group's gid (the user's primary group when GROUP is omitted; the uid
// again for a numeric uid the user database does not list) and that group
// alone. A process that starts as a uid other than 0 holds no
// capabilities, so it can neither read the connector's memory
// (/proc/<pid>/mem) nor ptrace it: the kernel allows either only to the
// same uid of a dumpable process, or to CAP_SYS_PTRACE. Root (uid 0) is
// refused: it would gain nothing. Starting a child as another user needs
// the caller to be root.
func LookupChildUser(spec string) (ChildUser, error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	if name == "" || hasGroup && group == "" {
		return ChildUser{}, fmt.Errorf("connector: child user %q: want USER or USER:GROUP (names or numeric ids)", spec)
	}
	var cu ChildUser
	var uid, gid uint64
	u, err := lookup(name, user.Lookup, user.LookupId)
	switch {
	case err == nil:
		cu.Name, cu.Home = u.Username, u.HomeDir
		uid, _ = strconv.ParseUint(u.Uid, 10, 32)
		gid, _ = strconv.ParseUint(u.Gid, 10, 32)
	case isNumeric(name):
		uid, _ = strconv.ParseUint(name, 10, 32)
		gid = uid
	default:
		return ChildUser{}, fmt.Errorf("connector: child user %q: %w", name, err)
	}
	if uid == 0 {
		return ChildUser{}, errors.New("connector: child user is root (uid 0): it could read the connector's memory; name an unprivileged user, e.g. nobody")
	}
	if hasGroup {
		g, err := lookup(group, user.LookupGroup, user.LookupGroupId)
		switch {
		case err == nil:
			gid, _ = strconv.ParseUint(g.Gid, 10, 32)
		case isNumeric(group):
			gid, _ = strconv.ParseUint(group, 10, 32)
		default:
			return ChildUser{}, fmt.Errorf("connector: child group %q: %w", group, err)
		}
	}
	cu.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}
	return cu, nil
}

// lookup finds s by name, else, if numeric, by id.
func lookup[T any](s string, byName, byID func(string) (T, error)) (T, error) {
	v, err := byName(s)
	if err != nil && isNumeric(s) {
		return byID(s)
	}
	return v, err
}

func isNumeric(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}
