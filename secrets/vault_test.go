package secrets_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/internal/vaulttest"
	"github.com/tsconnect/tsconnect/secrets"
)

func newVault(t *testing.T, cfg secrets.VaultConfig) *secrets.VaultSource {
	t.Helper()
	v, err := secrets.Vault(cfg)
	if err != nil {
		t.Fatalf("Vault(%+v): %v", cfg, err)
	}
	return v
}

func fetch(t *testing.T, v *secrets.VaultSource) secrets.Key {
	t.Helper()
	k, err := v.AuthKey(context.Background())
	if err != nil {
		t.Fatalf("AuthKey: %v", err)
	}
	if k.Reveal() != testAuthKey {
		t.Fatalf("AuthKey gave the wrong key (kind %v)", k.Kind())
	}
	return k
}

// paths lists "METHOD path" for each request the server saw.
func paths(s *vaulttest.Server) []string {
	var out []string
	for _, r := range s.Requests() {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

func TestVaultKV(t *testing.T) {
	cases := []struct {
		name      string
		mount     string
		version   int
		path      string // VaultConfig.Path
		kvVersion int
		kvMount   string
		want      []string // requests
		describe  string   // after the fetch
	}{
		{
			name: "v2 detected", mount: "secret", version: 2, path: "secret/tailscale",
			want:     []string{"GET sys/internal/ui/mounts/secret/tailscale", "GET secret/data/tailscale"},
			describe: "secret/tailscale#authkey (kv v2, token)",
		},
		{
			name: "v1 detected", mount: "kv", version: 1, path: "kv/tailscale",
			want:     []string{"GET sys/internal/ui/mounts/kv/tailscale", "GET kv/tailscale"},
			describe: "kv/tailscale#authkey (kv v1, token)",
		},
		{
			name: "v2 detected, data/ already written", mount: "secret", version: 2, path: "secret/data/tailscale",
			want: []string{"GET sys/internal/ui/mounts/secret/data/tailscale", "GET secret/data/tailscale"},
		},
		{
			name: "v2 detected, nested path and leading slash", mount: "secret", version: 2, path: "/secret/apps/tailscale/",
			want: []string{"GET sys/internal/ui/mounts/secret/apps/tailscale", "GET secret/data/apps/tailscale"},
		},
		{
			name: "v2 detected, deep mount", mount: "kv/team", version: 2, path: "kv/team/tailscale",
			want: []string{"GET sys/internal/ui/mounts/kv/team/tailscale", "GET kv/team/data/tailscale"},
		},
		{
			name: "v2 explicit", mount: "secret", version: 2, path: "secret/tailscale", kvVersion: 2,
			want:     []string{"GET secret/data/tailscale"},
			describe: "secret/tailscale#authkey (kv v2, token)",
		},
		{
			name: "v2 explicit, data/ already written", mount: "secret", version: 2, path: "secret/data/tailscale", kvVersion: 2,
			want: []string{"GET secret/data/tailscale"},
		},
		{
			name: "v2 explicit, deep mount", mount: "kv/team", version: 2, path: "kv/team/tailscale", kvVersion: 2, kvMount: "kv/team",
			want: []string{"GET kv/team/data/tailscale"},
		},
		{
			name: "v1 explicit", mount: "kv", version: 1, path: "kv/tailscale", kvVersion: 1,
			want: []string{"GET kv/tailscale"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			s := vaulttest.New(t)
			rest := strings.TrimPrefix(strings.Trim(tc.path, "/"), tc.mount+"/")
			rest = strings.TrimPrefix(rest, "data/")
			s.PutKV(tc.mount, rest, tc.version, map[string]any{"authkey": testAuthKey, "other": "x"})
			v := newVault(t, secrets.VaultConfig{
				Address: s.URL, Path: tc.path, KVVersion: tc.kvVersion, Mount: tc.kvMount,
				Token: mustKey(t, s.RootToken),
			})
			if tc.kvVersion == 0 && !strings.Contains(v.Describe(), "kv auto") {
				t.Errorf("Describe before the fetch = %q; want kv auto", v.Describe())
			}
			k := fetch(t, v)
			if k.Kind() != secrets.KindTailscaleAuth {
				t.Errorf("Kind = %v", k.Kind())
			}
			if got := paths(s); !slices.Equal(got, tc.want) {
				t.Errorf("requests = %q; want %q", got, tc.want)
			}
			for _, r := range s.Requests() {
				if r.Token != s.RootToken || !r.VaultRequest {
					t.Errorf("%s: token sent %v, X-Vault-Request %v", r.Path, r.Token == s.RootToken, r.VaultRequest)
				}
			}
			if tc.describe != "" {
				if want := "vault " + s.URL + " " + tc.describe; v.Describe() != want {
					t.Errorf("Describe = %q; want %q", v.Describe(), want)
				}
			}
			if got := s.Revoked(); len(got) != 0 {
				t.Errorf("a user-supplied token was revoked")
			}
		})
	}
}

func TestVaultField(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"ts_key": testAuthKey})
	fetch(t, newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Field: "ts_key", Token: mustKey(t, s.RootToken)}))
}

