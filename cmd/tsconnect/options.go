package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/dnsfilter"
	"github.com/tsconnect/tsconnect/secrets"
	"github.com/tsconnect/tsconnect/socks"
)

// joinOpts are the flags of every subcommand that joins the tailnet (run,
// up, check): where to join, as what, with which key, and the allowlist.
type joinOpts struct {
	controlURL     string
	tags           string
	hostname       string
	hostnamePrefix string
	timeout        time.Duration
	dialTimeout    time.Duration
	allow          listFlag
	policy         string
	authKeyFile    string
	verbose        bool
	vault          vaultOpts
}

// vaultOpts map onto secrets.VaultConfig. There is deliberately no flag for
// a token, secret_id or wrapping token: only files and the environment.
type vaultOpts struct {
	path, field, mount      string
	kvVersion               int
	addr, namespace, cacert string
	auth, authMount         string
	tokenFile               string
	roleID, secretIDFile    string
	secretIDWrapped         bool
	k8sRole, k8sJWTFile     string
	wrappedTokenFile        string
	timeout                 time.Duration
}

func addJoinFlags(fs *flagSet) *joinOpts {
	o := new(joinOpts)
	fs.StringVar(&o.controlURL, "control-url", "", "coordination server `URL`, e.g. https://headscale.example.com;\nempty: $TS_CONTROL_URL, else Tailscale's")
	fs.StringVar(&o.tags, "tags", "", "ACL `tags` to advertise, comma-separated (tag:sandbox); the key must\nbe allowed to carry them. Empty: the key's own tags")
	fs.StringVar(&o.hostname, "hostname", "", "exact node `name`; default <prefix>-<uuid>")
	fs.StringVar(&o.hostnamePrefix, "hostname-prefix", connector.DefaultHostnamePrefix, "node name `prefix`: the node is named <prefix>-<uuid>")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up joining after this `duration`")
	fs.DurationVar(&o.dialTimeout, "dial-timeout", 15*time.Second, "bound each connection attempt through the tailnet to this `duration`")
	fs.Var(&o.allow, "allow", "allowlist: the only destinations reachable, comma-separated `list`\n(repeatable): .corp.ts.net (names under it), grafana.corp.ts.net:443,\n100.64.0.0/10, !admin.corp.ts.net (deny, wins over any allow entry).\nEmpty: anything the tailnet ACL lets this node reach")
	fs.StringVar(&o.policy, "policy", "", "the allowlist from a policy `file` (HuJSON: named rules, deny rules and\ntests; see 'tsconnect help policy'); refused, before joining, if its\ntests fail. Instead of --allow")
	fs.section("Tailnet")

	fs.StringVar(&o.authKeyFile, "auth-key-file", "", "read the auth key from `file` (a mounted secret); default: $TS_AUTHKEY,\nelse $TS_AUTH_KEY")
	fs.section("Auth key")

	v := &o.vault
	fs.StringVar(&v.path, "vault-path", "", "read the auth key from this KV secret `path` in Vault or OpenBao\n(secret/tailscale, as `vault kv get` takes it); enables Vault")
	fs.StringVar(&v.field, "vault-field", secrets.DefaultVaultField, "the secret's `field` holding the key")
	fs.IntVar(&v.kvVersion, "vault-kv-version", 0, "KV engine `version`: 1 or 2; 0 asks Vault, as `vault kv get` does")
	fs.StringVar(&v.mount, "vault-mount", "", "KV v2 mount `path` when deeper than one segment (kv/team)")
	fs.StringVar(&v.addr, "vault-addr", "", "Vault `URL`; default $VAULT_ADDR")
	fs.StringVar(&v.namespace, "vault-namespace", "", "Vault Enterprise / OpenBao `namespace`; default $VAULT_NAMESPACE")
	fs.StringVar(&v.cacert, "vault-cacert", "", "PEM `file` of CAs to trust for Vault; default $VAULT_CACERT")
	fs.DurationVar(&v.timeout, "vault-timeout", 0, "bound each Vault request to this `duration`; default $VAULT_CLIENT_TIMEOUT,\nelse 10s (--timeout bounds the whole join, the key fetch included)")
	fs.StringVar(&v.auth, "vault-auth", string(secrets.AuthToken), "auth `method`: token, approle, kubernetes, or wrapped (no login: the key\ncomes inside a response-wrapping token)")
	fs.StringVar(&v.authMount, "vault-auth-mount", "", "`path` where the approle or kubernetes auth method is mounted; default\napprole or kubernetes")
	fs.StringVar(&v.tokenFile, "vault-token-file", "", "token auth: read the token from `file`; default $VAULT_TOKEN")
	fs.StringVar(&v.roleID, "vault-role-id", "", "approle auth: the role_id `id`")
	fs.StringVar(&v.secretIDFile, "vault-secret-id-file", "", "approle auth: read the secret_id from `file`; default\n$TSCONNECT_VAULT_SECRET_ID")
	fs.BoolVar(&v.secretIDWrapped, "vault-secret-id-wrapped", false, "approle auth: the secret_id is a response-wrapping token")
	fs.StringVar(&v.k8sRole, "vault-k8s-role", "", "kubernetes auth: the Vault `role` bound to the pod's service account")
	fs.StringVar(&v.k8sJWTFile, "vault-k8s-jwt-file", "", "kubernetes auth: the service account token `file`; default\n"+secrets.DefaultKubernetesJWTFile)
	fs.StringVar(&v.wrappedTokenFile, "vault-wrapped-token-file", "", "wrapped auth: read the response-wrapping token from `file`;\ndefault $TSCONNECT_VAULT_WRAPPED_TOKEN")
	fs.section("Vault (the key from Vault or OpenBao; VAULT_* variables as the vault CLI)")

	fs.BoolVar(&o.verbose, "v", false, "verbose: tailnet (tsnet) logs on stderr")
	fs.section("Output")
	return o
}

