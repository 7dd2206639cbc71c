package secrets

import (
	"runtime"
	"strings"
)

// SecretEnvVars are the environment variables [ScrubEnv] removes. A name
// ending in "*" stands for every variable with that prefix.
//
// All of VAULT_* goes, not only VAULT_TOKEN: several others carry or point
// at credentials (VAULT_CLIENT_KEY, VAULT_HEADERS, VAULT_AGENT_ADDR), new
// ones appear with Vault releases, and a child that needs Vault should be
// given its own settings on purpose. BAO_* are the same variables under the
// OpenBao CLI's names (BAO_TOKEN, BAO_ADDR, …): an OpenBao user's token is
// as live as a Vault user's. TSCONNECT_VAULT_* are this package's
// credential variables ([EnvVaultRoleID], [EnvVaultSecretID],
// [EnvVaultWrappedToken]). The TS_* names are those tsnet, tailscaled and
// Tailscale's tools read a key, OAuth client secret, ID token or API key
// from.
var SecretEnvVars = []string{
	"TS_AUTHKEY",
	"TS_AUTH_KEY",
	"TS_CLIENT_SECRET",
	"TS_ID_TOKEN",
	"TS_API_KEY",
	"TS_API_CLIENT_SECRET",
	"VAULT_*",
	"BAO_*",
	"TSCONNECT_VAULT_*",
}

// ScrubEnv returns a copy of env ("NAME=value" entries, as from
// os.Environ) without the variables in [SecretEnvVars]. Use it for the
// environment of any child process. Names are compared case-insensitively
// on Windows, where the environment is.
func ScrubEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if name == "" {
			// Windows keeps per-drive directories in entries like
			// "=C:=C:\dir"; they are not secrets.
			out = append(out, kv)
			continue
		}
		if !IsSecretEnv(name) {
			out = append(out, kv)
		}
	}
	return out
}

// IsSecretEnv reports whether the variable name is one of [SecretEnvVars].
func IsSecretEnv(name string) bool {
	if runtime.GOOS == "windows" {
		name = strings.ToUpper(name)
	}
	for _, pat := range SecretEnvVars {
		if prefix, ok := strings.CutSuffix(pat, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == pat {
			return true
		}
	}
	return false
}
