package secrets

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"
)

// VaultAuth is how a [VaultSource] gets the Vault token it reads with.
type VaultAuth string

const (
	// AuthToken uses a token the user supplies: VaultConfig.Token, else
	// the file VaultConfig.TokenFile, else VAULT_TOKEN. It is not revoked.
	AuthToken VaultAuth = "token"
	// AuthAppRole logs in with a role_id and a secret_id at
	// auth/<AuthMount>/login (AuthMount "approle" by default).
	AuthAppRole VaultAuth = "approle"
	// AuthKubernetes logs in with the pod's service account token at
	// auth/<AuthMount>/login (AuthMount "kubernetes" by default).
	AuthKubernetes VaultAuth = "kubernetes"
	// AuthWrapped neither logs in nor reads a path: the auth key arrives
	// inside a single-use response-wrapping token (VaultConfig.WrappedToken),
	// which is unwrapped, and Field is read from what it wrapped.
	AuthWrapped VaultAuth = "wrapped"
)

// Environment variables that [VaultConfig]'s credential fields fall back
// to. They are tsconnect's own names; vault/api reads none of them, and
// [ScrubEnv] removes them.
const (
	EnvVaultRoleID       = "TSCONNECT_VAULT_ROLE_ID"
	EnvVaultSecretID     = "TSCONNECT_VAULT_SECRET_ID"
	EnvVaultWrappedToken = "TSCONNECT_VAULT_WRAPPED_TOKEN"
)

