package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/internal/vaulttest"
)

// TestVault: the key comes from (a double of) Vault's KV v2 with AppRole,
// the login token is revoked, and neither the key nor the Vault
// credentials reach the command or tsconnect's output. A Vault problem is
// an auth failure (exit 3) with a hint.
func TestVault(t *testing.T) {
	tn := newTailnet(t, "")
	v := vaulttest.New(t)
	v.PutKV("secret", "tailscale", 2, map[string]any{"authkey": tn.key})
	const roleID, secretID = "role-tsconnect", "secret-id-must-not-leak"
	v.AddAppRole(roleID, secretID)

	t.Run("approle", func(t *testing.T) {
		p := tsc(t, []string{"TS_CONTROL_URL=" + tn.ctl.URL, "VAULT_ADDR=" + v.URL, "TSCONNECT_VAULT_SECRET_ID=" + secretID},
			"run", "-v", "--listen", "127.0.0.1:0", "--vault-path", "secret/tailscale", "--vault-auth", "approle", "--vault-role-id", roleID, "--", "env")
		stdout, stderr := p.stdout.String(), p.stderr.String()
		if p.code != 0 {
			t.Fatalf("exit %d\n%s", p.code, stderr)
		}
		if !strings.Contains(stderr, "(key from vault "+v.URL+" secret/tailscale#authkey") {
			t.Errorf("stderr does not say where the key came from:\n%.2000s", stderr)
		}
		for _, bad := range []string{tn.key, secretID, "VAULT_ADDR=", "TSCONNECT_VAULT_SECRET_ID="} {
			if strings.Contains(stdout, bad) {
				t.Errorf("the command's environment has %q", bad)
			}
		}
		for _, bad := range []string{tn.key, secretID} {
			if strings.Contains(stderr, bad) {
				t.Errorf("tsconnect's stderr has a secret")
			}
		}
		if len(v.Revoked()) != 1 {
			t.Errorf("revoked %d tokens, want the AppRole login token revoked", len(v.Revoked()))
		}
	})

	t.Run("field missing", func(t *testing.T) {
		tokenFile := filepath.Join(t.TempDir(), "token")
		os.WriteFile(tokenFile, []byte(v.NewToken()+"\n"), 0o600)
		p := tsc(t, []string{"TS_CONTROL_URL=" + tn.ctl.URL, "VAULT_ADDR=" + v.URL},
			"check", "--vault-path", "secret/tailscale", "--vault-field", "key", "--vault-token-file", tokenFile, "web:80")
		stderr := p.stderr.String()
		if p.code != exitAuth {
			t.Errorf("exit %d, want %d\n%s", p.code, exitAuth, stderr)
		}
		for _, w := range []string{"tsconnect: error: ", "field missing", "tsconnect: hint: the secret has no such field: set --vault-field"} {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr lacks %q:\n%s", w, stderr)
			}
		}
		if strings.Contains(stderr, tn.key) {
			t.Errorf("stderr has the key")
		}
	})
}

// TestVaultMessages: what the command says about Vault failures names the
// step, the address once and flags (never a VaultConfig field), with a
// hint that fits the cause; OpenBao's BAO_* names work as VAULT_* do.
func TestVaultMessages(t *testing.T) {
	tn := newTailnet(t, "")
	v := vaulttest.New(t)
	v.PutKV("secret", "tailscale", 2, map[string]any{"authkey": tn.key})
	v.PutKV("secret", "numeric", 2, map[string]any{"authkey": 42})
	const roleID, secretID = "role-tsconnect", "secret-id-must-not-leak"
	v.AddAppRole(roleID, secretID)
	base := []string{"TS_CONTROL_URL=" + tn.ctl.URL, "VAULT_ADDR=" + v.URL}

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		slow bool
		want []string
		code int
	}{
		{
			name: "join deadline during the login",
			env:  append(base, "TSCONNECT_VAULT_SECRET_ID="+secretID),
			args: []string{"--timeout", "2s", "--vault-auth", "approle", "--vault-role-id", roleID},
			slow: true,
			want: []string{"before the deadline: context deadline exceeded",
				"hint: Vault did not answer in time: raise --timeout", "--vault-timeout"},
			code: exitAuth,
		},
		{
			name: "login at an unmounted auth path",
			env:  append(base, "TSCONNECT_VAULT_SECRET_ID="+secretID),
			args: []string{"--vault-auth", "approle", "--vault-role-id", roleID, "--vault-auth-mount", "nowhere"},
			want: []string{"vault login failed", "hint: Vault refused the login", "--vault-auth-mount"},
			code: exitAuth,
		},
		{
			// The namespace a flag set is named without the library's
			// field name; one from the environment, with the variable.
			name: "namespace not found, flag",
			env:  append(base, "VAULT_TOKEN="+v.RootToken),
			args: []string{"--vault-namespace", "nons"},
			want: []string{`namespace "nons" (set in the configuration) not found (KV version lookup`,
				"hint: check the --vault-* flags"},
			code: exitAuth,
		},
		{
			name: "namespace not found, VAULT_NAMESPACE",
			env:  append(base, "VAULT_TOKEN="+v.RootToken, "VAULT_NAMESPACE=nons"),
			want: []string{`namespace "nons" (from VAULT_NAMESPACE) not found (KV version lookup`},
			code: exitAuth,
		},
		{
			name: "field holds a number",
			env:  append(base, "VAULT_TOKEN="+v.RootToken),
			args: []string{"--vault-path", "secret/numeric"},
			want: []string{"field is not a string", "hint: store the key as a string", "--vault-field"},
			code: exitAuth,
		},
		{
			name: "OpenBao names",
			env:  []string{"TS_CONTROL_URL=" + tn.ctl.URL, "BAO_ADDR=" + v.URL, "BAO_TOKEN=" + v.RootToken},
			want: []string{"(key from vault " + v.URL},
			code: 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.slow {
				v.SetDelay(1500 * time.Millisecond)
				defer v.SetDelay(0)
			}
			args := append([]string{"run", "--listen", "127.0.0.1:0", "--vault-path", "secret/tailscale"}, tc.args...)
			p := tsc(t, tc.env, append(args, "--", "true")...)
			stderr := p.stderr.String()
			if p.code != tc.code {
				t.Errorf("exit %d, want %d\n%s", p.code, tc.code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			for _, bad := range []string{"VaultConfig", "KVVersion", "AuthMount", "Config.", tn.key, secretID, v.RootToken} {
				if strings.Contains(stderr, bad) {
					t.Errorf("stderr has %q:\n%s", bad, stderr)
				}
			}
			if n := strings.Count(stderr, v.URL); n > 2 {
				t.Errorf("the Vault address appears %d times (progress line and error at most):\n%s", n, stderr)
			}
		})
	}
}