// config turns the flags into a connector configuration, key source
// included. Mistakes are usage errors; they are found before joining.
func (o *joinOpts) config(fs *flagSet, sio stdio) (connector.Config, error) {
	sub := strings.TrimPrefix(fs.Name(), "tsconnect ")
	cfg, err := o.nodeConfig(sub, sio)
	if err != nil {
		return cfg, err
	}
	src, err := o.keySource(fs, sub, sio)
	if err != nil {
		return cfg, err
	}
	cfg.KeySource = src
	return cfg, nil
}

// nodeConfig is config without the key source.
func (o *joinOpts) nodeConfig(sub string, sio stdio) (connector.Config, error) {
	cfg := connector.Config{
		ControlURL:     o.controlURL,
		Hostname:       o.hostname,
		HostnamePrefix: o.hostnamePrefix,
		ReadyTimeout:   o.timeout,
		DialTimeout:    o.dialTimeout,
		UserLogf:       sio.logf,
	}
	if o.timeout <= 0 || o.dialTimeout <= 0 {
		return cfg, usageErrorf(sub, "--timeout and --dial-timeout must be positive")
	}
	if err := o.allowlist(&cfg); err != nil {
		return cfg, err
	}
	for _, t := range strings.Split(o.tags, ",") {
		if t = strings.TrimSpace(t); t != "" {
			cfg.Tags = append(cfg.Tags, t)
		}
	}
	// What the library would refuse is a usage error, found before
	// joining; its messages name Config fields, these the flags.
	var ce *connector.ConfigError
	if err := cfg.Validate(); errors.As(err, &ce) {
		flag := map[string]string{"Tags": "--tags", "ReadyTimeout": "--timeout", "DialTimeout": "--dial-timeout", "Policy": "--policy"}[ce.Field]
		if flag == "" {
			flag = "Config." + ce.Field
		}
		return cfg, usageErrorf(sub, "%s: %v", flag, ce.Err)
	}
	if o.verbose {
		cfg.Logf = func(format string, args ...any) {
			fmt.Fprintf(sio.Err, strings.TrimRight(format, "\n")+"\n", args...)
		}
	}
	return cfg, nil
}