// Defaults for empty [VaultConfig] fields.
const (
	DefaultVaultField        = "authkey"
	DefaultVaultTimeout      = 10 * time.Second
	DefaultKubernetesJWTFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// VaultConfig says how to read the auth key from Vault or OpenBao. Only
// Path is required (and with AuthWrapped not even that). Connection
// settings left empty come from vault/api's VAULT_* variables, read once
// by [Vault]; credentials are read, from fields, files or the
// environment, each time the key is fetched, so rotated files are used.
//
// Fields holding a credential are of type [Key], which never prints.
type VaultConfig struct {
	// Address is Vault's URL, e.g. "https://vault.example.com:8200".
	// Empty means VAULT_AGENT_ADDR, else VAULT_ADDR, else
	// https://127.0.0.1:8200.
	Address string
	// Namespace is the Vault Enterprise or OpenBao namespace. Empty means
	// VAULT_NAMESPACE, else BAO_NAMESPACE, else none (the root
	// namespace). A namespace can also be written at the front of Path
	// ("team1/secret/tailscale"), as the Vault API allows.
	Namespace string
	// CACert is a PEM file of CAs to trust for Vault's certificate. Empty
	// means VAULT_CACERT (or VAULT_CAPATH), else the system's roots.
	CACert string
	// ClientCert and ClientKey are PEM files for TLS client
	// authentication. Empty means VAULT_CLIENT_CERT and VAULT_CLIENT_KEY.
	ClientCert, ClientKey string
	// TLSServerName is the name to verify Vault's certificate against.
	// Empty means VAULT_TLS_SERVER_NAME, else the host in Address.
	TLSServerName string
	// Timeout bounds each request to Vault. Zero means
	// VAULT_CLIENT_TIMEOUT, else [DefaultVaultTimeout]. The context given
	// to AuthKey can only shorten it.
	Timeout time.Duration

	// Path is the KV secret holding the key, written as the Vault UI and
	// `vault kv get` show it: "secret/tailscale", not
	// "secret/data/tailscale" (though that works too).
	Path string
	// Field is the secret's field holding the key. Empty means "authkey".
	Field string
	// KVVersion is the KV engine version: 0 (the default) asks Vault
	// which engine serves Path (GET sys/internal/ui/mounts/<Path>), as
	// `vault kv get` does; 1 or 2 skips that lookup. The lookup needs no
	// policy of its own on Vault or OpenBao: the path is unauthenticated
	// and answers for a mount on which the token has any capability.
	KVVersion int
	// Mount is the KV engine's mount path, needed only with KVVersion 2
	// when the mount is more than one segment deep ("kv/team"). Empty
	// means the first segment of Path.
	Mount string

	// Auth is how to get a token. Empty means AuthToken.
	Auth VaultAuth
	// AuthMount is where the AppRole or Kubernetes auth method is
	// mounted. Empty means "approle" or "kubernetes".
	AuthMount string

	// Token (or TokenFile, a file holding it) is the token for AuthToken.
	// Neither set means VAULT_TOKEN.
	Token     Key
	TokenFile string

	// RoleID is the AppRole role_id. Empty means TSCONNECT_VAULT_ROLE_ID.
	RoleID string
	// SecretID (or SecretIDFile, a file holding it) is the AppRole
	// secret_id. Neither set means TSCONNECT_VAULT_SECRET_ID.
	SecretID     Key
	SecretIDFile string
	// SecretIDWrapped says the secret_id given is a response-wrapping
	// token (from `vault write -wrap-ttl=5m -f
	// auth/approle/role/<role>/secret-id`), to unwrap before logging in.
	// A wrapping token works once: the next start needs a new one.
	SecretIDWrapped bool

	// KubernetesRole is the Vault role bound to the pod's service
	// account; required for AuthKubernetes.
	KubernetesRole string
	// KubernetesJWTFile is the service account token. Empty means
	// [DefaultKubernetesJWTFile].
	KubernetesJWTFile string

	// WrappedToken (or WrappedTokenFile, a file holding it) is the
	// response-wrapping token for AuthWrapped, from e.g. `vault kv get
	// -wrap-ttl=5m secret/tailscale` or `vault write sys/wrapping/wrap
	// authkey=…`. Neither set means TSCONNECT_VAULT_WRAPPED_TOKEN.
	WrappedToken     Key
	WrappedTokenFile string

	// Logf, if not nil, receives what is worth a warning but does not
	// fail the fetch: a login token that could not be revoked. It never
	// receives a secret.
	Logf func(format string, args ...any) `json:"-"`
}

// VaultSource is a [Source] reading the auth key from Vault. Make one
// with [Vault]. It is safe for concurrent use.
type VaultSource struct {
	cfg     VaultConfig // validated, defaults filled in
	conf    *api.Config // shared by the clients made for each fetch
	addr    string      // the address requests go to, for messages
	ns      string
	nsEnv   string // the variable ns came from; "" for VaultConfig.Namespace
	timeout time.Duration
	kv      atomic.Int32 // KV version set or last detected; 0 unknown
}

// Vault checks cfg and returns a source reading the key it describes. It
// reads the VAULT_* connection variables now, through vault/api's
// DefaultConfig, and contacts nothing: errors are about the configuration
// (they wrap [ErrVaultConfig]).
func Vault(cfg VaultConfig) (*VaultSource, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("secrets: vault: %w: %w", ErrVaultConfig, err)
	}
	conf := api.DefaultConfig()
	if conf.Error != nil {
		return nil, fmt.Errorf("secrets: vault: %w: the VAULT_* environment: %v", ErrVaultConfig, conf.Error)
	}
	if err := baoFallbacks(conf); err != nil {
		return nil, fmt.Errorf("secrets: vault: %w: the BAO_* environment: %v", ErrVaultConfig, err)
	}
	if cfg.Address != "" {
		conf.Address = cfg.Address
		// vault/api prefers AgentAddress over Address; an explicit
		// Address must win over VAULT_AGENT_ADDR too.
		conf.AgentAddress = ""
	}
	if cfg.CACert != "" || cfg.ClientCert != "" || cfg.ClientKey != "" || cfg.TLSServerName != "" {
		t := &api.TLSConfig{CACert: cfg.CACert, TLSServerName: cfg.TLSServerName}
		if cfg.ClientCert != "" || cfg.ClientKey != "" {
			t.ClientCert = cmp.Or(cfg.ClientCert, vaultEnv(api.EnvVaultClientCert))
			t.ClientKey = cmp.Or(cfg.ClientKey, vaultEnv(api.EnvVaultClientKey))
		}
		if err := conf.ConfigureTLS(t); err != nil {
			return nil, fmt.Errorf("secrets: vault: %w: TLS settings: %v", ErrVaultConfig, err)
		}
	}

	timeout := DefaultVaultTimeout
	switch {
	case cfg.Timeout > 0:
		timeout = cfg.Timeout
	case vaultEnv(api.EnvVaultClientTimeout) != "":
		timeout = conf.Timeout
	}
	// Each request gets its own deadline in call, which also covers the
	// raw reads that vault/api's Timeout does not apply to.
	conf.Timeout = 0
	// vault/api retries 5xx twice by default, a second or more apart: a
	// sealed Vault (503) would take seconds to report. Fail at once
	// unless VAULT_MAX_RETRIES asks otherwise.
	if vaultEnv(api.EnvVaultMaxRetries) == "" {
		conf.MaxRetries = 0
	}

	c, err := api.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("secrets: vault: %w: %v", ErrVaultConfig, err)
	}
	v := &VaultSource{
		cfg:     cfg,
		conf:    conf,
		addr:    c.Address(),
		ns:      cfg.Namespace,
		timeout: timeout,
	}
	for _, name := range []string{api.EnvVaultNamespace, baoName(api.EnvVaultNamespace)} {
		if v.ns == "" {
			v.ns, v.nsEnv = os.Getenv(name), name
		}
	}
	v.kv.Store(int32(cfg.KVVersion))
	return v, nil
}

// OpenBao's CLI reads BAO_ADDR, BAO_TOKEN and the rest where Vault's reads
// VAULT_*; tsconnect reads each BAO_ variable when its VAULT_ twin is
// unset or empty (a VAULT_ variable, set, wins).
const baoPrefix = "BAO_"

