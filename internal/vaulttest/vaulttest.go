// Package vaulttest runs an in-process double of the Vault HTTP API, for
// tests that cannot start a real Vault or OpenBao server.
//
// It is not a Vault: it has no policies, leases or storage, and it answers
// only the handful of endpoints tsconnect uses. What it does copy is the
// wire format of those endpoints as a real OpenBao 2.6.2 server answers
// them (checked by hand against a dev server; HashiCorp Vault differs
// where noted):
//
//   - Every success body is the response envelope {"request_id",
//     "lease_id","renewable","lease_duration","data","wrap_info",
//     "warnings","auth"}, with no "mount_type" (Vault 1.10 and later add
//     one).
//   - Every error body is {"errors":[...]} with the status and message the
//     server uses: 503 ["Vault is sealed"]; 404 ["namespace not found"]
//     for any request whose X-Vault-Namespace names no namespace, before
//     anything else is looked at; 403 ["permission denied"] for a missing,
//     unknown, revoked or foreign token, and so for a login at a path
//     under no auth mount (auth/approle2/login), which needs a token like
//     any other path; 403 with the multi-error form ["1 error
//     occurred:\n\t* permission denied\n\n"] for a valid token whose
//     policies deny the path; 404 [] for a missing secret; 404 ["no
//     handler for route \"p\". route entry not found."] for a path under
//     no mount; 400 ["invalid role or secret ID"] for a bad AppRole login;
//     400 ["wrapping token is not valid or does not exist"] for an
//     unknown or used wrapping token shaped like the server's own ("s."),
//     and 403 ["permission denied"] for an unknown one shaped "hvs.".
//   - KV v1: GET /v1/<mount>/<path> -> {"data":{...}}.
//   - KV v2: GET /v1/<mount>/data/<path> ->
//     {"data":{"data":{...},"metadata":{"created_time","custom_metadata",
//     "deletion_time","destroyed","version"}}}; a latest version deleted
//     (`kv delete`) or destroyed (`kv destroy`) is a 404 whose body still
//     carries that envelope with "data":null, deletion_time set for the
//     one, "deletion_time":"" and "destroyed":true for the other; any other
//     path on a v2 mount is a 404 whose envelope has the warning "Invalid
//     path for a versioned K/V secrets engine. …".
//   - GET /v1/sys/internal/ui/mounts/<path> -> {"data":{"path":"secret/",
//     "type":"kv","options":{"version":"2"},…}} for the mount serving path
//     (options {"version":"1"} for a mount enabled with -version=1, null
//     for one enabled without), or 403 ["preflight capability check
//     returned 403, please ensure client's policies grant access to path
//     \"p/\""] when there is none or the token has no access to it. The
//     path needs no token of its own but checks the one sent: a missing or
//     unknown one gets 403 ["permission denied"].
//   - POST|PUT /v1/auth/approle/login {"role_id","secret_id"} and
//     /v1/auth/kubernetes/login {"role","jwt"} -> {"auth":{"client_token":
//     "s.…","accessor","policies","token_policies","metadata",
//     "lease_duration","renewable":true,"entity_id","token_type","orphan"}}.
//   - POST|PUT /v1/sys/wrapping/unwrap with the wrapping token as
//     X-Vault-Token (or in the body as "token") -> the wrapped response;
//     a wrapping token works once.
//   - POST|PUT /v1/auth/token/revoke-self -> 204, no body.
//   - Tokens are "s." and 24 base62 characters, with ".<namespace ID>"
//     after them for a token issued in a namespace (Vault mints "hvs."
//     tokens).
//   - X-Vault-Token authenticates. X-Vault-Namespace ("root" or empty for
//     the root namespace) is joined with the request path, and the
//     longest namespace that path starts with is the request's: so a
//     namespace can be written at the front of the path instead, but one
//     written there that does not exist is an ordinary path (404 "no
//     handler for route", or the preflight's 403), not "namespace not
//     found". A token works only in the namespace it was issued in and
//     below it.
//
// Use [New] in a test, seed it with [Server.PutKV], [Server.AddAppRole],
// [Server.AddKubernetesRole] or [Server.Wrap], and check what the client
// did with [Server.Requests] and [Server.Revoked].
package vaulttest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a running Vault API double. Its methods are safe for concurrent
// use with the requests it serves.
type Server struct {
	// URL is the base URL to use as VAULT_ADDR, e.g. "http://127.0.0.1:41234".
	URL string
	// RootToken is a token valid everywhere. It is never revoked by
	// revoke-self unless a client sends it there.
	RootToken string

	t   testing.TB
	srv *httptest.Server

	mu         sync.Mutex
	namespaces map[string]string         // path -> ID; "" is the root namespace
	mounts     map[string]*mount         // by namespace-qualified path, no slashes at the ends
	authMounts map[string]string         // "approle" -> "approle", "kubernetes" -> "kubernetes", custom paths
	appRoles   map[string]string         // role_id -> secret_id
	k8sRoles   map[string]string         // role -> jwt
	tokens     map[string]*token         // live tokens
	wrapped    map[string]map[string]any // wrapping token -> wrapped data
	denied     []string                  // namespace-qualified path prefixes
	revoked    []string                  // tokens revoked through revoke-self
	requests   []Request                 // everything received, in order
	sealed     bool
	malformed  bool
	delay      time.Duration
}