func TestVaultNamespace(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.AddNamespace("team1")
	s.PutKV("team1/secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	s.AddAppRole(testRoleID, testSecretID)

	t.Run("field", func(t *testing.T) {
		v := newVault(t, secrets.VaultConfig{Address: s.URL, Namespace: "team1", Path: "secret/tailscale", Auth: secrets.AuthAppRole, RoleID: testRoleID, SecretID: mustKey(t, testSecretID)})
		fetch(t, v)
		if !strings.Contains(v.Describe(), "namespace team1") {
			t.Errorf("Describe = %q", v.Describe())
		}
		for _, r := range s.Requests() {
			if r.Namespace != "team1" {
				t.Errorf("%s %s sent namespace %q", r.Method, r.Path, r.Namespace)
			}
		}
	})
	t.Run("VAULT_NAMESPACE", func(t *testing.T) {
		t.Setenv("VAULT_NAMESPACE", "team1")
		fetch(t, newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Token: mustKey(t, s.RootToken)}))
	})
	t.Run("explicit wins over VAULT_NAMESPACE", func(t *testing.T) {
		t.Setenv("VAULT_NAMESPACE", "elsewhere")
		fetch(t, newVault(t, secrets.VaultConfig{Address: s.URL, Namespace: "team1", Path: "secret/tailscale", Token: mustKey(t, s.RootToken)}))
	})
	t.Run("in the path", func(t *testing.T) {
		fetch(t, newVault(t, secrets.VaultConfig{Address: s.URL, Path: "team1/secret/tailscale", Token: mustKey(t, s.RootToken)}))
	})
	t.Run("enforced", func(t *testing.T) {
		_, err := newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Token: mustKey(t, s.RootToken)}).AuthKey(context.Background())
		if !errors.Is(err, secrets.ErrPermissionDenied) {
			t.Errorf("without the namespace: %v; want ErrPermissionDenied", err)
		}
	})
}

func TestVaultAppRole(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	s.AddAppRole(testRoleID, testSecretID)
	// A VAULT_TOKEN in the environment must not ride along on the login.
	t.Setenv("VAULT_TOKEN", s.NewToken())
	before := s.LiveTokens()

	var logged []string
	v := newVault(t, secrets.VaultConfig{
		Address: s.URL, Path: "secret/tailscale",
		Auth: secrets.AuthAppRole, RoleID: testRoleID, SecretID: mustKey(t, testSecretID),
		Logf: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) },
	})
	fetch(t, v)

	reqs := s.Requests()
	want := []string{"PUT auth/approle/login", "GET sys/internal/ui/mounts/secret/tailscale", "GET secret/data/tailscale", "PUT auth/token/revoke-self"}
	if got := paths(s); !slices.Equal(got, want) {
		t.Fatalf("requests = %q; want %q", got, want)
	}
	if reqs[0].Token != "" {
		t.Errorf("the login carried an X-Vault-Token")
	}
	if reqs[0].Body["role_id"] != testRoleID || reqs[0].Body["secret_id"] != testSecretID {
		t.Errorf("login body has the wrong credentials")
	}
	loginToken := reqs[1].Token
	if got := s.Revoked(); !slices.Equal(got, []string{loginToken}) {
		t.Errorf("revoked %d tokens; want exactly the login token", len(got))
	}
	if s.LiveTokens() != before {
		t.Errorf("live tokens %d; want %d as before", s.LiveTokens(), before)
	}
	if len(logged) != 0 {
		t.Errorf("logged %q", logged)
	}
	if want := "vault " + s.URL + " secret/tailscale#authkey (kv v2, approle)"; v.Describe() != want {
		t.Errorf("Describe = %q; want %q", v.Describe(), want)
	}
}

func TestVaultAppRoleCredentialSources(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	s.AddAppRole(testRoleID, testSecretID)

	t.Run("environment", func(t *testing.T) {
		t.Setenv(secrets.EnvVaultRoleID, testRoleID)
		t.Setenv(secrets.EnvVaultSecretID, testSecretID)
		fetch(t, newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Auth: secrets.AuthAppRole}))
	})
	t.Run("file wins over environment", func(t *testing.T) {
		t.Setenv(secrets.EnvVaultSecretID, "wrong-secret-id")
		fetch(t, newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Auth: secrets.AuthAppRole, RoleID: testRoleID, SecretIDFile: writeFile(t, "sid", testSecretID+"\n")}))
	})
	t.Run("custom mount", func(t *testing.T) {
		s.EnableAuth("approle", "ci-approle")
		fetch(t, newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Auth: secrets.AuthAppRole, AuthMount: "ci-approle", RoleID: testRoleID, SecretID: mustKey(t, testSecretID)}))
		if got := paths(s); !slices.Contains(got, "PUT auth/ci-approle/login") {
			t.Errorf("requests = %q", got)
		}
	})
}

func TestVaultAppRoleWrappedSecretID(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	s.AddAppRole(testRoleID, testSecretID)
	wt := s.Wrap(map[string]any{"secret_id": testSecretID, "secret_id_accessor": "acc", "secret_id_ttl": 0})

	v := newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Auth: secrets.AuthAppRole, RoleID: testRoleID, SecretID: mustKey(t, wt), SecretIDWrapped: true})
	fetch(t, v)
	reqs := s.Requests()
	if reqs[0].Path != "sys/wrapping/unwrap" || reqs[0].Token != wt {
		t.Errorf("first request %s with the wrapping token %v; want the unwrap", reqs[0].Path, reqs[0].Token == wt)
	}
	if reqs[1].Body["secret_id"] != testSecretID {
		t.Errorf("the login did not use the unwrapped secret_id")
	}
	if len(s.Revoked()) != 1 {
		t.Errorf("revoked %d tokens; want 1", len(s.Revoked()))
	}

	// The wrapping token is spent: the next start must say so.
	_, err := v.AuthKey(context.Background())
	if !errors.Is(err, secrets.ErrWrappingToken) {
		t.Fatalf("second fetch: %v; want ErrWrappingToken", err)
	}
	for _, want := range []string{"wrapped secret_id", "works once", "someone else may have"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	assertNoSecret(t, "error", err.Error(), secretsOf(s, wt))
}

func TestVaultKubernetes(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	s.AddKubernetesRole("tsconnect", testJWT)
	jwtFile := writeFile(t, "token", testJWT)

	v := newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Auth: secrets.AuthKubernetes, KubernetesRole: "tsconnect", KubernetesJWTFile: jwtFile})
	fetch(t, v)
	reqs := s.Requests()
	if reqs[0].Path != "auth/kubernetes/login" || reqs[0].Body["role"] != "tsconnect" || reqs[0].Body["jwt"] != testJWT || reqs[0].Token != "" {
		t.Errorf("login request = %s %v, token sent %v", reqs[0].Path, reqs[0].Body["role"], reqs[0].Token != "")
	}
	if got := s.Revoked(); len(got) != 1 || got[0] != reqs[1].Token {
		t.Errorf("the login token was not revoked")
	}
	if !strings.HasSuffix(v.Describe(), "(kv v2, kubernetes)") {
		t.Errorf("Describe = %q", v.Describe())
	}
}

