package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/dnsfilter"
	"github.com/tsconnect/tsconnect/secrets"
)

// exitError is an error with the exit code and hint to report it with.
type exitError struct {
	code int
	err  error
	hint string
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports a bad command line for subcommand sub ("" for none).
func usageErrorf(sub, format string, args ...any) error {
	hint := "run 'tsconnect help' for usage"
	if sub != "" {
		hint = "run 'tsconnect " + sub + " --help' for usage"
	}
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...), hint: hint}
}

// fail reports err on stderr as
//
//	tsconnect: error: …
//	tsconnect: hint: …
//
// and returns the exit code for it.
func (sio stdio) fail(err error) int {
	code, hint := classify(err)
	fmt.Fprintf(sio.Err, "tsconnect: error: %s\n", message(err))
	if hint != "" {
		fmt.Fprintf(sio.Err, "tsconnect: hint: %s\n", hint)
	}
	return code
}

// message is err's text without the library's package prefixes, which
// mean nothing to people running a command.
func message(err error) string {
	var se *connector.StartError
	if errors.As(err, &se) && se.Kind == connector.KindKeySource {
		return "getting the auth key: " + secrets.Message(se.Err)
	}
	s := err.Error()
	for _, p := range []string{"connector: ", "secrets: ", "dnsfilter: ", "socks: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

// classify picks the exit code and hint for err.
func classify(err error) (code int, hint string) {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, ee.hint
	}
	if h, ok := secretsHint(err); ok {
		return exitAuth, h
	}
	// The library's hints speak of Config fields; these, of flags.
	var se *connector.StartError
	if errors.As(err, &se) {
		switch {
		case se.Kind == connector.KindKeySource:
			return exitAuth, "set TS_AUTHKEY (or TS_AUTH_KEY), or use --auth-key-file FILE or --vault-path PATH"
		case errors.Is(err, connector.ErrClientSecretNeedsTags):
			return exitAuth, "add --tags with tags the OAuth client owns (--tags tag:sandbox), or use an auth key (tskey-auth-…)"
		case se.Kind == connector.KindKey, se.Kind == connector.KindLogin:
			return exitAuth, se.Hint
		case se.Kind == connector.KindUnreachable:
			return exitUnreachable, "check --control-url (or TS_CONTROL_URL) and that the sandbox may reach it"
		}
		return exitFailure, se.Hint
	}
	var pe *dnsfilter.ParseError
	if errors.As(err, &pe) {
		return exitUsage, allowHint
	}
	return exitFailure, ""
}

// policyError is the usage error for a --policy file that cannot be read,
// does not parse or fails its tests.
func policyError(err error) error {
	var pe *dnsfilter.PolicyError
	hint := "see 'tsconnect help policy' for the file's format"
	if errors.As(err, &pe) && pe.Failures != nil {
		hint = "fix the rules (or the tests), and check with 'tsconnect policy test " + pe.File + "'"
	}
	return &exitError{code: exitUsage, err: fmt.Errorf("--policy: %s", message(err)), hint: hint}
}

const allowHint = "entries look like .corp.ts.net (names under it), grafana.corp.ts.net:443 (one name, one port) or 100.64.0.0/10; see 'tsconnect help run'"

// secretsHint says what to do about an error from the key source.
func secretsHint(err error) (string, bool) {
	if errors.Is(err, secrets.ErrVaultUnreachable) && errors.Is(err, context.DeadlineExceeded) {
		return "Vault did not answer in time: raise --timeout (the whole join, the key fetch included) or --vault-timeout (each Vault request), or check Vault (`vault status`, or `bao status`)", true
	}
	for _, h := range []struct {
		err  error
		hint string
	}{
		{secrets.ErrEmptyKey, "set TS_AUTHKEY (or TS_AUTH_KEY), or use --auth-key-file FILE or --vault-path PATH"},
		{secrets.ErrVaultConfig, "check the --vault-* flags (or TSCONNECT_VAULT_*) and VAULT_* variables; see 'tsconnect help run'"},
		{secrets.ErrVaultUnreachable, "check VAULT_ADDR (or --vault-addr) and that the sandbox may reach Vault; for TLS, --vault-cacert or VAULT_CACERT"},
		{secrets.ErrVaultSealed, "Vault is sealed: ask its operators to unseal it"},
		{secrets.ErrLoginFailed, "Vault refused the login: check --vault-role-id and the secret_id (--vault-secret-id-file, TSCONNECT_VAULT_SECRET_ID), or --vault-k8s-role; and that the auth method is mounted where --vault-auth-mount says (`vault auth list`, or `bao auth list`)"},
		{secrets.ErrPermissionDenied, "the Vault token (VAULT_TOKEN or BAO_TOKEN, or the login's) may not read the secret, or has expired: check its policies with `vault token capabilities` (or `bao`), or set --vault-kv-version to skip the KV version lookup"},
		{secrets.ErrNotFound, "nothing is stored there: check --vault-path, or store the key with `vault kv put secret/tailscale authkey=…` (or `bao`)"},
		{secrets.ErrNoMount, "no KV engine is mounted there: the first segment of --vault-path is the mount (`vault secrets list`, or `bao secrets list`)"},
		{secrets.ErrFieldMissing, "the secret has no such field: set --vault-field to the one holding the key"},
		{secrets.ErrFieldNotString, "store the key as a string in that field (`vault kv put secret/tailscale authkey=tskey-…`, or `bao`), or set --vault-field to the field holding it"},
		{secrets.ErrWrappingToken, "a wrapping token works once and expires: mint a new one"},
		{secrets.ErrMalformedResponse, "that is not Vault answering: check VAULT_ADDR (or --vault-addr) and any proxy in between"},
	} {
		if errors.Is(err, h.err) {
			return h.hint, true
		}
	}
	return "", false
}
