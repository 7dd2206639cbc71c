package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

const redacted = "[redacted]"

// KeyKind classifies an auth key by its prefix so errors can be precise.
type KeyKind int

const (
	KindUnknown         KeyKind = iota // shape is valid but the prefix is not one we know
	KindTailscaleAuth                  // tskey-auth-…: a Tailscale auth key
	KindTailscaleClient                // tskey-client-…: an OAuth client secret; needs tags
	KindHeadscale                      // hskey-auth-…: a Headscale preauth key
	KindLegacyHex                      // 48+ hex digits: an older Headscale preauth key
)

func (k KeyKind) String() string {
	switch k {
	case KindTailscaleAuth:
		return "tailscale auth key"
	case KindTailscaleClient:
		return "tailscale oauth client secret"
	case KindHeadscale:
		return "headscale preauth key"
	case KindLegacyHex:
		return "legacy hex preauth key"
	}
	return "unrecognised key"
}

// NeedsTags reports whether a key of this kind only works together with
// tags to advertise. A Tailscale OAuth client secret is not an auth key:
// tsnet exchanges it for one, which needs Server.AdvertiseTags and the
// tailscale.com/feature/oauthkey import; without them the login fails.
func (k KeyKind) NeedsTags() bool { return k == KindTailscaleClient }

// Key is an auth key held in memory. Its zero value is the absent key.
// It never prints, logs or marshals its value: String, GoString, Format,
// LogValue, MarshalJSON and MarshalText all give "[redacted]". Use
// [Key.Reveal] at the one place the value must be handed to the tailnet
// node.
//
// [VaultConfig] also uses Key for Vault credentials given in code (a
// token, a secret_id, a wrapping token), so they get the same protection.
type Key struct {
	// The value sits behind a *string so that reflection-based printing,
	// which skips String and Format for unexported struct fields (fmt's
	// %v or %s of a struct holding a Key in a private field), shows an
	// address and not the key. A pointer to a struct would not do: fmt
	// prints its fields in the %!s(…) form of a bad verb.
	v    *string
	kind KeyKind
}

// ErrEmptyKey reports that a source produced no key at all.
var ErrEmptyKey = errors.New("auth key is empty")

// NewKey validates the shape of s (non-empty, one line, no spaces or
// control characters) and classifies it. Surrounding white space, such as
// the newline at the end of a key file, is trimmed. The error never
// contains the value.
func NewKey(s string) (Key, error) {
	k, err := newKey(s)
	if err != nil && !errors.Is(err, ErrEmptyKey) {
		err = fmt.Errorf("secrets: auth key: %w", err)
	}
	return k, err
}

// newKey is NewKey with errors meant to be wrapped by the caller, which
// names where the value came from.
func newKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Key{}, ErrEmptyKey
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f {
			return Key{}, fmt.Errorf("the value has a space, line break or control character at byte %d; it must be a single token", i)
		}
	}
	return Key{v: &s, kind: classify(s)}, nil
}

func classify(s string) KeyKind {
	switch {
	case strings.HasPrefix(s, "tskey-auth-"):
		return KindTailscaleAuth
	case strings.HasPrefix(s, "tskey-client-"):
		return KindTailscaleClient
	case strings.HasPrefix(s, "hskey-auth-"):
		return KindHeadscale
	}
	if len(s) >= 48 && strings.Trim(s, "0123456789abcdefABCDEF") == "" {
		return KindLegacyHex
	}
	return KindUnknown
}

// Reveal returns the key's value. Call it only to hand the key to the
// tailnet node; never log, print or store the result.
func (k Key) Reveal() string {
	if k.v == nil {
		return ""
	}
	return *k.v
}

// IsZero reports whether k holds no key.
func (k Key) IsZero() bool { return k.v == nil || *k.v == "" }

// Kind reports what kind of key k is.
func (k Key) Kind() KeyKind { return k.kind }

func (k Key) String() string                { return redacted }
func (k Key) GoString() string              { return redacted }
func (k Key) Format(f fmt.State, verb rune) { f.Write([]byte(redacted)) }
func (k Key) LogValue() slog.Value          { return slog.StringValue(redacted) }
func (k Key) MarshalJSON() ([]byte, error)  { return []byte(`"` + redacted + `"`), nil }
func (k Key) MarshalText() ([]byte, error)  { return []byte(redacted), nil }

// Source produces the auth key. Implementations must not log or print the
// key, and must not write it anywhere.
type Source interface {
	// AuthKey fetches the key. It is called once per connector start.
	AuthKey(ctx context.Context) (Key, error)
	// Describe names where the key comes from, for messages and status
	// ("env TS_AUTHKEY/TS_AUTH_KEY", "vault https://vault:8200
	// secret/tailscale#authkey (kv v2, approle)").
	// It never includes the key.
	Describe() string
}

// Static returns a Source that always yields k.
func Static(k Key) Source { return staticSource{k} }

type staticSource struct{ k Key }

func (s staticSource) AuthKey(context.Context) (Key, error) {
	if s.k.IsZero() {
		return Key{}, fmt.Errorf("secrets: static key: %w", ErrEmptyKey)
	}
	return s.k, nil
}
func (staticSource) Describe() string { return "static key" }