// baoName returns the OpenBao twin of a VAULT_ variable, "" for others.
func baoName(vaultVar string) string {
	if rest, ok := strings.CutPrefix(vaultVar, "VAULT_"); ok {
		return baoPrefix + rest
	}
	return ""
}

// vaultEnv returns the VAULT_ variable's value or, unset or empty, its
// BAO_ twin's.
func vaultEnv(name string) string { return cmp.Or(os.Getenv(name), os.Getenv(baoName(name))) }

// baoFallbacks applies to conf, which api.DefaultConfig made from the
// VAULT_* variables, the BAO_* twins of those that are unset: the address,
// TLS settings, request timeout and retries.
func baoFallbacks(conf *api.Config) error {
	unset := func(name string) bool { return os.Getenv(name) == "" } // as vault/api reads them
	bao := func(name string) string {
		if unset(name) {
			return os.Getenv(baoName(name))
		}
		return ""
	}
	if unset(api.EnvVaultAddress) && unset(api.EnvVaultAgentAddr) {
		if a := os.Getenv(baoName(api.EnvVaultAddress)); a != "" {
			conf.Address = a
		}
	}
	t := &api.TLSConfig{
		CACert:        bao(api.EnvVaultCACert),
		CAPath:        bao(api.EnvVaultCAPath),
		ClientCert:    bao(api.EnvVaultClientCert),
		ClientKey:     bao(api.EnvVaultClientKey),
		TLSServerName: bao(api.EnvVaultTLSServerName),
	}
	set := t.CACert != "" || t.CAPath != "" || t.ClientCert != "" || t.ClientKey != "" || t.TLSServerName != ""
	if v := bao(api.EnvVaultSkipVerify); v != "" {
		skip, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s: %v", baoName(api.EnvVaultSkipVerify), err)
		}
		t.Insecure, set = skip, true
	}
	if set {
		if err := conf.ConfigureTLS(t); err != nil {
			return err
		}
	}
	if v := bao(api.EnvVaultClientTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if n, aerr := strconv.Atoi(v); err != nil && aerr == nil {
			d, err = time.Duration(n)*time.Second, nil // seconds, as vault reads it
		}
		if err != nil {
			return fmt.Errorf("%s: %v", baoName(api.EnvVaultClientTimeout), err)
		}
		conf.Timeout = d
	}
	if v := bao(api.EnvVaultMaxRetries); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%s: %v", baoName(api.EnvVaultMaxRetries), err)
		}
		conf.MaxRetries = n
	}
	return nil
}

// check validates c and fills in defaults.
func (c *VaultConfig) check() error {
	if c.Auth == "" {
		c.Auth = AuthToken
	}
	switch c.Auth {
	case AuthToken, AuthAppRole, AuthKubernetes, AuthWrapped:
	default:
		return fmt.Errorf("Auth %q is not one of %q, %q, %q or %q", c.Auth, AuthToken, AuthAppRole, AuthKubernetes, AuthWrapped)
	}
	c.Path = strings.Trim(c.Path, "/")
	switch {
	case c.Auth == AuthWrapped && c.Path != "":
		return fmt.Errorf("Path is not used with Auth %q, where the wrapping token carries the key itself: leave it empty", c.Auth)
	case c.Auth != AuthWrapped && c.Path == "":
		return fmt.Errorf("Path is empty: set it to the KV secret holding the key, as %s names it, e.g. secret/tailscale", cli("kv get"))
	case c.KVVersion < 0 || c.KVVersion > 2:
		return fmt.Errorf("KVVersion is %d: use 0 to detect, 1 or 2", c.KVVersion)
	case c.Mount != "" && c.KVVersion == 0:
		return fmt.Errorf("Mount is used only with KVVersion 1 or 2: leave it empty to detect the mount, or set KVVersion")
	case c.Timeout < 0:
		return fmt.Errorf("Timeout is negative")
	}
	for _, p := range []struct {
		a, b string
		both bool
	}{
		{"Token", "TokenFile", !c.Token.IsZero() && c.TokenFile != ""},
		{"SecretID", "SecretIDFile", !c.SecretID.IsZero() && c.SecretIDFile != ""},
		{"WrappedToken", "WrappedTokenFile", !c.WrappedToken.IsZero() && c.WrappedTokenFile != ""},
	} {
		if p.both {
			return fmt.Errorf("%s and %s are mutually exclusive", p.a, p.b)
		}
	}
	// Settings for another method are a sign that Auth was forgotten.
	for _, m := range []struct {
		auth VaultAuth
		set  bool
		what string
	}{
		{AuthToken, !c.Token.IsZero() || c.TokenFile != "", "Token or TokenFile"},
		{AuthAppRole, c.RoleID != "" || !c.SecretID.IsZero() || c.SecretIDFile != "" || c.SecretIDWrapped, "RoleID, SecretID, SecretIDFile or SecretIDWrapped"},
		{AuthKubernetes, c.KubernetesRole != "" || c.KubernetesJWTFile != "", "KubernetesRole or KubernetesJWTFile"},
		{AuthWrapped, !c.WrappedToken.IsZero() || c.WrappedTokenFile != "", "WrappedToken or WrappedTokenFile"},
	} {
		if m.set && c.Auth != m.auth {
			return fmt.Errorf("%s is set but Auth is %q: set Auth to %q", m.what, c.Auth, m.auth)
		}
	}
	if c.Auth == AuthKubernetes && c.KubernetesRole == "" {
		return fmt.Errorf("Auth %q needs KubernetesRole, the Vault role bound to this pod's service account", c.Auth)
	}
	if c.AuthMount != "" && c.Auth != AuthAppRole && c.Auth != AuthKubernetes {
		return fmt.Errorf("AuthMount is used only with Auth %q or %q", AuthAppRole, AuthKubernetes)
	}
	switch c.Auth {
	case AuthAppRole:
		c.AuthMount = cmp.Or(strings.Trim(c.AuthMount, "/"), "approle")
	case AuthKubernetes:
		c.AuthMount = cmp.Or(strings.Trim(c.AuthMount, "/"), "kubernetes")
		c.KubernetesJWTFile = cmp.Or(c.KubernetesJWTFile, DefaultKubernetesJWTFile)
	}
	c.Mount = strings.Trim(c.Mount, "/")
	c.Field = cmp.Or(c.Field, DefaultVaultField)
	return nil
}