// allowlist sets cfg.Allow from --allow, or cfg.Policy from --policy,
// whose tests must pass.
func (o *joinOpts) allowlist(cfg *connector.Config) error {
	spec := strings.Join(o.allow, ",")
	if o.policy != "" {
		if strings.TrimSpace(spec) != "" {
			return &exitError{code: exitUsage, err: errors.New("--allow and --policy are mutually exclusive"),
				hint: "put the --allow entries in the policy file's rules"}
		}
		p, err := dnsfilter.LoadPolicy(o.policy)
		if err != nil {
			return policyError(err)
		}
		cfg.Policy = p
		return nil
	}
	if strings.TrimSpace(spec) != "" {
		list, err := dnsfilter.Parse(spec)
		if err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("--allow: %s", message(err)), hint: allowHint}
		}
		cfg.Allow = list
	}
	return nil
}

// keySource builds the auth key source. The order is secrets.FromConfig's:
// --auth-key-file, else Vault (if --vault-path is set), else the
// environment.
func (o *joinOpts) keySource(fs *flagSet, sub string, sio stdio) (secrets.Source, error) {
	v := o.vault
	useVault := v.path != "" || v.auth == string(secrets.AuthWrapped)
	if !useVault {
		for name := range fs.explicit {
			if strings.HasPrefix(name, "vault-") {
				return nil, usageErrorf(sub, "--%s has no effect without --vault-path: Vault is used only when --vault-path names the secret", name)
			}
		}
	}
	switch secrets.VaultAuth(v.auth) {
	case secrets.AuthToken, secrets.AuthAppRole, secrets.AuthKubernetes, secrets.AuthWrapped:
	default:
		return nil, usageErrorf(sub, "--vault-auth %q: want token, approle, kubernetes or wrapped", v.auth)
	}
	if v.timeout < 0 {
		return nil, usageErrorf(sub, "--vault-timeout %v: want a positive duration, or 0 for the default", v.timeout)
	}
	if v.kvVersion < 0 || v.kvVersion > 2 {
		return nil, usageErrorf(sub, "--vault-kv-version %d: want 0 (ask Vault), 1 or 2", v.kvVersion)
	}
	var sc secrets.Config
	sc.KeyFile = o.authKeyFile
	if useVault {
		if o.authKeyFile != "" {
			return nil, usageErrorf(sub, "--auth-key-file and --vault-path are mutually exclusive: choose one source for the auth key")
		}
		sc.Vault = &secrets.VaultConfig{
			Address:           v.addr,
			Namespace:         v.namespace,
			CACert:            v.cacert,
			Path:              v.path,
			Field:             v.field,
			KVVersion:         v.kvVersion,
			Mount:             v.mount,
			Auth:              secrets.VaultAuth(v.auth),
			AuthMount:         v.authMount,
			TokenFile:         v.tokenFile,
			RoleID:            v.roleID,
			SecretIDFile:      v.secretIDFile,
			SecretIDWrapped:   v.secretIDWrapped,
			KubernetesRole:    v.k8sRole,
			KubernetesJWTFile: v.k8sJWTFile,
			WrappedTokenFile:  v.wrappedTokenFile,
			Timeout:           v.timeout,
			Logf:              func(format string, args ...any) { sio.logf("warning: "+format, args...) },
		}
	}
	src, err := secrets.FromConfig(sc)
	if err != nil {
		return nil, err // ErrVaultConfig: exit 3 with a Vault hint
	}
	return src, nil
}

// proxyOpts are the flags of the subcommands that serve the proxy (run,
// up).
type proxyOpts struct {
	listen       string
	user         string
	passwordFile string
	auditLog     string
	forwards     listFlag
	metrics      string
	metricsLn    net.Listener // bound by apply, before joining
	tunnels      connector.TunnelPolicy
	maxClients   int
	perUser      int
}

