package connector_test

import (
	"bytes"
	"context"
	"log"
	"strings"
	"testing"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/internal/tailnettest"
	"github.com/tsconnect/tsconnect/internal/vaulttest"
	"github.com/tsconnect/tsconnect/secrets"
)

// TestJoinWithKeyFromVault: a Headscale preauth key stored in (a faithful
// double of) Vault's KV v2, read with AppRole, is what the node joins
// with; the login token is revoked, and neither secret reaches logs or a
// child's environment.
func TestJoinWithKeyFromVault(t *testing.T) {
	for _, k := range []string{"VAULT_ADDR", "VAULT_TOKEN", "VAULT_NAMESPACE", "VAULT_AGENT_ADDR", "TS_AUTHKEY", "TS_AUTH_KEY"} {
		t.Setenv(k, "")
	}
	ctl := tailnettest.Shared(t)
	key := ctl.CreateKey(t, "tag:sandbox")
	const roleID, secretID = "role-1234", "secret-5678-must-not-leak"
	v := vaulttest.New(t)
	v.PutKV("secret", "tailscale", 2, map[string]any{"authkey": key, "note": "sandbox key"})
	v.AddAppRole(roleID, secretID)
	sid, err := secrets.NewKey(secretID)
	if err != nil {
		t.Fatal(err)
	}
	src, err := secrets.Vault(secrets.VaultConfig{
		Address: v.URL, Path: "secret/tailscale",
		Auth: secrets.AuthAppRole, RoleID: roleID, SecretID: sid,
	})
	if err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	logger := log.New(&logs, "", 0)
	c, err := connector.Start(context.Background(), connector.Config{
		ControlURL: ctl.URL, KeySource: src,
		Logf: logger.Printf, UserLogf: logger.Printf,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "Running" || !strings.Contains(st.KeySource, "vault") || !strings.Contains(st.KeySource, "approle") {
		t.Errorf("status %+v", st)
	}
	if len(v.Revoked()) != 1 {
		t.Errorf("revoked %d tokens, want the AppRole login token revoked once", len(v.Revoked()))
	}

	t.Setenv("VAULT_TOKEN", "hvs.user-token-must-not-leak")
	t.Setenv("TS_AUTHKEY", key)
	out, err := c.Command(context.Background(), "env").Output()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	for _, secret := range append([]string{key, secretID, "hvs."}, v.Revoked()...) {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("node logs contain a secret (%.8s…)", secret)
		}
		if strings.Contains(string(out), secret) {
			t.Errorf("child environment contains a secret (%.8s…)", secret)
		}
		if strings.Contains(st.KeySource, secret) {
			t.Errorf("status names a secret")
		}
	}
	if logs.Len() == 0 {
		t.Error("no logs captured: the scan above proves nothing")
	}
}