func TestVaultWrappedKey(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	t.Run("sys/wrapping/wrap", func(t *testing.T) {
		wt := s.Wrap(map[string]any{"authkey": testAuthKey})
		v := newVault(t, secrets.VaultConfig{Address: s.URL, Auth: secrets.AuthWrapped, WrappedToken: mustKey(t, wt)})
		fetch(t, v)
		if want := "vault " + s.URL + " wrapped token#authkey"; v.Describe() != want {
			t.Errorf("Describe = %q; want %q", v.Describe(), want)
		}
		_, err := v.AuthKey(context.Background())
		if !errors.Is(err, secrets.ErrWrappingToken) {
			t.Errorf("second fetch: %v; want ErrWrappingToken", err)
		}
		assertNoSecret(t, "error", err.Error(), secretsOf(s, wt))
	})
	t.Run("wrapped kv v2 read, from the environment", func(t *testing.T) {
		wt := s.Wrap(map[string]any{"data": map[string]any{"authkey": testAuthKey}, "metadata": map[string]any{"version": 3}})
		t.Setenv(secrets.EnvVaultWrappedToken, wt)
		fetch(t, newVault(t, secrets.VaultConfig{Address: s.URL, Auth: secrets.AuthWrapped}))
	})
	t.Run("file", func(t *testing.T) {
		wt := s.Wrap(map[string]any{"authkey": testAuthKey})
		fetch(t, newVault(t, secrets.VaultConfig{Address: s.URL, Auth: secrets.AuthWrapped, WrappedTokenFile: writeFile(t, "wt", wt+"\n")}))
	})
	if len(s.Revoked()) != 0 {
		t.Errorf("revoked %d tokens; wrapping tokens need no revoking", len(s.Revoked()))
	}
}

func TestVaultTokenSources(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	user := s.NewToken()

	t.Run("VAULT_TOKEN", func(t *testing.T) {
		t.Setenv("VAULT_TOKEN", user)
		fetch(t, newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale"}))
	})
	t.Run("TokenFile wins over VAULT_TOKEN", func(t *testing.T) {
		t.Setenv("VAULT_TOKEN", "hvs.not-a-valid-token")
		fetch(t, newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", TokenFile: writeFile(t, "token", user+"\n")}))
	})
	t.Run("Token wins over VAULT_TOKEN", func(t *testing.T) {
		t.Setenv("VAULT_TOKEN", "hvs.not-a-valid-token")
		fetch(t, newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Token: mustKey(t, user)}))
	})
	if len(s.Revoked()) != 0 {
		t.Errorf("a user-supplied token was revoked")
	}
}

func TestVaultRevokesAfterFailedRead(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"not_it": testAuthKey})
	s.AddAppRole(testRoleID, testSecretID)
	v := newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Auth: secrets.AuthAppRole, RoleID: testRoleID, SecretID: mustKey(t, testSecretID)})
	if _, err := v.AuthKey(context.Background()); !errors.Is(err, secrets.ErrFieldMissing) {
		t.Fatalf("AuthKey: %v; want ErrFieldMissing", err)
	}
	if len(s.Revoked()) != 1 {
		t.Errorf("the login token was not revoked after the failed read")
	}
}

func TestVaultRevokesAfterCancel(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	s.AddAppRole(testRoleID, testSecretID)
	s.Deny("secret/data/tailscale")
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	v := newVault(t, secrets.VaultConfig{
		Address: s.URL, Path: "secret/tailscale", Auth: secrets.AuthAppRole, RoleID: testRoleID, SecretID: mustKey(t, testSecretID),
	})
	// Cancel as soon as the login has happened: the read fails, the
	// revocation must still go out.
	go func() {
		for ctx.Err() == nil {
			if len(s.Requests()) >= 2 {
				once.Do(cancel)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	s.SetDelay(50 * time.Millisecond)
	_, err := v.AuthKey(ctx)
	cancel()
	if err == nil {
		t.Fatal("AuthKey succeeded; want an error")
	}
	if len(s.Revoked()) != 1 {
		t.Errorf("revoked %d tokens after cancel; want 1 (err %v)", len(s.Revoked()), err)
	}
}

func TestVaultRevokeFailureIsLogged(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	s.AddAppRole(testRoleID, testSecretID)
	s.Deny("auth/token/revoke-self")
	var logged []string
	v := newVault(t, secrets.VaultConfig{
		Address: s.URL, Path: "secret/tailscale", Auth: secrets.AuthAppRole, RoleID: testRoleID, SecretID: mustKey(t, testSecretID),
		Logf: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) },
	})
	fetch(t, v) // a failed revocation does not fail the fetch
	if len(logged) != 1 || !strings.Contains(logged[0], "revoke-self") || !strings.Contains(logged[0], "stays valid") {
		t.Fatalf("logged %q; want one line about the revocation", logged)
	}
	assertNoSecret(t, "log", logged[0], secretsOf(s))
}

func TestVaultExplicitWinsOverEnv(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_TOKEN", s.RootToken)

	v := newVault(t, secrets.VaultConfig{Path: "secret/tailscale"})
	if !strings.HasPrefix(v.Describe(), "vault http://127.0.0.1:1 ") {
		t.Errorf("VAULT_ADDR not used: %q", v.Describe())
	}
	t.Setenv("VAULT_AGENT_ADDR", "http://127.0.0.1:2")
	v = newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale"})
	if !strings.HasPrefix(v.Describe(), "vault "+s.URL+" ") {
		t.Errorf("explicit Address lost to VAULT_ADDR or VAULT_AGENT_ADDR: %q", v.Describe())
	}
	fetch(t, v)
}

func TestVaultIgnoresWrapTTLEnv(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	t.Setenv("VAULT_WRAP_TTL", "5m")
	fetch(t, newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Token: mustKey(t, s.RootToken)}))
	for _, r := range s.Requests() {
		if r.WrapTTL != "" {
			t.Errorf("%s asked Vault to wrap the answer (X-Vault-Wrap-TTL %s)", r.Path, r.WrapTTL)
		}
	}
}

