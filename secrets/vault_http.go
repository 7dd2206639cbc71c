package secrets

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/api"
)

// maxVaultBody bounds what is read of one answer; ours are a few KiB.
const maxVaultBody = 1 << 20

// vaultReply is the part of Vault's response envelope this package uses,
// for any HTTP status.
type vaultReply struct {
	status   int
	Data     map[string]any `json:"data"`
	Warnings []string       `json:"warnings"`
	Errors   []string       `json:"errors"`
}

func (rep *vaultReply) ok() bool { return rep.status >= 200 && rep.status < 300 }

// messages returns Vault's error messages, one line, with the multi-error
// form ("1 error occurred:\n\t* permission denied\n\n") unpacked.
func (rep *vaultReply) messages() string {
	var out []string
	for _, e := range rep.Errors {
		if strings.Contains(e, " occurred:\n") {
			for line := range strings.SplitSeq(e, "\n") {
				if m, ok := strings.CutPrefix(strings.TrimSpace(line), "* "); ok {
					out = append(out, m)
				}
			}
			continue
		}
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return "no error message"
	}
	return "Vault: " + strings.Join(out, "; ")
}

// badToken reports whether rep is Vault's 403 in the plain form
// ["permission denied"], its answer for a token it does not know:
// unknown, expired, revoked, or from another namespace. A valid token
// that its policies deny gets the multi-error form ("1 error occurred:
// …").
func (rep *vaultReply) badToken() bool {
	return rep.status == 403 && len(rep.Errors) == 1 && rep.Errors[0] == "permission denied"
}

func (rep *vaultReply) says(s string) bool {
	for _, e := range rep.Errors {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}

// call sends one request with token ("" for none) and returns Vault's
// answer whatever its status. Its errors are for answers that never came
// or are not Vault's JSON, and for a namespace Vault does not know.
func (r *vaultRun) call(ctx context.Context, method, path, token string, body map[string]any) (*vaultReply, error) {
	r.client.SetToken(token)
	rctx, cancel := context.WithTimeout(ctx, r.v.timeout)
	defer cancel()

	var resp *api.Response
	var err error
	if method == "GET" {
		resp, err = r.client.Logical().ReadRawWithContext(rctx, path)
	} else {
		var b []byte
		if body != nil {
			if b, err = json.Marshal(body); err != nil {
				return nil, r.errf("%s %s: %w", method, path, err)
			}
		}
		resp, err = r.client.Logical().WriteRawWithContext(rctx, path, b)
	}
	// vault/api returns the response along with an error for statuses
	// >= 400; only a missing response means Vault did not answer.
	if resp == nil || resp.Response == nil {
		if err == nil {
			err = errors.New("no response")
		}
		return nil, r.unreachable(ctx, rctx, method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxVaultBody))
	if err != nil {
		return nil, r.unreachable(ctx, rctx, method, path, err)
	}

	rep := &vaultReply{status: resp.StatusCode}
	if len(bytes.TrimSpace(raw)) == 0 {
		return rep, nil
	}
	if err := json.Unmarshal(raw, rep); err != nil {
		// The decoder's message can quote the body, which may hold a
		// secret: say only where it broke.
		where := ""
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se) && se.Offset >= int64(len(raw)):
			where = " (cut short)"
		case errors.As(err, &se):
			where = " (invalid at byte " + strconv.FormatInt(se.Offset, 10) + ")"
		case errors.As(err, &te):
			where = " (" + te.Field + " has the wrong type)"
		}
		return nil, r.hintf(hintMalformed, "%w: %s %s: HTTP %d with a body that is not Vault's JSON%s", ErrMalformedResponse, method, path, resp.StatusCode, where)
	}
	return rep, r.noNamespace(rep, method, path)
}

// apiCall runs call, one vault/api request made with token ("" for
// none), within the request timeout. Vault's error answers
// (*api.ResponseError) come back as a reply with their status and
// messages; the error is for answers that never came or are not Vault's
// JSON, and for a namespace Vault does not know. The KV preflight, reads
// and unwrap use call instead: they need the bodies of 404 answers
// (warnings, deletion metadata, Vault's own message), which vault/api
// drops.
func (r *vaultRun) apiCall(ctx context.Context, method, path, token string, call func(context.Context) (*api.Secret, error)) (*api.Secret, *vaultReply, error) {
	r.client.SetToken(token)
	rctx, cancel := context.WithTimeout(ctx, r.v.timeout)
	defer cancel()
	sec, err := call(rctx)
	var re *api.ResponseError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return sec, &vaultReply{status: 200}, nil
	case errors.As(err, &re) && !re.RawError:
		rep := &vaultReply{status: re.StatusCode, Errors: re.Errors}
		return nil, rep, r.noNamespace(rep, method, path)
	case errors.As(err, &re):
		// The body is not quoted: it may hold a secret.
		return nil, nil, r.hintf(hintMalformed, "%w: %s %s: HTTP %d with a body that is not Vault's JSON", ErrMalformedResponse, method, path, re.StatusCode)
	case errors.As(err, &se), errors.As(err, &te), errors.Is(err, io.ErrUnexpectedEOF):
		return nil, nil, r.hintf(hintMalformed, "%w: %s %s: an answer that is not Vault's JSON", ErrMalformedResponse, method, path)
	}
	return nil, nil, r.unreachable(ctx, rctx, method, path, err)
}