func addProxyFlags(fs *flagSet) *proxyOpts {
	o := new(proxyOpts)
	fs.StringVar(&o.listen, "listen", connector.DefaultProxyAddr, "SOCKS5 and HTTP proxy `address`; port 0 picks a free one (printed).\nAn address that is not loopback needs --proxy-user")
	fs.StringVar(&o.user, "proxy-user", "", "require this proxy user `name` (SOCKS5 and HTTP Basic), with\n--proxy-password-file; clients find it in the proxy URLs")
	fs.StringVar(&o.passwordFile, "proxy-password-file", "", "read the proxy password from `file`")
	fs.StringVar(&o.auditLog, "audit-log", "", "append one JSON line per connection (proxied, forwarded) to `file` (- for stderr)")
	fs.StringVar(&o.metrics, "metrics-listen", "", "serve Prometheus /metrics, /healthz and /readyz on this loopback `address`\n(also on the control socket of 'up')")
	fs.Var(&o.forwards, "forward", "`LOCAL=REMOTE`: listen on LOCAL (a loopback host:port, or a port) and\nforward each connection to REMOTE host:port through the tailnet,\nallowlist applied (a REMOTE it denies is refused at startup, exit 2);\nrepeatable. Example: 5432=db:5432")
	fs.IntVar(&o.maxClients, "max-clients", socks.DefaultMaxConns, "proxy clients served at once; beyond it the one idle longest makes room, or a\nclient is refused (SOCKS5 0x01, HTTP 503)")
	fs.IntVar(&o.perUser, "max-clients-per-user", 0, "proxy clients one uid (a local process's owner; else one IP) holds at once;\n0: three quarters of --max-clients; -1: no bound but --max-clients")
	fs.BoolVar(&o.tunnels.Opaque, "opaque-tunnels", false, "do not check the TLS SNI and HTTP Host inside tunnels: a tunnel allowed to\none name may then reach any vhost of the reverse proxy behind it\n(a policy rule's \"opaque\" does this for that rule alone)")
	fs.BoolVar(&o.tunnels.SameAddress, "same-address-vhosts", false, "let a tunnel carry another allowed name (SNI, Host) that resolves to the\naddress it reached; default: only the name it was opened for")
	fs.BoolVar(&o.tunnels.RequireName, "require-sni", false, "refuse a TLS ClientHello without an SNI and an HTTP request without a\nHost inside tunnels (a reverse proxy sends them to its default vhost)")
	fs.BoolVar(&o.tunnels.AllowECH, "allow-ech", false, "let an encrypted ClientHello (ECH, which hides the real name) through,\nits outer SNI checked; Chromium sends one to every server")
	fs.section("Proxy and forwards")
	return o
}

// apply sets cfg.Proxy from the flags and checks the forwards against
// cfg.Allow (before joining: a forward that cannot work costs no node). It
// returns the forwards and a closer for the audit log file, if any.
func (o *proxyOpts) apply(sub string, cfg *connector.Config, sio stdio) ([]forwardSpec, io.Closer, error) {
	pc, fwds, closer, err := o.config(sub, cfg, sio)
	if err != nil {
		return nil, nil, err
	}
	if err := precheckForwards(cfg.Allow, fwds); err != nil {
		closer.Close()
		return nil, nil, err
	}
	if o.metrics != "" {
		host, _, err := net.SplitHostPort(o.metrics)
		if ip, perr := netip.ParseAddr(host); err != nil || (perr != nil || !ip.IsLoopback()) && host != "localhost" {
			closer.Close()
			return nil, nil, usageErrorf(sub, "--metrics-listen %q: want a loopback host:port, e.g. 127.0.0.1:9100", o.metrics)
		}
		if o.metricsLn, err = net.Listen("tcp", o.metrics); err != nil {
			closer.Close()
			return nil, nil, &exitError{code: exitFailure, err: fmt.Errorf("--metrics-listen: %w", err), hint: "choose another port, or port 0 to let the system pick one"}
		}
	}
	cfg.Proxy = pc
	cfg.Tunnels = o.tunnels
	return fwds, closer, nil
}