func TestVaultTLS(t *testing.T) {
	clearEnv(t)
	s := vaulttest.NewTLS(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	ca := writeFile(t, "ca.pem", string(s.CACertPEM()))
	cfg := secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Token: mustKey(t, s.RootToken)}

	_, err := newVault(t, cfg).AuthKey(context.Background())
	if !errors.Is(err, secrets.ErrVaultUnreachable) || !strings.Contains(err.Error(), "VAULT_CACERT") {
		t.Errorf("untrusted certificate: %v; want ErrVaultUnreachable naming VAULT_CACERT", err)
	}

	cfg.CACert = ca
	fetch(t, newVault(t, cfg))

	// VAULT_TLS_SERVER_NAME names a host the certificate is not for; the
	// explicit field must win.
	cfg.CACert = ""
	t.Setenv("VAULT_CACERT", ca)
	t.Setenv("VAULT_TLS_SERVER_NAME", "wrong.invalid")
	_, err = newVault(t, cfg).AuthKey(context.Background())
	if !errors.Is(err, secrets.ErrVaultUnreachable) || !strings.Contains(err.Error(), "VAULT_TLS_SERVER_NAME") {
		t.Errorf("wrong server name: %v; want ErrVaultUnreachable naming VAULT_TLS_SERVER_NAME", err)
	}
	cfg.TLSServerName = "example.com"
	fetch(t, newVault(t, cfg))
}

func TestVaultSealedFailsFast(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.SetSealed(true)
	start := time.Now()
	_, err := newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Token: mustKey(t, s.RootToken)}).AuthKey(context.Background())
	if !errors.Is(err, secrets.ErrVaultSealed) {
		t.Fatalf("AuthKey: %v; want ErrVaultSealed", err)
	}
	if n := len(s.Requests()); n != 1 {
		t.Errorf("%d requests; want 1: a sealed Vault is not retried", n)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v to report a sealed Vault", d)
	}
}

func TestVaultConcurrentFetches(t *testing.T) {
	clearEnv(t)
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	s.AddAppRole(testRoleID, testSecretID)
	v := newVault(t, secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Auth: secrets.AuthAppRole, RoleID: testRoleID, SecretID: mustKey(t, testSecretID)})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if k, err := v.AuthKey(context.Background()); err != nil || k.Reveal() != testAuthKey {
				t.Errorf("AuthKey: %v", err)
			}
			_ = v.Describe()
		})
	}
	wg.Wait()
	if len(s.Revoked()) != 8 {
		t.Errorf("revoked %d tokens; want 8", len(s.Revoked()))
	}
}