type token struct {
	ns       string
	policies []string
}

type mount struct {
	path     string // namespace-qualified, e.g. "team1/secret"
	version  int
	options  map[string]any // as the preflight reports them
	accessor string
	uuid     string
	secrets  map[string]*kvSecret
}

type kvSecret struct {
	data      map[string]any
	version   int
	created   time.Time
	deleted   time.Time
	destroyed bool
}

// Request is one request the server received.
type Request struct {
	Method string
	// Path is the request path without the leading "/v1/", as sent.
	Path string
	// Namespace is the X-Vault-Namespace header ("" if absent).
	Namespace string
	// Token is the X-Vault-Token header ("" if absent).
	Token string
	// VaultRequest reports whether the X-Vault-Request header was "true",
	// as Vault's own client sends it.
	VaultRequest bool
	// WrapTTL is the X-Vault-Wrap-TTL header. The double records it but
	// does not wrap; a real Vault would answer with a wrapping token.
	WrapTTL string
	// Body is the decoded JSON body, nil if there was none.
	Body map[string]any
}

// New starts a server and stops it when the test ends. It has no mounts,
// roles or namespaces; the AppRole method is enabled at "approle" and the
// Kubernetes method at "kubernetes".
func New(t testing.TB) *Server {
	return start(t, false)
}

// NewTLS is like [New] but serves HTTPS with httptest's self-signed
// certificate, valid for 127.0.0.1 and "example.com". Its CA is
// [Server.CACertPEM].
func NewTLS(t testing.TB) *Server {
	return start(t, true)
}

