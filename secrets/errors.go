package secrets

import (
	"errors"
	"strings"
)

// Errors a [VaultSource] wraps, with detail, for [errors.Is]. The detail
// names the Vault address, the path and the auth method, never a secret.
var (
	// ErrVaultConfig reports a VaultConfig, or VAULT_* variable, that
	// cannot work: a missing Path, an unknown Auth, no credentials, a
	// namespace Vault does not know.
	ErrVaultConfig = errors.New("invalid vault configuration")
	// ErrVaultUnreachable reports that Vault did not answer: connection
	// refused, DNS, TLS, or no answer within the timeout (then the error
	// also wraps context.DeadlineExceeded).
	ErrVaultUnreachable = errors.New("cannot reach vault")
	// ErrVaultSealed reports a sealed Vault (HTTP 503 "Vault is sealed").
	ErrVaultSealed = errors.New("vault is sealed")
	// ErrPermissionDenied reports an HTTP 403: the token's policies do not
	// allow the request, or the token is invalid, expired or revoked.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrNotFound reports that nothing is stored at the path (or that its
	// latest KV v2 version is deleted or destroyed).
	ErrNotFound = errors.New("secret not found")
	// ErrNoMount reports that no secrets engine is mounted where the path
	// points ("no handler for route").
	ErrNoMount = errors.New("nothing mounted at path")
	// ErrFieldMissing reports a secret without the configured field. The
	// detail lists the field names it has, never their values.
	ErrFieldMissing = errors.New("field missing")
	// ErrFieldNotString reports a secret whose field holds something other
	// than a string (a number, an object).
	ErrFieldNotString = errors.New("field is not a string")
	// ErrLoginFailed reports that Vault refused an AppRole or Kubernetes
	// login.
	ErrLoginFailed = errors.New("vault login failed")
	// ErrWrappingToken reports a response-wrapping token that Vault does
	// not know: expired, mistyped, or already unwrapped (they work once).
	ErrWrappingToken = errors.New("wrapping token is not valid")
	// ErrMalformedResponse reports an answer that is not Vault's JSON,
	// typically from a proxy or a wrong VAULT_ADDR.
	ErrMalformedResponse = errors.New("malformed vault response")
)

// hintedError is an error whose message ends in advice for library
// users, which names VaultConfig fields and VAULT_* variables.
type hintedError struct {
	err  error
	hint string
}

func (e *hintedError) Error() string { return e.err.Error() + ": " + e.hint }
func (e *hintedError) Unwrap() error { return e.err }

// Message returns err's text for the people running a command rather than
// a program using this package: without the "secrets: " prefix, and
// without the advice that names VaultConfig fields (a command gives its
// own, in terms of its flags). It is as scrubbed of secrets as err's own
// message.
func Message(err error) string {
	msg := err.Error()
	var he *hintedError
	if errors.As(err, &he) {
		msg = strings.Replace(msg, ": "+he.hint, "", 1)
	}
	return strings.TrimPrefix(msg, "secrets: ")
}

// scrubbedError is an error whose message had secret values replaced.
// Unwrap gives the original, for errors.Is and errors.As only: the
// package builds its messages so that no secret reaches them, and this is
// the second line of defence, for text Vault or a proxy sent back.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// minScrubLen is the shortest value scrub replaces; shorter "secrets"
// would mangle ordinary words and no real credential is that short.
const minScrubLen = 6

// scrub returns err with every occurrence of each secret in its message
// replaced by "[redacted]".
func scrub(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	out := msg
	for _, s := range secrets {
		if len(s) >= minScrubLen {
			out = strings.ReplaceAll(out, s, redacted)
		}
	}
	if out == msg {
		return err
	}
	return &scrubbedError{msg: out, err: err}
}