// Describe says where the key comes from, e.g.
// "vault https://vault:8200 secret/tailscale#authkey (kv v2, approle)".
// The KV version reads "kv auto" until a fetch has detected it.
func (v *VaultSource) Describe() string {
	var b strings.Builder
	b.WriteString("vault ")
	b.WriteString(v.addr)
	if v.ns != "" {
		fmt.Fprintf(&b, " namespace %s", v.ns)
	}
	if v.cfg.Auth == AuthWrapped {
		fmt.Fprintf(&b, " wrapped token#%s", v.cfg.Field)
		return b.String()
	}
	kv := "kv auto"
	if n := v.kv.Load(); n != 0 {
		kv = fmt.Sprintf("kv v%d", n)
	}
	fmt.Fprintf(&b, " %s#%s (%s, %s)", v.cfg.Path, v.cfg.Field, kv, v.cfg.Auth)
	return b.String()
}

// AuthKey fetches the key: it gets a token (or unwraps the wrapped key),
// finds the KV engine, reads the field, and revokes the token if it
// logged in for it, whether or not the read worked. Each request is
// bounded by the configured timeout and by ctx. Errors wrap this
// package's Err* sentinels and never contain a secret.
func (v *VaultSource) AuthKey(ctx context.Context) (Key, error) {
	r := &vaultRun{v: v}
	k, err := r.authKey(ctx)
	// One fetch per start: keep no idle connection (and its goroutines).
	v.conf.HttpClient.CloseIdleConnections()
	if err != nil {
		return Key{}, scrub(err, r.secrets)
	}
	return k, nil
}

// vaultRun is the state of one AuthKey call.
type vaultRun struct {
	v      *VaultSource
	client *api.Client
	// auth says where the token came from, for messages: "the token from
	// VAULT_TOKEN", "the token from approle login at auth/approle".
	auth string
	// secrets are the credential values seen so far, scrubbed from every
	// error and log message.
	secrets []string
}

func (r *vaultRun) secret(s string) {
	if s != "" && !slices.Contains(r.secrets, s) {
		r.secrets = append(r.secrets, s)
	}
}

// errf formats an error prefixed with the package and Vault's address.
func (r *vaultRun) errf(format string, args ...any) error {
	return fmt.Errorf("secrets: vault %s: "+format, append([]any{r.v.addr}, args...)...)
}

// hintf is errf with advice for library users appended (see Message).
func (r *vaultRun) hintf(hint, format string, args ...any) error {
	return &hintedError{err: r.errf(format, args...), hint: hint}
}

func (r *vaultRun) logf(format string, args ...any) {
	if r.v.cfg.Logf != nil {
		r.v.cfg.Logf(format, args...)
	}
}

func (r *vaultRun) authKey(ctx context.Context) (Key, error) {
	// A client per fetch: the token changes as the fetch goes on.
	c, err := api.NewClient(r.v.conf)
	if err != nil {
		return Key{}, r.errf("%w: %v", ErrVaultConfig, err)
	}
	// vault/api would wrap every response if VAULT_WRAP_TTL is set.
	c.SetWrappingLookupFunc(func(operation, path string) string { return "" })
	if r.v.ns != "" { // vault/api reads VAULT_NAMESPACE itself, not BAO_NAMESPACE
		c.SetNamespace(r.v.ns)
	}
	r.client = c

	if r.v.cfg.Auth == AuthWrapped {
		return r.readWrapped(ctx)
	}
	token, loggedIn, err := r.token(ctx)
	if err != nil {
		return Key{}, err
	}
	if loggedIn {
		defer r.revoke(ctx, token)
	}
	return r.readKV(ctx, token)
}

