package secrets

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
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
	Auth     *vaultAuth     `json:"auth"`
	Warnings []string       `json:"warnings"`
	Errors   []string       `json:"errors"`
}

type vaultAuth struct {
	ClientToken string `json:"client_token"`
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
// or are not Vault's JSON.
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
		return nil, r.errf("%w: %s %s: HTTP %d with a body that is not Vault's JSON%s: check that VAULT_ADDR (or VaultConfig.Address) is Vault's API and not a proxy or web page", ErrMalformedResponse, method, path, resp.StatusCode, where)
	}
	return rep, nil
}

// unreachable explains a request that got no answer.
func (r *vaultRun) unreachable(ctx, rctx context.Context, method, path string, err error) error {
	if ctx.Err() != nil {
		return r.errf("%s %s: %w", method, path, context.Cause(ctx))
	}
	var ne net.Error
	if rctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return r.errf("%w: no answer to %s %s within %v: check that Vault is up and that VAULT_ADDR (or VaultConfig.Address) is right, or raise VaultConfig.Timeout or VAULT_CLIENT_TIMEOUT: %w", ErrVaultUnreachable, method, path, r.v.timeout, context.DeadlineExceeded)
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
	return r.errf("%w: %s %s: %w: %s", ErrVaultUnreachable, method, path, err, hint)
}

// unexpected explains an answer the caller has no specific handling for.
func (r *vaultRun) unexpected(rep *vaultReply, method, path string) error {
	if rep.status == 503 && rep.says("sealed") {
		return r.errf("%w: unseal it (`vault operator unseal`), or point VAULT_ADDR at an unsealed node", ErrVaultSealed)
	}
	return r.errf("%s %s: HTTP %d (%s)", method, path, rep.status, rep.messages())
}
