package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/tsconnect/tsconnect/secrets"
)

// wipeInitialEnviron zeroes the values of the secret variables
// (secrets.SecretEnvVars: TS_AUTHKEY, VAULT_TOKEN, …) in the environment
// block the kernel set up when tsconnect started. /proc/<pid>/environ
// shows that block, not Go's environment, so Unsetenv never cleared it,
// and a reader that may ptrace tsconnect — root, such as an agent's
// command run as uid 0 — could read the key there. Go copied the block
// into its own strings at start-up, so os.Getenv still sees every value.
func wipeInitialEnviron() error {
	start, end, err := environBounds()
	if err != nil {
		return err
	}
	mem, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer mem.Close()
	block := make([]byte, end-start)
	if _, err := mem.ReadAt(block, int64(start)); err != nil {
		return fmt.Errorf("reading the environment block: %w", err)
	}
	off := 0
	for kv := range bytes.SplitSeq(block, []byte{0}) {
		name, value, ok := bytes.Cut(kv, []byte("="))
		if ok && len(value) > 0 && secrets.IsSecretEnv(string(name)) {
			at := off + len(name) + 1
			if _, err := mem.WriteAt(make([]byte, len(value)), int64(start)+int64(at)); err != nil {
				return fmt.Errorf("overwriting %s in the environment block: %w", name, err)
			}
		}
		off += len(kv) + 1
	}
	return nil
}

// environBounds returns env_start and env_end from /proc/self/stat
// (fields 50 and 51; proc(5)). The second field, the command name, may
// hold spaces and parentheses: fields are counted after its last ')'.
func environBounds() (start, end uint64, err error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/self/stat: no command name")
	}
	fields := strings.Fields(string(b[i+1:])) // fields[0] is field 3
	if len(fields) < 51-2 {
		return 0, 0, fmt.Errorf("/proc/self/stat: %d fields, want 51 (Linux 3.5 or later)", len(fields)+2)
	}
	start, err1 := strconv.ParseUint(fields[50-3], 10, 64)
	end, err2 := strconv.ParseUint(fields[51-3], 10, 64)
	if err1 != nil || err2 != nil || end < start || end-start > 1<<26 {
		return 0, 0, fmt.Errorf("/proc/self/stat: bad env_start/env_end %q %q", fields[50-3], fields[51-3])
	}
	return start, end, nil
}