// credential returns a secret from a field, else a file, else an
// environment variable, and says which.
func (r *vaultRun) credential(k Key, file, env, what, field string) (value, from string, err error) {
	switch {
	case !k.IsZero():
		value, from = k.Reveal(), "VaultConfig."+field
	case file != "":
		s, err := readSecretFile(file)
		if err != nil {
			return "", "", r.errf("%w: %s file %s: %w", ErrVaultConfig, what, file, err)
		}
		value, from = s, file
	case strings.TrimSpace(os.Getenv(env)) != "":
		value, from = strings.TrimSpace(os.Getenv(env)), env
	case baoName(env) != "" && strings.TrimSpace(os.Getenv(baoName(env))) != "":
		value, from = strings.TrimSpace(os.Getenv(baoName(env))), baoName(env)
	default:
		vars := env
		if b := baoName(env); b != "" {
			vars += " (or " + b + ")"
		}
		return "", "", r.hintf(fmt.Sprintf("set VaultConfig.%s or %sFile, or %s", field, field, vars), "%w: no %s", ErrVaultConfig, what)
	}
	r.secret(value)
	// vault/api refuses such a token with an error that would read like a
	// connection failure; say what is wrong instead.
	if _, err := newKey(value); err != nil {
		return "", "", r.errf("%w: the %s from %s: %w", ErrVaultConfig, what, from, err)
	}
	return value, from, nil
}

// token returns the token to read with, and whether it came from a login
// (and so must be revoked).
func (r *vaultRun) token(ctx context.Context) (string, bool, error) {
	cfg := &r.v.cfg
	switch cfg.Auth {
	case AuthAppRole:
		roleID, roleFrom := cfg.RoleID, "VaultConfig.RoleID"
		if roleID == "" {
			roleID, roleFrom = strings.TrimSpace(os.Getenv(EnvVaultRoleID)), EnvVaultRoleID
		}
		if roleID == "" {
			return "", false, r.hintf("set VaultConfig.RoleID or "+EnvVaultRoleID, "%w: AppRole login needs a role_id", ErrVaultConfig)
		}
		r.secret(roleID)
		secretID, secretFrom, err := r.credential(cfg.SecretID, cfg.SecretIDFile, EnvVaultSecretID, "AppRole secret_id", "SecretID")
		if err != nil {
			return "", false, err
		}
		if cfg.SecretIDWrapped {
			what := "the wrapped secret_id from " + secretFrom
			data, err := r.unwrap(ctx, secretID, what)
			if err != nil {
				return "", false, err
			}
			s, _ := data["secret_id"].(string)
			if s == "" {
				return "", false, r.errf("%w: %s wraps no secret_id (%s): wrap the answer of %s", ErrFieldMissing, what, fieldNames(data), cli("write -f auth/"+cfg.AuthMount+"/role/<role>/secret-id"))
			}
			secretID = s
			r.secret(secretID)
		}
		r.auth = "the token from approle login at auth/" + cfg.AuthMount
		tok, err := r.login(ctx, "approle", map[string]any{"role_id": roleID, "secret_id": secretID},
			fmt.Sprintf("check the role_id (from %s) and the secret_id (from %s); a secret_id expires and may be limited to a number of uses: issue a new one with %s", roleFrom, secretFrom, cli("write -f auth/"+cfg.AuthMount+"/role/<role>/secret-id")))
		return tok, tok != "", err

	case AuthKubernetes:
		jwt, err := readSecretFile(cfg.KubernetesJWTFile)
		if err != nil {
			return "", false, r.hintf("run in a pod with a service account token mounted, or set KubernetesJWTFile", "%w: service account token %s: %w", ErrVaultConfig, cfg.KubernetesJWTFile, err)
		}
		r.secret(jwt)
		r.auth = fmt.Sprintf("the token from kubernetes login as role %q at auth/%s", cfg.KubernetesRole, cfg.AuthMount)
		tok, err := r.login(ctx, "kubernetes", map[string]any{"role": cfg.KubernetesRole, "jwt": jwt},
			fmt.Sprintf("check with %s that the role exists and is bound to this pod's service account and namespace, and that %s is that service account's token", cli("read auth/"+cfg.AuthMount+"/role/"+cfg.KubernetesRole), cfg.KubernetesJWTFile))
		return tok, tok != "", err
	}

	tok, from, err := r.credential(cfg.Token, cfg.TokenFile, api.EnvVaultToken, "Vault token", "Token")
	if err != nil {
		return "", false, err
	}
	r.auth = "the token from " + from
	return tok, false, nil
}