// serveMetrics serves --metrics-listen, if set, until the returned
// function is called.
func (o *proxyOpts) serveMetrics(s *session) func() {
	if o.metricsLn == nil {
		return func() {}
	}
	srv := &http.Server{Handler: s.c.HealthHandler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(o.metricsLn)
	s.sio.logf("metrics on http://%s/metrics", o.metricsLn.Addr())
	return func() { srv.Close() }
}

// config returns the proxy configuration and the parsed forwards, and
// sets cfg's audit log. The returned closer closes the audit log file, if
// any.
func (o *proxyOpts) config(sub string, cfg *connector.Config, sio stdio) (*connector.ProxyConfig, []forwardSpec, io.Closer, error) {
	if o.maxClients < 1 || o.perUser < -1 {
		return nil, nil, nil, usageErrorf(sub, "--max-clients must be at least 1 and --max-clients-per-user at least -1 (got %d, %d)", o.maxClients, o.perUser)
	}
	pc := &connector.ProxyConfig{Listen: o.listen, MaxConns: o.maxClients, MaxConnsPerClient: o.perUser}
	var fwds []forwardSpec
	for _, v := range o.forwards {
		for _, one := range strings.Split(v, ",") {
			if strings.TrimSpace(one) == "" {
				continue
			}
			f, err := parseForward(one)
			if err != nil {
				return nil, nil, nil, usageErrorf(sub, "--forward %s: %v", one, err)
			}
			fwds = append(fwds, f)
		}
	}
	if (o.user == "") != (o.passwordFile == "") {
		return nil, nil, nil, usageErrorf(sub, "--proxy-user and --proxy-password-file go together")
	}
	if o.user != "" {
		b, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return nil, nil, nil, usageErrorf(sub, "--proxy-password-file: %v", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" || strings.ContainsAny(pw, "\r\n") {
			return nil, nil, nil, usageErrorf(sub, "--proxy-password-file %s: want one non-empty line", o.passwordFile)
		}
		pc.Username, pc.Password = o.user, pw
		// The proxy's own rule: it may listen beyond loopback only with
		// authentication.
		pc.AllowNonLoopback = true
	}
	if err := checkListen(sub, pc); err != nil {
		return nil, nil, nil, err
	}
	var closer io.Closer = nopCloser{}
	switch o.auditLog {
	case "":
	case "-":
		cfg.AuditLog = sio.Err
	default:
		f, err := os.OpenFile(o.auditLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, nil, usageErrorf(sub, "--audit-log: %v", err)
		}
		cfg.AuditLog, closer = f, f
	}
	return pc, fwds, closer, nil
}

// checkListen catches, before joining, a proxy address that cannot work:
// not loopback without authentication, or a port already taken (most
// often by another tsconnect).
func checkListen(sub string, pc *connector.ProxyConfig) error {
	host, port, err := net.SplitHostPort(pc.Listen)
	if err != nil {
		return usageErrorf(sub, "--listen %q: want host:port, e.g. 127.0.0.1:1055", pc.Listen)
	}
	if ip, err := netip.ParseAddr(host); (err != nil || !ip.IsLoopback()) && host != "localhost" && pc.Username == "" {
		return usageErrorf(sub, "--listen %s is not a loopback address: without --proxy-user and --proxy-password-file the proxy listens on loopback only", pc.Listen)
	}
	if port == "0" {
		return nil
	}
	ln, err := net.Listen("tcp", pc.Listen)
	if err != nil {
		return &exitError{code: exitFailure, err: fmt.Errorf("--listen: %w", err),
			hint: "is another tsconnect running ('tsconnect status')? Or let the system pick a port: --listen 127.0.0.1:0"}
	}
	ln.Close()
	return nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
