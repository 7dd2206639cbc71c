package vaulttest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"regexp"
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
	if _, ok := env["mount_type"]; ok {
		t.Errorf("envelope has mount_type, which OpenBao does not send: %s", body)
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
	s.AddAppRole("r", "good")
	revoked := s.NewToken()
	raw(t, "PUT", s.URL+"/v1/auth/token/revoke-self", revoked, "", "")
	const (
		plainDenied = `{"errors":["permission denied"]}`
		multiDenied = `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`
	)
	cases := []struct {
		name, method, path, token, body string
		status                          int
		want                            string
	}{
		{"missing", "GET", "secret/data/nope", s.RootToken, "", 404, `{"errors":[]}`},
		{"no route", "GET", "nope/x", s.RootToken, "", 404, `{"errors":["no handler for route \"nope/x\". route entry not found."]}`},
		// A valid token that a policy denies gets the multi-error form,
		// an unknown, revoked or missing one the plain form.
		{"denied", "GET", "secret/data/denied", s.RootToken, "", 403, multiDenied},
		{"unknown token", "GET", "secret/data/tailscale", "s.bogus", "", 403, plainDenied},
		{"revoked token", "GET", "secret/data/tailscale", revoked, "", 403, plainDenied},
		{"no token", "GET", "secret/data/tailscale", "", "", 403, plainDenied},
		{"preflight, unknown token", "GET", "sys/internal/ui/mounts/secret/tailscale", "s.bogus", "", 403, plainDenied},
		{"approle", "PUT", "auth/approle/login", "", `{"role_id":"r","secret_id":"s"}`, 400, `{"errors":["invalid role or secret ID"]}`},
		// A login at a path under no auth mount is a 403, not a 404.
		{"login, no such auth mount", "PUT", "auth/approle2/login", "", `{"role_id":"r","secret_id":"good"}`, 403, plainDenied},
		{"unwrap, s. token", "PUT", "sys/wrapping/unwrap", "s.used", "", 400, `{"errors":["wrapping token is not valid or does not exist"]}`},
		{"unwrap, hvs. token", "PUT", "sys/wrapping/unwrap", "hvs.used", "", 403, plainDenied},
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
	if !strings.HasPrefix(tok, "s.") || !sec.Auth.Renewable || sec.Auth.LeaseDuration == 0 || sec.Auth.Accessor == "" {
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

// TestNamespaceNotFound: a header naming no namespace gets 404
// ["namespace not found"] from every endpoint, before the token, the route
// or the credentials are looked at; a namespace at the front of the path
// that does not exist is only a path.
func TestNamespaceNotFound(t *testing.T) {
	s := vaulttest.New(t)
	s.AddNamespace("team1")
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": "k"})
	s.PutKV("team1/secret", "tailscale", 2, map[string]any{"authkey": "k"})
	s.AddAppRole("r", "s")
	const want = `{"errors":["namespace not found"]}`
	for _, ns := range []string{"nons", "team1/nons"} {
		for _, tc := range []struct{ method, path, token, body string }{
			{"GET", "sys/internal/ui/mounts/secret/tailscale", s.RootToken, ""},
			{"GET", "secret/data/tailscale", s.RootToken, ""},
			{"GET", "secret/data/tailscale", "", ""},
			{"PUT", "auth/approle/login", "", `{"role_id":"r","secret_id":"s"}`},
			{"PUT", "sys/wrapping/unwrap", s.Wrap(map[string]any{"a": "b"}), ""},
			{"PUT", "auth/token/revoke-self", s.RootToken, ""},
		} {
			if status, body := raw(t, tc.method, s.URL+"/v1/"+tc.path, tc.token, ns, tc.body); status != 404 || strings.TrimSpace(body) != want {
				t.Errorf("namespace %s: %s %s = %d %s; want 404 %s", ns, tc.method, tc.path, status, body, want)
			}
		}
	}
	if got := s.Revoked(); len(got) != 0 {
		t.Errorf("revoke-self in a missing namespace revoked %d tokens", len(got))
	}
	// "root" and "/" name the root namespace.
	for _, ns := range []string{"root", "/"} {
		if status, body := raw(t, "GET", s.URL+"/v1/secret/data/tailscale", s.RootToken, ns, ""); status != 200 {
			t.Errorf("namespace %q: %d %s", ns, status, body)
		}
	}
	// In the path, a namespace that does not exist is part of the path.
	if status, body := raw(t, "GET", s.URL+"/v1/nons/secret/data/tailscale", s.RootToken, "", ""); status != 404 || !strings.Contains(body, `no handler for route \"nons/secret/data/tailscale\"`) {
		t.Errorf("unknown namespace in the path: %d %s", status, body)
	}
	if status, body := raw(t, "GET", s.URL+"/v1/sys/internal/ui/mounts/nons/secret/tailscale", s.RootToken, "", ""); status != 403 || !strings.Contains(body, "preflight capability check returned 403") {
		t.Errorf("preflight, unknown namespace in the path: %d %s", status, body)
	}
	if status, body := raw(t, "GET", s.URL+"/v1/sys/internal/ui/mounts/team1/secret/tailscale", s.RootToken, "", ""); status != 200 || !strings.Contains(body, `"path":"team1/secret/"`) {
		t.Errorf("preflight, namespace in the path: %d %s", status, body)
	}
}

// TestDestroyed: a destroyed latest version reads as a 404 whose metadata
// says destroyed, with no deletion_time; a deleted one has deletion_time.
func TestDestroyed(t *testing.T) {
	s := vaulttest.New(t)
	s.PutKV("secret", "gone", 2, map[string]any{"authkey": "k"})
	s.PutKV("secret", "gone", 2, map[string]any{"authkey": "k2"})
	s.DestroyKV("secret", "gone")
	s.PutKV("secret", "deleted", 2, map[string]any{"authkey": "k"})
	s.DeleteKV("secret", "deleted")
	for _, tc := range []struct {
		path        string
		destroyed   bool
		deletedTime bool
	}{
		{"gone", true, false},
		{"deleted", false, true},
	} {
		status, body := raw(t, "GET", s.URL+"/v1/secret/data/"+tc.path, s.RootToken, "", "")
		var env struct {
			Data struct {
				Data     map[string]any `json:"data"`
				Metadata map[string]any `json:"metadata"`
			} `json:"data"`
		}
		json.Unmarshal([]byte(body), &env)
		meta := env.Data.Metadata
		if status != 404 || env.Data.Data != nil || meta["destroyed"] != tc.destroyed || (meta["deletion_time"] != "") != tc.deletedTime {
			t.Errorf("%s: %d %s", tc.path, status, body)
		}
	}
	if _, body := raw(t, "GET", s.URL+"/v1/secret/data/gone", s.RootToken, "", ""); !strings.Contains(body, `"deletion_time":"","destroyed":true`) || !strings.Contains(body, `"version":2`) {
		t.Errorf("destroyed: %s", body)
	}
}

// TestPreflightOptions: the mounts preflight reports options
// {"version":"N"} for a mount enabled with -version=N, null for a KV
// engine enabled without.
func TestPreflightOptions(t *testing.T) {
	s := vaulttest.New(t)
	s.PutKV("kv1", "x", 1, map[string]any{"a": "b"})
	s.PutKV("kv2", "x", 2, map[string]any{"a": "b"})
	s.Mount("kv", 0)
	s.PutKV("kv", "x", 1, map[string]any{"a": "b"})
	for mount, want := range map[string]string{"kv1": `"options":{"version":"1"}`, "kv2": `"options":{"version":"2"}`, "kv": `"options":null`} {
		status, body := raw(t, "GET", s.URL+"/v1/sys/internal/ui/mounts/"+mount+"/x", s.RootToken, "", "")
		if status != 200 || !strings.Contains(body, want) {
			t.Errorf("preflight of %s = %d %s; want %s", mount, status, body, want)
		}
	}
	if status, body := raw(t, "GET", s.URL+"/v1/kv/x", s.RootToken, "", ""); status != 200 {
		t.Errorf("read from an unversioned mount: %d %s", status, body)
	}
}

// TestTokenShapes: tokens are OpenBao's "s." and 24 base62 characters,
// with the namespace's ID after a dot for one issued in a namespace.
func TestTokenShapes(t *testing.T) {
	s := vaulttest.New(t)
	s.AddNamespace("team1")
	s.AddAppRole("r", "s")
	root := regexp.MustCompile(`^s\.[0-9A-Za-z]{24}$`)
	for what, tok := range map[string]string{"RootToken": s.RootToken, "NewToken": s.NewToken(), "Wrap": s.Wrap(map[string]any{"a": "b"})} {
		if !root.MatchString(tok) {
			t.Errorf("%s = %.5s…, not shaped s.<24 base62>", what, tok)
		}
	}
	login := func(ns string) string {
		_, body := raw(t, "PUT", s.URL+"/v1/auth/approle/login", "", ns, `{"role_id":"r","secret_id":"s"}`)
		var l struct {
			Auth struct {
				ClientToken string `json:"client_token"`
			} `json:"auth"`
		}
		json.Unmarshal([]byte(body), &l)
		return l.Auth.ClientToken
	}
	if tok := login(""); !root.MatchString(tok) {
		t.Errorf("root namespace login token %.5s… not shaped s.<24 base62>", tok)
	}
	if tok := login("team1"); !regexp.MustCompile(`^s\.[0-9A-Za-z]{24}\.[0-9A-Za-z]{6}$`).MatchString(tok) {
		t.Errorf("team1 login token %.5s… not shaped s.<24 base62>.<namespace ID>", tok)
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