// login logs in through the method mounted at AuthMount and returns the
// client token. hint says what to check about the credentials.
func (r *vaultRun) login(ctx context.Context, method string, body map[string]any, hint string) (string, error) {
	mount := "auth/" + r.v.cfg.AuthMount
	path := mount + "/login"
	sec, rep, err := r.apiCall(ctx, "PUT", path, "", func(ctx context.Context) (*api.Secret, error) {
		return r.client.Logical().WriteWithContext(ctx, path, body)
	})
	if err != nil {
		return "", err
	}
	switch {
	case rep.ok():
		if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
			return "", r.errf("%w: %s login at %s answered without auth.client_token", ErrMalformedResponse, method, path)
		}
		r.secret(sec.Auth.ClientToken)
		return sec.Auth.ClientToken, nil
	case rep.status == 400:
		return "", r.hintf(hint, "%w: %s login at %s refused (%s)", ErrLoginFailed, method, path, rep.messages())
	case rep.status == 403 && method == "approle":
		// AppRole refuses bad credentials with a 400: its 403 is the
		// one Vault gives for a login at a path under no auth mount.
		return "", r.hintf("check "+cli("auth list")+" and set AuthMount to the AppRole method's path",
			"%w: %w: approle login at %s refused (%s): no auth method is mounted at %s (a wrong role_id or secret_id gets a 400)", ErrLoginFailed, ErrPermissionDenied, path, rep.messages(), mount)
	case rep.status == 403:
		return "", r.hintf(hint+", then that `vault auth list` shows the method at "+mount+" (AuthMount)",
			"%w: %w: %s login at %s refused (%s): Vault rejected the service account token, or no auth method is mounted at %s", ErrLoginFailed, ErrPermissionDenied, method, path, rep.messages(), mount)
	}
	return "", r.unexpected(rep, "PUT", path)
}

// unwrap unwraps a response-wrapping token and returns the wrapped data.
func (r *vaultRun) unwrap(ctx context.Context, token, what string) (map[string]any, error) {
	r.secret(token)
	// The wrapping token is the request's token, and there is no body.
	// Not vault/api's Unwrap: it takes a 404 for an old-style wrapping
	// token and reads cubbyhole/response instead, losing Vault's answer.
	rep, err := r.call(ctx, "PUT", "sys/wrapping/unwrap", token, nil)
	if err != nil {
		return nil, err
	}
	switch {
	case rep.ok():
		if rep.Data == nil {
			return nil, r.errf("%w: %s wrapped a response without data", ErrFieldMissing, what)
		}
		return rep.Data, nil
	case rep.status == 400 || rep.status == 403:
		return nil, r.errf("%w: cannot unwrap %s (%s): a wrapping token works once and expires (5 minutes by default), so issue a new one; if tsconnect never unwrapped this one, someone else may have: treat what it wrapped as exposed", ErrWrappingToken, what, rep.messages())
	}
	return nil, r.unexpected(rep, "PUT", "sys/wrapping/unwrap")
}

// revoke revokes a token this run logged in for. It runs even when ctx is
// done (the token should not outlive a failed start), within the request
// timeout, and only logs a failure: the key, if read, is still good.
func (r *vaultRun) revoke(ctx context.Context, token string) {
	const path = "auth/token/revoke-self"
	_, rep, err := r.apiCall(context.WithoutCancel(ctx), "PUT", path, token, func(ctx context.Context) (*api.Secret, error) {
		return nil, r.client.Auth().Token().RevokeSelfWithContext(ctx, "")
	})
	if err == nil && rep.ok() {
		return
	}
	if err == nil {
		err = r.unexpected(rep, "PUT", path)
	}
	r.logf("%v (the login token stays valid until its TTL ends)", scrub(err, r.secrets))
}

func (r *vaultRun) readWrapped(ctx context.Context) (Key, error) {
	cfg := &r.v.cfg
	wt, from, err := r.credential(cfg.WrappedToken, cfg.WrappedTokenFile, EnvVaultWrappedToken, "wrapping token", "WrappedToken")
	if err != nil {
		return Key{}, err
	}
	r.auth = "the wrapping token from " + from
	data, err := r.unwrap(ctx, wt, "the wrapping token from "+from)
	if err != nil {
		return Key{}, err
	}
	// `vault kv get -wrap-ttl` of a KV v2 secret wraps the whole read,
	// which nests the fields under "data" next to "metadata".
	if _, ok := data[cfg.Field]; !ok {
		if inner, ok := data["data"].(map[string]any); ok && data["metadata"] != nil {
			data = inner
		}
	}
	return r.field(data, "the response wrapped in the token from "+from)
}

// kvTarget is where and how the KV secret is read.
type kvTarget struct {
	version  int
	how      string // "detected", "set by KVVersion", …
	mount    string // without slashes; "" if unknown
	readPath string // the API path to GET
}

func (t kvTarget) String() string {
	if t.version == 2 {
		return fmt.Sprintf("kv v2 %s, read as %s", t.how, t.readPath)
	}
	return fmt.Sprintf("kv v1 %s", t.how)
}