// TestVaultErrors checks that each failure a user can meet wraps its
// sentinel, says what to do, and carries no secret.
func TestVaultErrors(t *testing.T) {
	type env struct {
		s   *vaulttest.Server
		cfg *secrets.VaultConfig
		ctx *context.Context
	}
	approle := func(e env) {
		e.s.AddAppRole(testRoleID, testSecretID)
		e.cfg.Auth, e.cfg.RoleID, e.cfg.SecretID = secrets.AuthAppRole, testRoleID, mustKey(t, testSecretID)
		e.cfg.Token = secrets.Key{}
	}
	cases := []struct {
		name  string
		setup func(e env)
		is    []error
		want  []string // substrings of the message
		not   []string // must not appear
		hint  string   // the one hint the message ends in, if checked
	}{
		{
			name:  "unreachable",
			setup: func(e env) { e.cfg.Address = "http://127.0.0.1:1" },
			is:    []error{secrets.ErrVaultUnreachable},
			want:  []string{"http://127.0.0.1:1", "VAULT_ADDR", "Vault is running"},
		},
		{
			name:  "sealed",
			setup: func(e env) { e.s.SetSealed(true) },
			is:    []error{secrets.ErrVaultSealed},
			want:  []string{"vault is sealed", "vault operator unseal"},
		},
		{
			name:  "sealed at login",
			setup: func(e env) { approle(e); e.s.SetSealed(true) },
			is:    []error{secrets.ErrVaultSealed},
		},
		{
			name:  "permission denied",
			setup: func(e env) { e.s.Deny("secret/data/tailscale") },
			is:    []error{secrets.ErrPermissionDenied},
			want:  []string{"secret/tailscale", `its policies do not grant "read" on secret/data/tailscale`, "the token from VaultConfig.Token", "Vault: permission denied", "kv v2 detected"},
			not:   []string{"1 error occurred", "likely invalid"},
			hint:  "check with `vault token capabilities secret/data/tailscale` (or `bao`)",
		},
		{
			name:  "permission denied, approle",
			setup: func(e env) { approle(e); e.s.Deny("secret/data/tailscale") },
			is:    []error{secrets.ErrPermissionDenied},
			want:  []string{"secret/data/tailscale", "approle login at auth/approle"},
		},
		{
			name: "unknown token, read",
			setup: func(e env) {
				e.cfg.KVVersion = 2
				e.cfg.Token = mustKey(t, "s.revokedOrUnknownToken00")
			},
			is:   []error{secrets.ErrPermissionDenied},
			want: []string{"Vault refused the token from VaultConfig.Token for reading secret/tailscale, GET secret/data/tailscale (Vault: permission denied)", "the token is likely invalid, expired or revoked"},
			not:  []string{"s.revokedOrUnknownToken00", "policies"},
			hint: "check it with `vault token lookup` (or `bao`), or use a new one",
		},
		{
			name:  "unknown token, preflight",
			setup: func(e env) { e.cfg.Token = mustKey(t, "s.revokedOrUnknownToken00") },
			is:    []error{secrets.ErrPermissionDenied},
			want:  []string{"for the KV version lookup, GET sys/internal/ui/mounts/secret/tailscale (Vault: permission denied)", "the token is likely invalid, expired or revoked"},
			not:   []string{"nothing is mounted there", "s.revokedOrUnknownToken00"},
			hint:  "check it with `vault token lookup` (or `bao`), or use a new one",
		},
		{
			name:  "preflight denied",
			setup: func(e env) { e.s.Deny("secret") },
			is:    []error{secrets.ErrPermissionDenied},
			want:  []string{"sys/internal/ui/mounts/secret/tailscale", "nothing is mounted there, or the token from VaultConfig.Token has no access", "set KVVersion"},
			not:   []string{"likely invalid", "from the path"},
			hint:  "check `vault secrets list` (or `bao`) and the token's policies, or set KVVersion to skip this lookup",
		},
		{
			name:  "not found, v2",
			setup: func(e env) { e.cfg.Path = "secret/missing" },
			is:    []error{secrets.ErrNotFound},
			want:  []string{"nothing at secret/missing", "kv v2 detected", "secret/data/missing", "vault kv get secret/missing"},
		},
		{
			name: "not found, v2 set but mount is v1",
			setup: func(e env) {
				e.s.PutKV("kv", "tailscale", 1, map[string]any{"authkey": testAuthKey})
				e.cfg.Path, e.cfg.KVVersion = "kv/tailscale", 2
			},
			is:   []error{secrets.ErrNotFound},
			want: []string{"kv v2 set by KVVersion", "if the mount is kv v1, set KVVersion to 1"},
		},
		{
			name:  "not found, v1 set but mount is v2",
			setup: func(e env) { e.cfg.KVVersion = 1 },
			is:    []error{secrets.ErrNotFound},
			want:  []string{"read as kv v1", "its mount is kv v2", "set KVVersion to 2"},
		},
		{
			name: "deleted",
			setup: func(e env) {
				e.s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
				e.s.DeleteKV("secret", "tailscale")
			},
			is:   []error{secrets.ErrNotFound},
			want: []string{"the latest version (2) of secret/tailscale (kv v2 detected, read as secret/data/tailscale) was deleted at 20"},
			not:  []string{"destroyed"},
			hint: "restore it with `vault kv undelete -versions=2 secret/tailscale` (or `bao`), or write the key again",
		},
		{
			name:  "destroyed",
			setup: func(e env) { e.s.DestroyKV("secret", "tailscale") },
			is:    []error{secrets.ErrNotFound},
			want:  []string{"the latest version (1) of secret/tailscale (kv v2 detected, read as secret/data/tailscale) is destroyed: write the key again"},
			not:   []string{"undelete", "deletion_time", "deleted"},
			hint:  "write the key again with `vault kv put secret/tailscale authkey=…` (or `bao`)",
		},
		{
			name: "deleted, then destroyed",
			setup: func(e env) {
				e.s.DeleteKV("secret", "tailscale")
				e.s.DestroyKV("secret", "tailscale")
			},
			is:   []error{secrets.ErrNotFound},
			want: []string{"is destroyed: write the key again"},
			not:  []string{"undelete"},
		},
		{
			name:  "unmounted",
			setup: func(e env) { e.cfg.Path, e.cfg.KVVersion = "nope/x", 1 },
			is:    []error{secrets.ErrNoMount},
			want:  []string{`no handler for route "nope/x"`},
			not:   []string{"namespace"},
			hint:  "check its first segment against `vault secrets list` (or `bao`)",
		},
		{
			name:  "unmounted, detected",
			setup: func(e env) { e.cfg.Path = "nope/x" },
			is:    []error{secrets.ErrPermissionDenied},
			want:  []string{"nothing is mounted there", "vault secrets list"},
			not:   []string{"namespace"},
		},
		// A namespace at the front of Path that does not exist is a path
		// to Vault: the message names it as the other reading.
		{
			name:  "namespace in the path not found",
			setup: func(e env) { e.cfg.Path = "nons/secret/tailscale" },
			is:    []error{secrets.ErrPermissionDenied},
			want:  []string{`nothing is mounted there, or namespace "nons" (from the path) not found, or the token`},
		},
		{
			name:  "namespace in the path not found, kv version set",
			setup: func(e env) { e.cfg.Path, e.cfg.KVVersion = "nons/secret/tailscale", 2 },
			is:    []error{secrets.ErrNoMount},
			want:  []string{`no secrets engine is mounted where nons/data/secret/tailscale points, or namespace "nons" (from the path) not found (Vault: no handler for route`},
		},
		{
			name: "namespace in the path not found, below VAULT_NAMESPACE",
			setup: func(e env) {
				e.s.AddNamespace("team1")
				t.Setenv("VAULT_NAMESPACE", "team1")
				e.cfg.Path = "nons/secret/tailscale"
			},
			is:   []error{secrets.ErrPermissionDenied},
			want: []string{`namespace "team1/nons" (from the path) not found`},
		},
		// A namespace header naming no namespace gets 404 "namespace not
		// found" from every endpoint; the message names the namespace,
		// where it was set, and the step.
		{
			name:  "namespace not found, VAULT_NAMESPACE, KV version lookup",
			setup: func(e env) { t.Setenv("VAULT_NAMESPACE", "nons") },
			is:    []error{secrets.ErrVaultConfig},
			want:  []string{`namespace "nons" (from VAULT_NAMESPACE) not found (KV version lookup, GET sys/internal/ui/mounts/secret/tailscale: Vault: namespace not found)`},
			not:   []string{"nothing at", "kv v1 assumed", "VaultConfig.Namespace"},
			hint:  "check VAULT_NAMESPACE against `vault namespace list` (or `bao`), or leave it empty for the root namespace",
		},
		{
			name:  "namespace not found, BAO_NAMESPACE, secret read",
			setup: func(e env) { t.Setenv("BAO_NAMESPACE", "nons"); e.cfg.KVVersion = 2 },
			is:    []error{secrets.ErrVaultConfig},
			want:  []string{`namespace "nons" (from BAO_NAMESPACE) not found (secret read, GET secret/data/tailscale`},
			hint:  "check BAO_NAMESPACE against `vault namespace list` (or `bao`), or leave it empty for the root namespace",
		},
		{
			name:  "namespace not found, field, login",
			setup: func(e env) { approle(e); e.cfg.Namespace = "team1/nons"; e.s.AddNamespace("team1") },
			is:    []error{secrets.ErrVaultConfig},
			want:  []string{`namespace "team1/nons" (set in the configuration) not found (login, PUT auth/approle/login`},
			not:   []string{"AuthMount", "role_id"},
			hint:  "check VaultConfig.Namespace against `vault namespace list` (or `bao`), or leave it empty for the root namespace",
		},
		{
			name: "namespace not found, unwrap",
			setup: func(e env) {
				e.cfg.Token, e.cfg.Path, e.cfg.Auth = secrets.Key{}, "", secrets.AuthWrapped
				e.cfg.WrappedToken = mustKey(t, e.s.Wrap(map[string]any{"authkey": testAuthKey}))
				e.cfg.Namespace = "nons"
			},
			is:   []error{secrets.ErrVaultConfig},
			want: []string{`namespace "nons" (set in the configuration) not found (unwrap, PUT sys/wrapping/unwrap`},
			not:  []string{"HTTP 404"},
		},
		{
			name: "field missing",
			setup: func(e env) {
				e.s.PutKV("secret", "other", 2, map[string]any{"api_key": testAuthKey, "note": "s3cr3t-note-value"})
				e.cfg.Path = "secret/other"
			},
			is:   []error{secrets.ErrFieldMissing},
			want: []string{`no field "authkey"`, `"api_key", "note"`, "set Field"},
			not:  []string{"s3cr3t-note-value"},
		},
		{
			name:  "field not a string",
			setup: func(e env) { e.s.PutKV("secret", "n", 2, map[string]any{"authkey": 12345}); e.cfg.Path = "secret/n" },
			want:  []string{`field "authkey" of secret/n is a number`},
			not:   []string{"12345"},
		},
		{
			name:  "field empty",
			setup: func(e env) { e.s.PutKV("secret", "e", 2, map[string]any{"authkey": " "}); e.cfg.Path = "secret/e" },
			is:    []error{secrets.ErrEmptyKey},
			want:  []string{`field "authkey" of secret/e`},
		},
		{
			name: "field two lines",
			setup: func(e env) {
				e.s.PutKV("secret", "m", 2, map[string]any{"authkey": testAuthKey + "\n" + testAuthKey})
				e.cfg.Path = "secret/m"
			},
			want: []string{"line break"},
		},
		{
			name:  "bad approle credentials",
			setup: func(e env) { approle(e); e.cfg.SecretID = mustKey(t, "wrong-"+testSecretID) },
			is:    []error{secrets.ErrLoginFailed},
			want:  []string{"approle login at auth/approle/login refused", "invalid role or secret ID", "VaultConfig.SecretID", "secret-id"},
			not:   []string{"wrong-" + testSecretID},
		},
		{
			name:  "approle without role_id",
			setup: func(e env) { approle(e); e.cfg.RoleID = "" },
			is:    []error{secrets.ErrVaultConfig},
			want:  []string{"role_id", secrets.EnvVaultRoleID},
		},
		{
			name:  "approle without secret_id",
			setup: func(e env) { approle(e); e.cfg.SecretID = secrets.Key{} },
			is:    []error{secrets.ErrVaultConfig},
			want:  []string{"secret_id", secrets.EnvVaultSecretID, "SecretIDFile"},
		},
		{
			// AppRole answers bad credentials with a 400: a 403 means the
			// mount, and the message says so first.
			name:  "approle mount missing",
			setup: func(e env) { approle(e); e.cfg.AuthMount = "nope" },
			is:    []error{secrets.ErrLoginFailed, secrets.ErrPermissionDenied},
			want:  []string{"approle login at auth/nope/login refused (Vault: permission denied): no auth method is mounted at auth/nope"},
			not:   []string{"role_id (from", "secret-id"},
			hint:  "check `vault auth list` (or `bao`) and set AuthMount to the AppRole method's path",
		},
		{
			name: "kubernetes bad jwt",
			setup: func(e env) {
				e.s.AddKubernetesRole("tsconnect", testJWT+"-other")
				e.cfg.Token = secrets.Key{}
				e.cfg.Auth, e.cfg.KubernetesRole, e.cfg.KubernetesJWTFile = secrets.AuthKubernetes, "tsconnect", writeFile(t, "jwt", testJWT)
			},
			is:   []error{secrets.ErrLoginFailed, secrets.ErrPermissionDenied},
			want: []string{"kubernetes login at auth/kubernetes/login refused (Vault: permission denied): Vault rejected the service account token, or no auth method is mounted at auth/kubernetes"},
			not:  []string{testJWT + "-other"},
			hint: "check with `vault read auth/kubernetes/role/tsconnect` (or `bao`) that the role exists and is bound to this pod's service account and namespace",
		},
		{
			name: "kubernetes unknown role",
			setup: func(e env) {
				e.cfg.Token = secrets.Key{}
				e.cfg.Auth, e.cfg.KubernetesRole, e.cfg.KubernetesJWTFile = secrets.AuthKubernetes, "ghost", writeFile(t, "jwt", testJWT)
			},
			is:   []error{secrets.ErrLoginFailed},
			want: []string{`invalid role name "ghost"`, "vault read auth/kubernetes/role/ghost"},
		},
		{
			name: "kubernetes jwt file missing",
			setup: func(e env) {
				e.cfg.Token = secrets.Key{}
				e.cfg.Auth, e.cfg.KubernetesRole, e.cfg.KubernetesJWTFile = secrets.AuthKubernetes, "tsconnect", "/nonexistent/token"
			},
			is:   []error{secrets.ErrVaultConfig},
			want: []string{"/nonexistent/token", "KubernetesJWTFile"},
		},
		{
			name: "wrapping token used up",
			setup: func(e env) {
				e.cfg.Token, e.cfg.Path, e.cfg.Auth = secrets.Key{}, "", secrets.AuthWrapped
				e.cfg.WrappedToken = mustKey(t, "s.alreadyUnwrappedToken00")
			},
			is:   []error{secrets.ErrWrappingToken},
			want: []string{"wrapping token is not valid or does not exist", "works once", "VaultConfig.WrappedToken"},
			not:  []string{"s.alreadyUnwrappedToken00"},
		},
		{
			// OpenBao refuses an unknown hvs. token with a 403.
			name: "wrapping token unknown, hvs.",
			setup: func(e env) {
				e.cfg.Token, e.cfg.Path, e.cfg.Auth = secrets.Key{}, "", secrets.AuthWrapped
				e.cfg.WrappedToken = mustKey(t, "hvs.CAESIunknown-wrapping-token")
			},
			is:   []error{secrets.ErrWrappingToken},
			want: []string{"Vault: permission denied", "works once"},
			not:  []string{"hvs.CAESIunknown-wrapping-token"},
		},
		{
			name: "wrapped key lacks the field",
			setup: func(e env) {
				e.cfg.Token, e.cfg.Path, e.cfg.Auth = secrets.Key{}, "", secrets.AuthWrapped
				e.cfg.WrappedToken = mustKey(t, e.s.Wrap(map[string]any{"key": testAuthKey}))
			},
			is:   []error{secrets.ErrFieldMissing},
			want: []string{`"key"`},
		},
		{
			name:  "malformed",
			setup: func(e env) { e.s.SetMalformed(true) },
			is:    []error{secrets.ErrMalformedResponse},
			want:  []string{"not Vault's JSON (cut short)", "VAULT_ADDR"},
		},
		{
			name:  "slow",
			setup: func(e env) { e.s.SetDelay(5 * time.Second); e.cfg.Timeout = 100 * time.Millisecond },
			is:    []error{secrets.ErrVaultUnreachable, context.DeadlineExceeded},
			want:  []string{"within 100ms", "VAULT_CLIENT_TIMEOUT"},
		},
		{
			name:  "slow, VAULT_CLIENT_TIMEOUT",
			setup: func(e env) { e.s.SetDelay(5 * time.Second); t.Setenv("VAULT_CLIENT_TIMEOUT", "150ms") },
			is:    []error{secrets.ErrVaultUnreachable, context.DeadlineExceeded},
			want:  []string{"within 150ms"},
		},
		{
			name: "caller's deadline",
			setup: func(e env) {
				e.s.SetDelay(5 * time.Second)
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				t.Cleanup(cancel)
				*e.ctx = ctx
			},
			is: []error{context.DeadlineExceeded},
		},
		{
			name:  "no token",
			setup: func(e env) { e.cfg.Token = secrets.Key{} },
			is:    []error{secrets.ErrVaultConfig},
			want:  []string{"no Vault token", "VAULT_TOKEN", "TokenFile"},
		},
		{
			name:  "token with a control character",
			setup: func(e env) { e.cfg.Token, e.cfg.TokenFile = secrets.Key{}, writeFile(t, "tok", "hvs.abc\x01def\n") },
			is:    []error{secrets.ErrVaultConfig},
			want:  []string{"the Vault token from", "control character at byte 7"},
		},
		{
			name:  "token file empty",
			setup: func(e env) { e.cfg.Token, e.cfg.TokenFile = secrets.Key{}, writeFile(t, "tok", "\n") },
			is:    []error{secrets.ErrVaultConfig},
			want:  []string{"file is empty"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			s := vaulttest.New(t)
			s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
			cfg := secrets.VaultConfig{Address: s.URL, Path: "secret/tailscale", Token: mustKey(t, s.RootToken)}
			ctx := context.Background()
			tc.setup(env{s, &cfg, &ctx})
			var logged strings.Builder
			cfg.Logf = func(f string, a ...any) { fmt.Fprintf(&logged, f+"\n", a...) }

			v, err := secrets.Vault(cfg)
			if err != nil {
				t.Fatalf("Vault: %v", err)
			}
			k, err := v.AuthKey(ctx)
			if err == nil {
				t.Fatalf("AuthKey succeeded; want an error")
			}
			if !k.IsZero() {
				t.Errorf("AuthKey returned a key with its error")
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			if !strings.HasPrefix(msg, "secrets: vault ") {
				t.Errorf("error %q lacks the secrets: vault prefix", msg)
			}
			for _, is := range tc.is {
				if !errors.Is(err, is) {
					t.Errorf("error does not wrap %v", is)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q", w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(msg, n) {
					t.Errorf("error contains %q", n)
				}
			}
			if tc.hint != "" && (!strings.Contains(msg, ": "+tc.hint) || strings.Contains(secrets.Message(err), tc.hint)) {
				t.Errorf("error does not end in the hint %q, split off by Message: %q", tc.hint, secrets.Message(err))
			}
			// OpenBao users run bao: a message naming the vault CLI names
			// it once.
			if strings.Contains(msg, "`vault ") && strings.Count(msg, "(or `bao`)") != 1 {
				t.Errorf("error names the vault CLI without, or more than once with, (or `bao`)")
			}
			all := append(secretsOf(s), cfg.Token.Reveal(), cfg.SecretID.Reveal(), cfg.WrappedToken.Reveal())
			assertNoSecret(t, "error", msg, all)
			assertNoSecret(t, "%+v of error", fmt.Sprintf("%+v", err), all)
			assertNoSecret(t, "log", logged.String(), all)
			if strings.Contains(v.Describe(), testAuthKey) || strings.Contains(v.Describe(), s.RootToken) {
				t.Errorf("Describe leaks a secret: %s", v.Describe())
			}
		})
	}
}

func TestVaultConfigErrors(t *testing.T) {
	clearEnv(t)
	k := mustKey(t, "hvs.some-token-value")
	cases := []struct {
		name string
		cfg  secrets.VaultConfig
		want string
	}{
		{"no path", secrets.VaultConfig{}, "Path is empty"},
		{"unknown auth", secrets.VaultConfig{Path: "secret/x", Auth: "ldap"}, `Auth "ldap" is not one of`},
		{"path with wrapped", secrets.VaultConfig{Path: "secret/x", Auth: secrets.AuthWrapped}, "Path is not used"},
		{"kv version", secrets.VaultConfig{Path: "secret/x", KVVersion: 3}, "KVVersion is 3"},
		{"mount without version", secrets.VaultConfig{Path: "secret/x", Mount: "secret"}, "Mount is used only with KVVersion"},
		{"negative timeout", secrets.VaultConfig{Path: "secret/x", Timeout: -1}, "Timeout is negative"},
		{"token and file", secrets.VaultConfig{Path: "secret/x", Token: k, TokenFile: "/f"}, "Token and TokenFile are mutually exclusive"},
		{"secret id and file", secrets.VaultConfig{Path: "secret/x", Auth: secrets.AuthAppRole, SecretID: k, SecretIDFile: "/f"}, "SecretID and SecretIDFile are mutually exclusive"},
		{"approle fields, token auth", secrets.VaultConfig{Path: "secret/x", RoleID: "r"}, `Auth is "token": set Auth to "approle"`},
		{"wrapped secret id, token auth", secrets.VaultConfig{Path: "secret/x", SecretIDWrapped: true}, `set Auth to "approle"`},
		{"kubernetes without role", secrets.VaultConfig{Path: "secret/x", Auth: secrets.AuthKubernetes}, "needs KubernetesRole"},
		{"auth mount with token", secrets.VaultConfig{Path: "secret/x", AuthMount: "x"}, "AuthMount is used only"},
		{"kv mount is the path", secrets.VaultConfig{Path: "secret", KVVersion: 2, Token: k}, ""},
		{"bad address", secrets.VaultConfig{Path: "secret/x", Address: "://nope"}, "missing protocol scheme"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := secrets.Vault(tc.cfg)
			if tc.want == "" {
				// Valid configuration, bad path: the fetch says so.
				v, verr := secrets.Vault(tc.cfg)
				if verr != nil {
					t.Fatal(verr)
				}
				_, err = v.AuthKey(context.Background())
				tc.want = "names the kv mount itself"
			}
			if !errors.Is(err, secrets.ErrVaultConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want ErrVaultConfig with %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), k.Reveal()) {
				t.Errorf("error leaks the token")
			}
		})
	}
}

