package secrets

import (
	"fmt"
	"strings"
)

// Config says where the auth key comes from. At most one field may be
// set; with none set the key comes from the environment. The package
// documentation gives the order.
type Config struct {
	// Key is a key given in code.
	Key Key
	// KeyFile is the path of a file holding the key.
	KeyFile string
	// Vault, if not nil, reads the key from Vault.
	Vault *VaultConfig
}

// FromConfig returns the Source c selects: Key, KeyFile or Vault if one of
// them is set, else [Env]. Setting more than one is an error naming them.
func FromConfig(c Config) (Source, error) {
	var set []string
	if !c.Key.IsZero() {
		set = append(set, "Key")
	}
	if c.KeyFile != "" {
		set = append(set, "KeyFile")
	}
	if c.Vault != nil {
		set = append(set, "Vault")
	}
	if len(set) > 1 {
		return nil, fmt.Errorf("secrets: %s are mutually exclusive: choose one source for the auth key", strings.Join(set, " and "))
	}
	switch {
	case !c.Key.IsZero():
		return Static(c.Key), nil
	case c.KeyFile != "":
		return File(c.KeyFile), nil
	case c.Vault != nil:
		v, err := Vault(*c.Vault)
		if err != nil {
			// Not "return v, err": a nil *VaultSource in a Source is not nil.
			return nil, err
		}
		return v, nil
	}
	return Env(), nil
}