// kvTarget finds the mount and version serving Path, as the Vault CLI's
// kvPreflightVersionRequest does, unless KVVersion says.
func (r *vaultRun) kvTarget(ctx context.Context, token string) (kvTarget, error) {
	cfg := &r.v.cfg
	p := cfg.Path
	switch cfg.KVVersion {
	case 1:
		return kvTarget{version: 1, how: "set by KVVersion", mount: cfg.Mount, readPath: p}, nil
	case 2:
		mount := cmp.Or(cfg.Mount, firstSegment(p))
		rp, err := kv2DataPath(mount, p)
		if err != nil {
			return kvTarget{}, r.errf("%w: %w", ErrVaultConfig, err)
		}
		return kvTarget{version: 2, how: "set by KVVersion", mount: mount, readPath: rp}, nil
	}

	pre := "sys/internal/ui/mounts/" + p
	rep, err := r.call(ctx, "GET", pre, token, nil)
	if err != nil {
		return kvTarget{}, err
	}
	switch {
	case rep.status == 404:
		// Vault before 0.10 has no such endpoint, and only KV v1.
		return kvTarget{version: 1, how: "assumed (Vault has no sys/internal/ui/mounts)", readPath: p}, nil
	case rep.badToken():
		return kvTarget{}, r.invalidToken(rep, "the KV version lookup, GET "+pre)
	case rep.status == 403:
		return kvTarget{}, r.hintf("check "+cli("secrets list")+" and the token's policies, or set KVVersion to skip this lookup",
			"%w: Vault would not say which secrets engine serves %s (GET %s, %s): nothing is mounted there%s, or %s has no access to anything on that mount", ErrPermissionDenied, p, pre, rep.messages(), r.pathNamespace(), r.auth)
	case !rep.ok():
		return kvTarget{}, r.unexpected(rep, "GET", pre)
	}
	mount, _ := rep.Data["path"].(string)
	mount = strings.Trim(mount, "/")
	typ, _ := rep.Data["type"].(string)
	if typ != "kv" && typ != "generic" {
		return kvTarget{}, r.hintf("point Path at a KV secret", "%w: %s is served by a %q secrets engine, not kv", ErrVaultConfig, p, typ)
	}
	version := 1
	if opts, ok := rep.Data["options"].(map[string]any); ok {
		switch v := opts["version"]; v {
		case nil, "", "1":
		case "2":
			version = 2
		default:
			return kvTarget{}, r.hintf("set KVVersion", "%w: the kv mount %s/ reports version %v, which this version of tsconnect does not know", ErrMalformedResponse, mount, v)
		}
	}
	r.v.kv.Store(int32(version))
	if version == 1 {
		return kvTarget{version: 1, how: "detected", mount: mount, readPath: p}, nil
	}
	rp, err := kv2DataPath(mount, p)
	if err != nil {
		return kvTarget{}, r.errf("%w: %w", ErrVaultConfig, err)
	}
	return kvTarget{version: 2, how: "detected", mount: mount, readPath: rp}, nil
}

func (r *vaultRun) readKV(ctx context.Context, token string) (Key, error) {
	t, err := r.kvTarget(ctx, token)
	if err != nil {
		return Key{}, err
	}
	p := r.v.cfg.Path
	rep, err := r.call(ctx, "GET", t.readPath, token, nil)
	if err != nil {
		return Key{}, err
	}
	switch {
	case rep.ok():
		data := rep.Data
		if t.version == 2 {
			inner, ok := data["data"].(map[string]any)
			if !ok && data["data"] != nil {
				return Key{}, r.hintf("is the mount really kv v2? Set KVVersion to 1 if not", "%w: GET %s: data.data is a %s, not an object", ErrMalformedResponse, t.readPath, jsonType(data["data"]))
			}
			data = inner
		}
		if data == nil {
			return Key{}, r.errf("%w: %s (%s) holds no data", ErrNotFound, p, t)
		}
		return r.field(data, p)
	case rep.badToken():
		return Key{}, r.invalidToken(rep, "reading "+p+", GET "+t.readPath)
	case rep.status == 403:
		return Key{}, r.hintf("check with "+cli("token capabilities "+t.readPath),
			"%w: reading %s (%s) with %s (%s): its policies do not grant \"read\" on %s", ErrPermissionDenied, p, t, r.auth, rep.messages(), t.readPath)
	case rep.status == 404:
		return Key{}, r.notFound(rep, t)
	}
	return Key{}, r.unexpected(rep, "GET", t.readPath)
}

// invalidToken explains a 403 in the plain form (see badToken) to what,
// the request.
func (r *vaultRun) invalidToken(rep *vaultReply, what string) error {
	return r.hintf("check it with "+cli("token lookup")+", or use a new one",
		"%w: Vault refused %s for %s (%s): the token is likely invalid, expired or revoked", ErrPermissionDenied, r.auth, what, rep.messages())
}

