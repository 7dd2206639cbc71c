package secrets

import (
	"context"
	"fmt"
	"os"
)

// AuthKeyEnvVars are the environment variables [Env] reads, in order.
// They are the names tsnet and tailscaled use.
var AuthKeyEnvVars = []string{"TS_AUTHKEY", "TS_AUTH_KEY"}

// Env returns a Source that reads the key from TS_AUTHKEY, else TS_AUTH_KEY.
func Env() Source { return envSource{} }

type envSource struct{}

func (envSource) AuthKey(context.Context) (Key, error) {
	for _, name := range AuthKeyEnvVars {
		if v := os.Getenv(name); v != "" {
			k, err := newKey(v)
			if err != nil {
				return Key{}, fmt.Errorf("secrets: %s: %w", name, err)
			}
			return k, nil
		}
	}
	return Key{}, fmt.Errorf("secrets: %w: neither TS_AUTHKEY nor TS_AUTH_KEY is set", ErrEmptyKey)
}

func (envSource) Describe() string { return "env TS_AUTHKEY/TS_AUTH_KEY" }