const hintMalformed = "check that VAULT_ADDR (or VaultConfig.Address) is Vault's API and not a proxy or web page"

// noNamespace explains Vault's 404 ["namespace not found"], its answer to
// any request (KV version lookup, read, login, unwrap) whose
// X-Vault-Namespace names no namespace. It is nil for any other answer.
func (r *vaultRun) noNamespace(rep *vaultReply, method, path string) error {
	if rep.status != 404 || r.v.ns == "" || !rep.says("namespace not found") {
		return nil
	}
	// The message is for the command too, whose flag sets the field.
	from, setting := "set in the configuration", "VaultConfig.Namespace"
	if r.v.nsEnv != "" {
		from, setting = "from "+r.v.nsEnv, r.v.nsEnv
	}
	return r.hintf(fmt.Sprintf("check %s against %s, or leave it empty for the root namespace", setting, cli("namespace list")),
		"%w: namespace %q (%s) not found (%s, %s %s: %s)", ErrVaultConfig, r.v.ns, from, vaultStep(path), method, path, rep.messages())
}

// cli quotes a vault CLI command for a hint, naming once beside it
// OpenBao's bao, which takes the same commands.
func cli(args string) string { return "`vault " + args + "` (or `bao`)" }

// vaultStep names the part of a key fetch a request is, for messages.
func vaultStep(path string) string {
	switch {
	case strings.HasPrefix(path, "sys/internal/ui/mounts/"):
		return "KV version lookup"
	case path == "sys/wrapping/unwrap":
		return "unwrap"
	case path == "auth/token/revoke-self":
		return "token revocation"
	case strings.HasPrefix(path, "auth/") && strings.HasSuffix(path, "/login"):
		return "login"
	}
	return "secret read"
}

// unreachable explains a request that got no answer.
func (r *vaultRun) unreachable(ctx, rctx context.Context, method, path string, err error) error {
	step := vaultStep(path)
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		if errors.Is(cause, context.DeadlineExceeded) {
			// The caller's deadline (a join's ReadyTimeout) ran out
			// while Vault had not answered.
			return r.hintf("the caller's deadline bounds the whole fetch (the connector's Config.ReadyTimeout); VaultConfig.Timeout or VAULT_CLIENT_TIMEOUT, each request",
				"%w: no answer to the %s (%s %s) before the deadline: %w", ErrVaultUnreachable, step, method, path, cause)
		}
		return r.errf("%s (%s %s): %w", step, method, path, cause)
	}
	var ne net.Error
	if rctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return r.hintf("check that Vault is up and that VAULT_ADDR (or VaultConfig.Address) is right, or raise VaultConfig.Timeout or VAULT_CLIENT_TIMEOUT",
			"%w: no answer to the %s (%s %s) within %v: %w", ErrVaultUnreachable, step, method, path, r.v.timeout, context.DeadlineExceeded)
	}
	hint := "check VAULT_ADDR (or VaultConfig.Address) and that Vault is running"
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		hint = "Vault's certificate is signed by an unknown authority: set VAULT_CACERT (or VaultConfig.CACert) to the PEM file of the CA that signed it"
	case errors.As(err, &he):
		hint = "Vault's certificate is not valid for this host name: use the name it was issued for, or set VAULT_TLS_SERVER_NAME (or VaultConfig.TLSServerName)"
	case errors.As(err, &ci):
		hint = "Vault's certificate is invalid (expired, or not for TLS servers)"
	}
	return r.hintf(hint, "%w: %s %s: %w", ErrVaultUnreachable, method, path, transportCause(err))
}

// transportCause is what went wrong with a request that got no answer,
// without what the caller's message says already: *url.Error repeats the
// method and the whole URL, *net.OpError the address ("Get
// \"http://vault:8200/v1/…\": dial tcp 10.0.0.5:8200: connect: connection
// refused" becomes "connect: connection refused").
func transportCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	return err
}

// unexpected explains an answer the caller has no specific handling for.
func (r *vaultRun) unexpected(rep *vaultReply, method, path string) error {
	if rep.status == 503 && rep.says("sealed") {
		return r.hintf("unseal it with "+cli("operator unseal")+", or point VAULT_ADDR at an unsealed node", "%w", ErrVaultSealed)
	}
	return r.errf("%s %s: HTTP %d (%s)", method, path, rep.status, rep.messages())
}
