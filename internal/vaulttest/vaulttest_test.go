package vaulttest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/tsconnect/tsconnect/internal/vaulttest"
)

// clearVaultEnv keeps a developer's VAULT_* settings out of the test.
func clearVaultEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "VAULT_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
}

// client returns a vault/api client for s: the double must satisfy
// Vault's own client, not only ours.
func client(t *testing.T, s *vaulttest.Server, token string) *api.Client {
	t.Helper()
	clearVaultEnv(t)
	conf := api.DefaultConfig()
	conf.Address = s.URL
	conf.MaxRetries = 0
	c, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// raw sends a request and returns the status and the raw body.
func raw(t *testing.T, method, url, token, ns, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	if ns != "" {
		req.Header.Set("X-Vault-Namespace", ns)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestKVWithVaultClient(t *testing.T) {
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": "v1"})
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": "v2"})
	s.PutKV("kv", "tailscale", 1, map[string]any{"authkey": "old"})
	c := client(t, s, s.RootToken)
	ctx := context.Background()

	got, err := c.KVv2("secret").Get(ctx, "tailscale")
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["authkey"] != "v2" || got.VersionMetadata == nil || got.VersionMetadata.Version != 2 {
		t.Errorf("KVv2 Get = %v, metadata %+v; want authkey v2 at version 2", got.Data, got.VersionMetadata)
	}
	got, err = c.KVv1("kv").Get(ctx, "tailscale")
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["authkey"] != "old" {
		t.Errorf("KVv1 Get = %v", got.Data)
	}
	if _, err := c.KVv2("secret").Get(ctx, "missing"); !errors.Is(err, api.ErrSecretNotFound) {
		t.Errorf("KVv2 Get(missing) = %v; want ErrSecretNotFound", err)
	}
}

func TestEnvelope(t *testing.T) {
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": "k"})
	status, body := raw(t, "GET", s.URL+"/v1/secret/data/tailscale", s.RootToken, "", "")
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth"} {
		if _, ok := env[f]; !ok {
			t.Errorf("envelope lacks %q: %s", f, body)
		}
	}
	var data struct {
		Data     map[string]any `json:"data"`
		Metadata map[string]any `json:"metadata"`
	}
	json.Unmarshal(env["data"], &data)
	if data.Data["authkey"] != "k" || data.Metadata["version"] != float64(1) || data.Metadata["created_time"] == "" {
		t.Errorf("data = %s", env["data"])
	}

	status, body = raw(t, "GET", s.URL+"/v1/sys/internal/ui/mounts/secret/tailscale", s.RootToken, "", "")
	if status != 200 || !strings.Contains(body, `"path":"secret/"`) || !strings.Contains(body, `"options":{"version":"2"}`) || !strings.Contains(body, `"type":"kv"`) {
		t.Errorf("preflight = %d %s", status, body)
	}
}

func TestErrorBodies(t *testing.T) {
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": "k"})
	s.Deny("secret/data/denied")
	cases := []struct {
		name, method, path, token, body string
		status                          int
		want                            string
	}{
		{"missing", "GET", "secret/data/nope", s.RootToken, "", 404, `{"errors":[]}`},
		{"no route", "GET", "nope/x", s.RootToken, "", 404, `{"errors":["no handler for route \"nope/x\". route entry not found."]}`},
		{"denied", "GET", "secret/data/denied", s.RootToken, "", 403, `{"errors":["permission denied"]}`},
		{"bad token", "GET", "secret/data/tailscale", "hvs.bogus", "", 403, `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`},
		{"approle", "PUT", "auth/approle/login", "", `{"role_id":"r","secret_id":"s"}`, 400, `{"errors":["invalid role or secret ID"]}`},
		{"unwrap", "PUT", "sys/wrapping/unwrap", "hvs.used", "", 400, `{"errors":["wrapping token is not valid or does not exist"]}`},
		{"preflight", "GET", "sys/internal/ui/mounts/nope/x", s.RootToken, "", 403, `{"errors":["preflight capability check returned 403, please ensure client's policies grant access to path \"nope/x/\""]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := raw(t, tc.method, s.URL+"/v1/"+tc.path, tc.token, "", tc.body)
			if status != tc.status || strings.TrimSpace(body) != tc.want {
				t.Errorf("%s %s = %d %s; want %d %s", tc.method, tc.path, status, body, tc.status, tc.want)
			}
		})
	}

	s.SetSealed(true)
	status, body := raw(t, "GET", s.URL+"/v1/secret/data/tailscale", s.RootToken, "", "")
	if status != 503 || strings.TrimSpace(body) != `{"errors":["Vault is sealed"]}` {
		t.Errorf("sealed: %d %s", status, body)
	}
}

func TestV1PathOnV2Mount(t *testing.T) {
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": "k"})
	status, body := raw(t, "GET", s.URL+"/v1/secret/tailscale", s.RootToken, "", "")
	if status != 404 || !strings.Contains(body, "Invalid path for a versioned K/V secrets engine") || !strings.Contains(body, `"data":null`) {
		t.Errorf("%d %s", status, body)
	}
}

func TestLoginUnwrapRevoke(t *testing.T) {
	s := vaulttest.New(t)
	s.AddAppRole("role-1", "secret-1")
	s.AddKubernetesRole("tsconnect", "jwt-1")
	c := client(t, s, "")
	ctx := context.Background()

	sec, err := c.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": "role-1", "secret_id": "secret-1"})
	if err != nil {
		t.Fatal(err)
	}
	tok := sec.Auth.ClientToken
	if !strings.HasPrefix(tok, "hvs.") || !sec.Auth.Renewable || sec.Auth.LeaseDuration == 0 || sec.Auth.Accessor == "" {
		t.Errorf("auth = %+v", sec.Auth)
	}
	c.SetToken(tok)
	if err := c.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := s.Revoked(); len(got) != 1 || got[0] != tok {
		t.Errorf("Revoked = %v; want [%s]", got, tok)
	}
	if status, _ := raw(t, "PUT", s.URL+"/v1/auth/token/revoke-self", tok, "", ""); status != 403 {
		t.Errorf("revoked token still works: %d", status)
	}

	c.ClearToken()
	if _, err := c.Logical().WriteWithContext(ctx, "auth/kubernetes/login", map[string]any{"role": "tsconnect", "jwt": "jwt-1"}); err != nil {
		t.Fatal(err)
	}

	wt := s.Wrap(map[string]any{"secret_id": "secret-1"})
	un, err := c.Logical().UnwrapWithContext(ctx, wt)
	if err != nil {
		t.Fatal(err)
	}
	if un.Data["secret_id"] != "secret-1" {
		t.Errorf("unwrapped %v", un.Data)
	}
	c.ClearToken()
	if _, err := c.Logical().UnwrapWithContext(ctx, wt); err == nil || !strings.Contains(err.Error(), "wrapping token is not valid or does not exist") {
		t.Errorf("second unwrap: %v", err)
	}
}

func TestNamespaces(t *testing.T) {
	s := vaulttest.New(t)
	s.AddNamespace("team1")
	s.PutKV("team1/secret", "tailscale", 2, map[string]any{"authkey": "k"})
	s.AddAppRole("r", "s")

	if status, _ := raw(t, "GET", s.URL+"/v1/secret/data/tailscale", s.RootToken, "", ""); status != 404 {
		t.Errorf("root namespace sees team1's secret: %d", status)
	}
	if status, body := raw(t, "GET", s.URL+"/v1/secret/data/tailscale", s.RootToken, "team1", ""); status != 200 {
		t.Errorf("header: %d %s", status, body)
	}
	if status, body := raw(t, "GET", s.URL+"/v1/team1/secret/data/tailscale", s.RootToken, "", ""); status != 200 {
		t.Errorf("path prefix: %d %s", status, body)
	}
	if status, body := raw(t, "GET", s.URL+"/v1/sys/internal/ui/mounts/secret/tailscale", s.RootToken, "team1", ""); status != 200 || !strings.Contains(body, `"path":"secret/"`) {
		t.Errorf("preflight in namespace: %d %s", status, body)
	}

	// A token from a login in team1 is no good in the root namespace.
	_, body := raw(t, "PUT", s.URL+"/v1/auth/approle/login", "", "team1", `{"role_id":"r","secret_id":"s"}`)
	var login struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	json.Unmarshal([]byte(body), &login)
	if status, _ := raw(t, "PUT", s.URL+"/v1/auth/token/revoke-self", login.Auth.ClientToken, "", ""); status != 403 {
		t.Errorf("team1 token accepted in root namespace: %d", status)
	}
	if status, _ := raw(t, "GET", s.URL+"/v1/secret/data/tailscale", login.Auth.ClientToken, "team1", ""); status != 200 {
		t.Errorf("team1 token refused in team1: %d", status)
	}
}

func TestRequestsRecorded(t *testing.T) {
	s := vaulttest.New(t)
	raw(t, "PUT", s.URL+"/v1/auth/approle/login", "", "ns1", `{"role_id":"r","secret_id":"s"}`)
	got := s.Requests()
	if len(got) != 1 || got[0].Method != "PUT" || got[0].Path != "auth/approle/login" || got[0].Namespace != "ns1" || got[0].Body["role_id"] != "r" {
		t.Errorf("Requests = %+v", got)
	}
}

func TestMalformed(t *testing.T) {
	s := vaulttest.New(t)
	s.SetMalformed(true)
	status, body := raw(t, "GET", s.URL+"/v1/secret/data/x", s.RootToken, "", "")
	if status != 200 || json.Valid([]byte(body)) {
		t.Errorf("%d %q is not malformed", status, body)
	}
}