func TestVaultBadEnvironment(t *testing.T) {
	clearEnv(t)
	t.Setenv("VAULT_SKIP_VERIFY", "perhaps")
	_, err := secrets.Vault(secrets.VaultConfig{Path: "secret/x"})
	if !errors.Is(err, secrets.ErrVaultConfig) || !strings.Contains(err.Error(), "VAULT_SKIP_VERIFY") {
		t.Errorf("error %v; want ErrVaultConfig naming VAULT_SKIP_VERIFY", err)
	}
}

func ExampleVault() {
	v, err := secrets.Vault(secrets.VaultConfig{
		Address: "https://vault.example.com:8200",
		Path:    "secret/tailscale",
		Auth:    secrets.AuthAppRole,
		RoleID:  "3f1c2a4e-…",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(v.Describe())
	// Output: vault https://vault.example.com:8200 secret/tailscale#authkey (kv auto, approle)
}

// TestVaultBAOVariables: OpenBao's names (BAO_ADDR, BAO_TOKEN,
// BAO_NAMESPACE, BAO_CACERT, BAO_CLIENT_TIMEOUT) are read when their
// VAULT_ twins are unset; a VAULT_ variable, set, wins.
func TestVaultBAOVariables(t *testing.T) {
	clearEnv(t)
	s := vaulttest.NewTLS(t)
	s.AddNamespace("team1")
	s.PutKV("team1/secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	ca := writeFile(t, "ca.pem", string(s.CACertPEM()))
	t.Setenv("BAO_ADDR", s.URL)
	t.Setenv("BAO_TOKEN", s.RootToken)
	t.Setenv("BAO_NAMESPACE", "team1")
	t.Setenv("BAO_CACERT", ca)
	v := newVault(t, secrets.VaultConfig{Path: "secret/tailscale"})
	fetch(t, v)
	if d := v.Describe(); !strings.Contains(d, s.URL) || !strings.Contains(d, "team1") {
		t.Errorf("Describe = %q, want BAO_ADDR and BAO_NAMESPACE", d)
	}

	t.Run("VAULT_ wins", func(t *testing.T) {
		t.Setenv("VAULT_ADDR", "https://127.0.0.1:1")
		_, err := newVault(t, secrets.VaultConfig{Path: "secret/tailscale"}).AuthKey(context.Background())
		if !errors.Is(err, secrets.ErrVaultUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Errorf("with VAULT_ADDR set: %v, want the VAULT_ADDR address tried", err)
		}
	})
	t.Run("BAO_CLIENT_TIMEOUT", func(t *testing.T) {
		s.SetDelay(2 * time.Second)
		defer s.SetDelay(0)
		t.Setenv("BAO_CLIENT_TIMEOUT", "150ms")
		_, err := newVault(t, secrets.VaultConfig{Path: "secret/tailscale"}).AuthKey(context.Background())
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "150ms") {
			t.Errorf("with BAO_CLIENT_TIMEOUT=150ms: %v, want a timeout after 150ms", err)
		}
	})
	t.Run("no token", func(t *testing.T) {
		t.Setenv("BAO_TOKEN", "")
		_, err := newVault(t, secrets.VaultConfig{Path: "secret/tailscale"}).AuthKey(context.Background())
		if !errors.Is(err, secrets.ErrVaultConfig) || !strings.Contains(err.Error(), "BAO_TOKEN") {
			t.Errorf("without a token: %v, want ErrVaultConfig naming BAO_TOKEN too", err)
		}
	})
}