func start(t testing.TB, tls bool) *Server {
	t.Helper()
	s := &Server{
		t:          t,
		RootToken:  newToken(""),
		namespaces: map[string]string{"": "root"},
		mounts:     map[string]*mount{},
		authMounts: map[string]string{"approle": "approle", "kubernetes": "kubernetes"},
		appRoles:   map[string]string{},
		k8sRoles:   map[string]string{},
		tokens:     map[string]*token{},
		wrapped:    map[string]map[string]any{},
	}
	s.tokens[s.RootToken] = &token{policies: []string{"root"}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	// Failed TLS handshakes are what some tests are about: keep them out
	// of the test output.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tls {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// CACertPEM returns the PEM encoding of the certificate a [NewTLS] server
// presents, to use as VAULT_CACERT. It is nil for a [New] server.
func (s *Server) CACertPEM() []byte {
	if s.srv.Certificate() == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// AddNamespace creates a namespace (Vault Enterprise / OpenBao), such as
// "team1" or "team1/sub". Mount paths given to [Server.PutKV] that start
// with it live in it, and are reachable only with X-Vault-Namespace set to
// it (or with the namespace written at the front of the request path).
func (s *Server) AddNamespace(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.namespaces[strings.Trim(ns, "/")] = base62(6)
}

// PutKV stores data at path in the KV engine mounted at mount, mounting a
// KV engine of the given version (1 or 2) there first if there is none, as
// `vault secrets enable -version=N kv` does. On a v2 mount each call adds
// a version. The mount may start with a namespace created by
// [Server.AddNamespace].
func (s *Server) PutKV(mount, path string, version int, data map[string]any) {
	s.t.Helper()
	if version != 1 && version != 2 {
		s.t.Fatalf("vaulttest: PutKV: KV version %d; want 1 or 2", version)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mountLocked(mount, version)
	path = strings.Trim(path, "/")
	prev := m.secrets[path]
	sec := &kvSecret{data: clone(data), version: 1, created: time.Now().UTC()}
	if prev != nil && version == 2 {
		sec.version = prev.version + 1
	}
	m.secrets[path] = sec
}

// Mount mounts an empty KV engine at mount: version 1 or 2 as `vault
// secrets enable -version=N kv` does, or 0 as `vault secrets enable kv`
// does, a v1 engine whose options the preflight reports as null.
func (s *Server) Mount(mount string, version int) {
	s.t.Helper()
	if version < 0 || version > 2 {
		s.t.Fatalf("vaulttest: Mount: KV version %d; want 0, 1 or 2", version)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mountLocked(mount, version)
}

// mountLocked returns the KV mount at path, mounting it first if there is
// none; version 0 is an unversioned v1 mount.
func (s *Server) mountLocked(path string, version int) *mount {
	path = strings.Trim(path, "/")
	m := s.mounts[path]
	if m == nil {
		m = &mount{path: path, version: max(version, 1), accessor: "kv_" + randHex(4), uuid: uuid(), secrets: map[string]*kvSecret{}}
		if version != 0 {
			m.options = map[string]any{"version": strconv.Itoa(version)}
		}
		s.mounts[path] = m
	}
	if m.version != max(version, 1) {
		s.t.Fatalf("vaulttest: mount %s is KV v%d, not v%d", path, m.version, version)
	}
	return m
}

// DeleteKV deletes the secret at path: on a v2 mount it soft-deletes the
// latest version (reads then get a 404 that still carries the metadata,
// with deletion_time set), on a v1 mount it removes it.
func (s *Server) DeleteKV(mount, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mounts[strings.Trim(mount, "/")]
	if m == nil {
		return
	}
	path = strings.Trim(path, "/")
	if m.version == 1 {
		delete(m.secrets, path)
	} else if sec := m.secrets[path]; sec != nil {
		sec.deleted = time.Now().UTC()
	}
}

// DestroyKV destroys the latest version of the secret at path on a v2
// mount, like `vault kv destroy -versions=<latest>`: reads then get a 404
// that still carries the metadata, with destroyed true.
func (s *Server) DestroyKV(mount, path string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mounts[strings.Trim(mount, "/")]
	if m == nil || m.version != 2 {
		s.t.Fatalf("vaulttest: DestroyKV: %s is not a KV v2 mount", mount)
	}
	if sec := m.secrets[strings.Trim(path, "/")]; sec != nil {
		sec.destroyed = true
	}
}

// EnableAuth mounts an auth method ("approle" or "kubernetes") at path as
// well, like `vault auth enable -path=path method`.
func (s *Server) EnableAuth(method, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authMounts[strings.Trim(path, "/")] = method
}

// AddAppRole lets role_id and secret_id log in through every mount of the
// AppRole method, in any namespace. The token they get is bound to the
// namespace of the login request.
func (s *Server) AddAppRole(roleID, secretID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appRoles[roleID] = secretID
}

// AddKubernetesRole lets a service account JWT log in as role through
// every mount of the Kubernetes method.
func (s *Server) AddKubernetesRole(role, jwt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.k8sRoles[role] = jwt
}

// NewToken issues a service token in the root namespace, as a user or an
// operator would hand one to tsconnect.
func (s *Server) NewToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := newToken("")
	s.tokens[tok] = &token{policies: []string{"default"}}
	return tok
}

// Wrap returns a single-use response-wrapping token whose unwrapped
// response has data as its "data", like `vault write -wrap-ttl=…`. Wrap
// {"secret_id": id} for a wrapped AppRole secret_id.
func (s *Server) Wrap(data map[string]any) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := newToken("")
	s.wrapped[tok] = clone(data)
	return tok
}

// Deny makes every request to path, or below it, fail with 403 ["1 error
// occurred:\n\t* permission denied\n\n"], whatever the token, as if no
// policy granted it.
// path is namespace-qualified and includes any "data/" segment, e.g.
// "secret/data/tailscale". Denying a mount's path ("secret") also fails
// the UI mounts preflight for paths on it.
func (s *Server) Deny(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied = append(s.denied, strings.Trim(path, "/"))
}

// SetSealed seals or unseals the server. A sealed server answers every
// request with 503 ["Vault is sealed"].
func (s *Server) SetSealed(sealed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealed = sealed
}

// SetDelay makes every answer wait d first (or until the client gives up).
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// SetMalformed makes every answer a 200 with a truncated JSON body, as a
// broken proxy in front of Vault might.
func (s *Server) SetMalformed(malformed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.malformed = malformed
}

// Requests returns the requests received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Revoked returns the tokens revoked through auth/token/revoke-self, in
// order.
func (s *Server) Revoked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.revoked)
}

// LiveTokens returns how many tokens, the root token included, are valid.
func (s *Server) LiveTokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokens)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	req := Request{
		Method:       r.Method,
		Path:         strings.TrimPrefix(r.URL.Path, "/v1/"),
		Namespace:    r.Header.Get("X-Vault-Namespace"),
		Token:        r.Header.Get("X-Vault-Token"),
		VaultRequest: r.Header.Get("X-Vault-Request") == "true",
		WrapTTL:      r.Header.Get("X-Vault-Wrap-TTL"),
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req.Body); err != nil {
			req.Body = map[string]any{"<unparsed>": string(body)}
		}
	}

	s.mu.Lock()
	s.requests = append(s.requests, req)
	delay := s.delay
	s.mu.Unlock()

	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !strings.HasPrefix(r.URL.Path, "/v1/"):
		writeErrors(w, http.StatusNotFound)
	case s.sealed:
		writeErrors(w, http.StatusServiceUnavailable, "Vault is sealed")
	case s.malformed:
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"request_id":"`+uuid()+`","data":{"data":{"authkey":`)
	default:
		s.route(w, r.Method, req)
	}
}

// route answers one request; s.mu is held.
func (s *Server) route(w http.ResponseWriter, method string, req Request) {
	ns, rel, ok := s.splitNamespace(req.Namespace, req.Path)
	if !ok {
		writeErrors(w, http.StatusNotFound, "namespace not found")
		return
	}
	write := method == http.MethodPost || method == http.MethodPut

	// Unauthenticated endpoints: logins and unwrap.
	if rest, ok := strings.CutPrefix(rel, "auth/"); ok && write {
		mnt, op, _ := strings.Cut(rest, "/")
		if kind := s.authMounts[mnt]; kind != "" && op == "login" {
			s.login(w, kind, ns, req.Body)
			return
		}
	}
	if rel == "sys/wrapping/unwrap" && write {
		s.unwrap(w, req)
		return
	}

	tok := s.tokens[req.Token]
	if tok == nil || !within(ns, tok.ns) {
		// A missing, unknown, revoked or foreign token; a login at a
		// path under no auth mount ends here too.
		writeErrors(w, http.StatusForbidden, "permission denied")
		return
	}
	full := join(ns, rel)
	if !strings.HasPrefix(rel, "sys/internal/ui/mounts/") && s.isDenied(full) {
		writeErrors(w, http.StatusForbidden, multiError("permission denied"))
		return
	}

	if rel == "auth/token/revoke-self" && write {
		delete(s.tokens, req.Token)
		s.revoked = append(s.revoked, req.Token)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if p, ok := strings.CutPrefix(rel, "sys/internal/ui/mounts/"); ok && method == http.MethodGet {
		m, _ := s.mountFor(join(ns, strings.Trim(p, "/")))
		if m == nil || s.isDenied(m.path) {
			writeErrors(w, http.StatusForbidden, fmt.Sprintf("preflight capability check returned 403, please ensure client's policies grant access to path %q", strings.Trim(p, "/")+"/"))
			return
		}
		writeEnvelope(w, http.StatusOK, envelope{Data: s.mountInfo(m, ns)})
		return
	}
	m, rest := s.mountFor(full)
	if m == nil {
		writeErrors(w, http.StatusNotFound, fmt.Sprintf("no handler for route %q. route entry not found.", rel))
		return
	}
	if method != http.MethodGet {
		writeErrors(w, http.StatusMethodNotAllowed, "unsupported operation")
		return
	}
	if m.version == 1 {
		sec := m.secrets[rest]
		if sec == nil {
			writeErrors(w, http.StatusNotFound)
			return
		}
		writeEnvelope(w, http.StatusOK, envelope{Data: clone(sec.data), LeaseDuration: 2764800})
		return
	}
	p, ok := strings.CutPrefix(rest, "data/")
	if !ok {
		writeEnvelope(w, http.StatusNotFound, envelope{Warnings: []string{"Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the OpenBao CLI, use 'bao kv get' for this operation."}})
		return
	}
	sec := m.secrets[p]
	if sec == nil {
		writeErrors(w, http.StatusNotFound)
		return
	}
	meta := map[string]any{
		"created_time":    sec.created.Format(time.RFC3339Nano),
		"custom_metadata": nil,
		"deletion_time":   "",
		"destroyed":       sec.destroyed,
		"version":         sec.version,
	}
	if !sec.deleted.IsZero() {
		meta["deletion_time"] = sec.deleted.Format(time.RFC3339Nano)
	}
	if !sec.deleted.IsZero() || sec.destroyed {
		writeEnvelope(w, http.StatusNotFound, envelope{Data: map[string]any{"data": nil, "metadata": meta}})
		return
	}
	writeEnvelope(w, http.StatusOK, envelope{Data: map[string]any{"data": clone(sec.data), "metadata": meta}})
}

func (s *Server) login(w http.ResponseWriter, kind, ns string, body map[string]any) {
	str := func(k string) string { v, _ := body[k].(string); return v }
	var meta map[string]any
	switch kind {
	case "approle":
		want, ok := s.appRoles[str("role_id")]
		if !ok || str("secret_id") == "" || str("secret_id") != want {
			writeErrors(w, http.StatusBadRequest, "invalid role or secret ID")
			return
		}
		meta = map[string]any{"role_name": "role-" + str("role_id")[:min(4, len(str("role_id")))]}
	case "kubernetes":
		if str("role") == "" {
			writeErrors(w, http.StatusBadRequest, "missing role")
			return
		}
		want, ok := s.k8sRoles[str("role")]
		if !ok {
			writeErrors(w, http.StatusBadRequest, fmt.Sprintf("invalid role name %q", str("role")))
			return
		}
		if str("jwt") == "" || str("jwt") != want {
			writeErrors(w, http.StatusForbidden, "permission denied")
			return
		}
		meta = map[string]any{"role": str("role"), "service_account_name": "tsconnect", "service_account_namespace": "default"}
	}
	tok := newToken(s.namespaces[ns])
	s.tokens[tok] = &token{ns: ns, policies: []string{"default", "tsconnect"}}
	writeEnvelope(w, http.StatusOK, envelope{Auth: map[string]any{
		"client_token":    tok,
		"accessor":        randHex(12),
		"policies":        []string{"default", "tsconnect"},
		"token_policies":  []string{"default", "tsconnect"},
		"metadata":        meta,
		"lease_duration":  2764800,
		"renewable":       true,
		"entity_id":       uuid(),
		"token_type":      "service",
		"orphan":          true,
		"mfa_requirement": nil,
		"num_uses":        0,
	}})
}

func (s *Server) unwrap(w http.ResponseWriter, req Request) {
	wt := req.Token
	if t, ok := req.Body["token"].(string); ok && t != "" {
		// Unwrapping someone else's wrapping token needs a valid token.
		if s.tokens[req.Token] == nil {
			writeErrors(w, http.StatusForbidden, "permission denied")
			return
		}
		wt = t
	}
	data, ok := s.wrapped[wt]
	switch {
	case !ok && strings.HasPrefix(wt, "hvs."):
		// The server fails to decode it as one of Vault's tokens.
		writeErrors(w, http.StatusForbidden, "permission denied")
		return
	case !ok:
		writeErrors(w, http.StatusBadRequest, "wrapping token is not valid or does not exist")
		return
	}
	delete(s.wrapped, wt)
	writeEnvelope(w, http.StatusOK, envelope{Data: data})
}

// splitNamespace resolves the namespace a request addresses as OpenBao
// does: the header joined with the path, split at the longest namespace
// the result starts with. ok is false if that namespace is not the
// header's or below it: the header names no namespace.
func (s *Server) splitNamespace(header, path string) (ns, rel string, ok bool) {
	header = strings.Trim(header, "/")
	if header == "root" {
		header = ""
	}
	full := join(header, path)
	for cand := range s.namespaces {
		if len(cand) > len(ns) && strings.HasPrefix(full, cand+"/") {
			ns = cand
		}
	}
	if !within(ns, header) {
		return "", "", false
	}
	if ns == "" {
		return "", full, true
	}
	return ns, strings.TrimPrefix(full, ns+"/"), true
}

// mountFor returns the mount serving a namespace-qualified path and the
// rest of the path below it.
func (s *Server) mountFor(full string) (*mount, string) {
	var best *mount
	for p, m := range s.mounts {
		if (full == p || strings.HasPrefix(full, p+"/")) && (best == nil || len(p) > len(best.path)) {
			best = m
		}
	}
	if best == nil {
		return nil, ""
	}
	return best, strings.TrimPrefix(strings.TrimPrefix(full, best.path), "/")
}

func (s *Server) isDenied(full string) bool {
	for _, d := range s.denied {
		if full == d || strings.HasPrefix(full, d+"/") {
			return true
		}
	}
	return false
}

// mountInfo renders a mount as sys/internal/ui/mounts does, with the path
// relative to the namespace of the request.
func (s *Server) mountInfo(m *mount, ns string) map[string]any {
	path := m.path
	if ns != "" {
		path = strings.TrimPrefix(path, ns+"/")
	}
	return map[string]any{
		"accessor":                m.accessor,
		"config":                  map[string]any{"default_lease_ttl": 0, "force_no_cache": false, "max_lease_ttl": 0},
		"description":             "key/value secret storage",
		"external_entropy_access": false,
		"local":                   false,
		"options":                 m.options,
		"path":                    path + "/",
		"plugin_version":          "",
		"running_plugin_version":  "v0.20.0+builtin",
		"running_sha256":          "",
		"seal_wrap":               false,
		"type":                    "kv",
		"uuid":                    m.uuid,
	}
}

type envelope struct {
	RequestID     string   `json:"request_id"`
	LeaseID       string   `json:"lease_id"`
	Renewable     bool     `json:"renewable"`
	LeaseDuration int      `json:"lease_duration"`
	Data          any      `json:"data"`
	WrapInfo      any      `json:"wrap_info"`
	Warnings      []string `json:"warnings"`
	Auth          any      `json:"auth"`
}

func writeEnvelope(w http.ResponseWriter, status int, e envelope) {
	e.RequestID = uuid()
	writeJSON(w, status, e)
}

// multiError is msg in the form of hashicorp/go-multierror, which the
// server sends when a policy denies a request.
func multiError(msg string) string { return "1 error occurred:\n\t* " + msg + "\n\n" }

func writeErrors(w http.ResponseWriter, status int, msgs ...string) {
	if msgs == nil {
		msgs = []string{}
	}
	writeJSON(w, status, map[string][]string{"errors": msgs})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// within reports whether namespace ns is tokNS or below it.
func within(ns, tokNS string) bool {
	return tokNS == "" || ns == tokNS || strings.HasPrefix(ns, tokNS+"/")
}

func join(a, b string) string {
	a, b = strings.Trim(a, "/"), strings.Trim(b, "/")
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "/" + b
}

func clone(m map[string]any) map[string]any { return maps.Clone(m) }

// newToken returns a token shaped like OpenBao's service tokens: "s." and
// 24 base62 characters, then "." and the namespace ID (nsID) for a token
// issued outside the root namespace.
func newToken(nsID string) string {
	tok := "s." + base62(24)
	if nsID != "" && nsID != "root" {
		tok += "." + nsID
	}
	return tok
}

func base62(n int) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = digits[int(b[i])%len(digits)]
	}
	return string(b)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func uuid() string {
	h := randHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