// pathNamespace is the other reading of a Path at which Vault finds no
// mount: a namespace written at its front that does not exist is, to
// Vault, an ordinary path. It is "" for a Path too short to start with a
// namespace, a mount and a secret.
func (r *vaultRun) pathNamespace() string {
	first, rest, _ := strings.Cut(r.v.cfg.Path, "/")
	if !strings.Contains(rest, "/") {
		return ""
	}
	ns := strings.TrimPrefix(strings.Trim(r.v.ns, "/")+"/"+first, "/")
	return fmt.Sprintf(", or namespace %q (from the path) not found", ns)
}

func (r *vaultRun) notFound(rep *vaultReply, t kvTarget) error {
	p := r.v.cfg.Path
	if rep.says("no handler for route") {
		return r.hintf("check its first segment against "+cli("secrets list"),
			"%w: no secrets engine is mounted where %s points%s (%s)", ErrNoMount, t.readPath, r.pathNamespace(), rep.messages())
	}
	for _, w := range rep.Warnings {
		if strings.Contains(w, "Invalid path for a versioned K/V") {
			return r.hintf("set KVVersion to 2, or to 0 to detect it", "%w: %s was read as kv v1 (%s), but its mount is kv v2", ErrNotFound, p, t.how)
		}
	}
	if meta, ok := rep.Data["metadata"].(map[string]any); ok {
		// A destroyed version is gone for good, deleted or not before.
		d, _ := meta["deletion_time"].(string)
		switch {
		case meta["destroyed"] == true:
			return r.hintf(fmt.Sprintf("write the key again with %s", cli(fmt.Sprintf("kv put %s %s=…", p, r.v.cfg.Field))),
				"%w: the latest version (%v) of %s (%s) is destroyed", ErrNotFound, meta["version"], p, t)
		case d != "":
			return r.hintf(fmt.Sprintf("restore it with %s, or write the key again", cli(fmt.Sprintf("kv undelete -versions=%v %s", meta["version"], p))),
				"%w: the latest version (%v) of %s (%s) was deleted at %s", ErrNotFound, meta["version"], p, t, d)
		}
	}
	hint := fmt.Sprintf("check Path: %s should show the key", cli("kv get "+p))
	if r.v.cfg.KVVersion != 0 {
		other := 3 - t.version
		hint += fmt.Sprintf("; if the mount is kv v%d, set KVVersion to %d, or to 0 to detect it", other, other)
	}
	return r.hintf(hint, "%w: nothing at %s (%s)", ErrNotFound, p, t)
}

// field returns the configured field of data as a Key.
func (r *vaultRun) field(data map[string]any, where string) (Key, error) {
	f := r.v.cfg.Field
	raw, ok := data[f]
	if !ok {
		return Key{}, r.hintf(fmt.Sprintf("set Field to the one holding the auth key, or store the key as %q", f), "%w: %s has no field %q (%s)", ErrFieldMissing, where, f, fieldNames(data))
	}
	s, ok := raw.(string)
	if !ok {
		return Key{}, r.hintf("store the auth key as a string", "%w: field %q of %s is a %s", ErrFieldNotString, f, where, jsonType(raw))
	}
	k, err := newKey(s)
	if err != nil {
		return Key{}, r.errf("field %q of %s: %w", f, where, err)
	}
	return k, nil
}

// kv2DataPath turns a KV v2 path as users write it (secret/x) into the
// API path (secret/data/x). A path already holding the data/ segment is
// kept, as the Vault CLI does. mount may carry namespace segments the path
// lacks ("ns1/secret" for "secret/x"), which are dropped.
func kv2DataPath(mount, p string) (string, error) {
	m := mount
	for {
		if rest, ok := strings.CutPrefix(p, m); ok && (rest == "" || rest[0] == '/') {
			rest = strings.TrimPrefix(rest, "/")
			switch {
			case rest == "":
				return "", fmt.Errorf("Path %q names the kv mount itself: add the secret's name, e.g. %s/tailscale", p, m)
			case strings.HasPrefix(rest, "data/"):
				return m + "/" + rest, nil
			}
			return m + "/data/" + rest, nil
		}
		_, after, ok := strings.Cut(m, "/")
		if !ok {
			return "", fmt.Errorf("Path %q is not on the kv mount %q", p, mount+"/")
		}
		m = after
	}
}

func firstSegment(p string) string {
	s, _, _ := strings.Cut(p, "/")
	return s
}

// fieldNames lists the names, never the values, of a secret's fields.
func fieldNames(data map[string]any) string {
	if len(data) == 0 {
		return "it has no fields"
	}
	names := make([]string, 0, len(data))
	for k := range data {
		names = append(names, fmt.Sprintf("%q", k))
	}
	slices.Sort(names)
	return "its fields are " + strings.Join(names, ", ")
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}
