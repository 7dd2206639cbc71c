package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
