package secrets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// maxSecretFile bounds what is read from a key, token or JWT file: they
// hold one value of at most a few KiB, so anything bigger is the wrong file.
const maxSecretFile = 64 << 10

// File returns a Source that reads the key from the file at path, such as
// a mounted Kubernetes or Docker secret. Surrounding white space (the final
// newline) is trimmed. The file is read on every call to AuthKey, so a
// rotated key is picked up at the next start. Errors name the path, never
// the content.
func File(path string) Source { return fileSource{path} }

type fileSource struct{ path string }

func (f fileSource) AuthKey(context.Context) (Key, error) {
	s, err := readSecretFile(f.path)
	if errors.Is(err, errEmptyFile) {
		return Key{}, fmt.Errorf("secrets: key file %s: %w: %w", f.path, ErrEmptyKey, err)
	}
	if err != nil {
		return Key{}, fmt.Errorf("secrets: key file %s: %w", f.path, err)
	}
	k, err := newKey(s)
	if err != nil {
		return Key{}, fmt.Errorf("secrets: key file %s: %w", f.path, err)
	}
	return k, nil
}

// errEmptyFile reports a secret file with nothing but white space in it.
var errEmptyFile = errors.New("the file is empty")

func (f fileSource) Describe() string { return "file " + f.path }

// readSecretFile returns the trimmed content of a small file holding one
// secret. Its errors hold the path and the reason, never the content; an
// empty file is errEmptyFile.
func readSecretFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("no file name given")
	}
	f, err := os.Open(path)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("%w: check the path, and that the secret is mounted there", err)
		case errors.Is(err, fs.ErrPermission):
			return "", fmt.Errorf("%w: make the file readable by the user tsconnect runs as", err)
		}
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("file is larger than %d KiB; it should hold a single value", maxSecretFile>>10)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", errEmptyFile
	}
	return s, nil
}
