// Package secrets fetches the tailnet auth key and keeps it in memory only.
//
// It knows nothing about tailnets or proxies: it turns a configured source
// (a static value, a file, HashiCorp Vault or OpenBao, or the environment)
// into a [Key], a value that refuses to print itself. The connector
// package asks a [Source] for the key once, at start, and hands it straight
// to the tailnet node. Nothing here writes a file, logs a secret, or puts
// one in an error message.
//
// # Where the key comes from
//
// [FromConfig] is the one place that decides, in this order:
//
//  1. [Config].Key, a key given in code;
//  2. [Config].KeyFile, a file holding the key ([File]);
//  3. [Config].Vault, a secret in Vault ([Vault]);
//  4. the TS_AUTHKEY environment variable, then TS_AUTH_KEY ([Env]),
//     the names tsnet and tailscaled read.
//
// At most one of 1–3 may be set: setting two is an error, not a silent
// choice. The environment is read only when none of them is set. A source
// that fails is never followed by the next one, so a Vault outage cannot
// make tsconnect quietly join with a stale key from the environment.
//
// # Vault
//
// A [VaultSource] reads one field of one KV secret, such as the "authkey"
// field of secret/tailscale, written as in the Vault UI and `vault kv get`
// (not secret/data/tailscale). It finds the KV engine's mount and version
// the way the Vault CLI does, logs in with a token, AppRole or a Kubernetes
// service account, or instead unwraps a response-wrapped auth key, and
// revokes any token it obtained by logging in as soon as the key is read.
// Connection settings come from vault/api's own VAULT_* variables
// (VAULT_ADDR, VAULT_NAMESPACE, VAULT_CACERT, VAULT_CLIENT_TIMEOUT, …);
// a field set in [VaultConfig] wins over its variable. Errors wrap
// sentinels such as [ErrVaultSealed] and [ErrPermissionDenied] for
// [errors.Is], and say what to do.
//
// # Child processes
//
// [ScrubEnv] removes every variable in [SecretEnvVars] from an
// environment before it is handed to a child process.
package secrets
