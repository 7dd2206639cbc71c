package secrets_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tsconnect/tsconnect/internal/vaulttest"
	"github.com/tsconnect/tsconnect/secrets"
)

type exported struct {
	Name string
	Key  secrets.Key
	Ptr  *secrets.Key
}

type private struct {
	name string
	key  secrets.Key
}

// TestKeyNeverPrints checks every way a Key commonly ends up in output.
func TestKeyNeverPrints(t *testing.T) {
	k := mustKey(t, testAuthKey)
	values := map[string]any{
		"Key":                   k,
		"*Key":                  &k,
		"struct, exported":      exported{"n", k, &k},
		"*struct, exported":     &exported{"n", k, &k},
		"struct, private field": private{"n", k},
		"slice":                 []secrets.Key{k},
		"map":                   map[string]secrets.Key{"k": k},
		"VaultConfig":           secrets.VaultConfig{Token: k, SecretID: k, WrappedToken: k},
	}
	for name, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%p", "%T"} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, testAuthKey) || strings.Contains(out, "kT3stK3y") {
				t.Errorf("%s %s: %s", name, verb, out)
			}
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Errorf("%s: json: %v", name, err)
		}
		if bytes.Contains(b, []byte("kT3stK3y")) {
			t.Errorf("%s: json: %s", name, b)
		}
	}
	if got := fmt.Sprint(k); got != "[redacted]" {
		t.Errorf("Sprint = %q", got)
	}
	if b, _ := json.Marshal(exported{Key: k}); !strings.Contains(string(b), `"Key":"[redacted]"`) {
		t.Errorf("json = %s", b)
	}
	if b, _ := k.MarshalText(); string(b) != "[redacted]" {
		t.Errorf("MarshalText = %s", b)
	}

	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil)} {
		l := slog.New(h)
		l.Info("key", "key", k, "ptr", &k, "struct", exported{Key: k}, "private", private{key: k})
		l.Info("group", slog.Group("g", slog.Any("key", k)))
	}
	log.New(&buf, "", 0).Printf("%v %+v %v", k, exported{Key: k}, private{key: k})
	if strings.Contains(buf.String(), "kT3stK3y") {
		t.Errorf("log output holds the key:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "[redacted]") {
		t.Errorf("log output never says [redacted]:\n%s", buf.String())
	}
}

func TestKeyZero(t *testing.T) {
	var k secrets.Key
	if !k.IsZero() || k.Reveal() != "" || k.Kind() != secrets.KindUnknown {
		t.Errorf("zero Key: IsZero %v, Kind %v", k.IsZero(), k.Kind())
	}
	if _, err := secrets.Static(k).AuthKey(context.Background()); err == nil {
		t.Error("Static(zero) gave no error")
	}
}

func TestNewKey(t *testing.T) {
	cases := []struct {
		in      string
		kind    secrets.KeyKind
		tags    bool
		wantErr string
	}{
		{in: "tskey-auth-abc\n", kind: secrets.KindTailscaleAuth},
		{in: "tskey-client-abc?ephemeral=false", kind: secrets.KindTailscaleClient, tags: true},
		{in: "hskey-auth-abc", kind: secrets.KindHeadscale},
		{in: strings.Repeat("ab", 24), kind: secrets.KindLegacyHex},
		{in: "something", kind: secrets.KindUnknown},
		{in: "  ", wantErr: "auth key is empty"},
		{in: "tskey-auth-abc tskey-auth-def", wantErr: "secrets: auth key: the value has a space"},
	}
	for _, tc := range cases {
		k, err := secrets.NewKey(tc.in)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("NewKey(%q) error %v; want %q", tc.in, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "tskey-auth-abc") {
				t.Errorf("NewKey error holds the value: %v", err)
			}
		case err != nil:
			t.Errorf("NewKey(%q): %v", tc.in, err)
		case k.Kind() != tc.kind || k.Kind().NeedsTags() != tc.tags:
			t.Errorf("NewKey(%q) kind %v (needs tags %v); want %v (%v)", tc.in, k.Kind(), k.Kind().NeedsTags(), tc.kind, tc.tags)
		}
	}
}

// TestNoFileWritten runs every Vault flow with HOME, TMPDIR, the XDG
// directories and the working directory pointed at empty directories,
// and checks they stay empty: the key and the tokens live in memory only.
func TestNoFileWritten(t *testing.T) {
	clearEnv(t)
	// Set up the server and the input files first, outside the watched
	// directories.
	s := vaulttest.New(t)
	s.PutKV("secret", "tailscale", 2, map[string]any{"authkey": testAuthKey})
	s.AddAppRole(testRoleID, testSecretID)
	s.AddKubernetesRole("tsconnect", testJWT)
	jwt := writeFile(t, "jwt", testJWT)
	keyFile := writeFile(t, "key", testAuthKey)

	watched := map[string]string{}
	for _, name := range []string{"HOME", "TMPDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"} {
		dir := t.TempDir()
		watched[name] = dir
		t.Setenv(name, dir)
	}
	wd := t.TempDir()
	watched["working directory"] = wd
	t.Chdir(wd)

	cfgs := []secrets.VaultConfig{
		{Address: s.URL, Path: "secret/tailscale", Token: mustKey(t, s.RootToken)},
		{Address: s.URL, Path: "secret/tailscale", Auth: secrets.AuthAppRole, RoleID: testRoleID, SecretID: mustKey(t, s.Wrap(map[string]any{"secret_id": testSecretID})), SecretIDWrapped: true},
		{Address: s.URL, Path: "secret/tailscale", Auth: secrets.AuthKubernetes, KubernetesRole: "tsconnect", KubernetesJWTFile: jwt},
		{Address: s.URL, Auth: secrets.AuthWrapped, WrappedToken: mustKey(t, s.Wrap(map[string]any{"authkey": testAuthKey}))},
		{Address: s.URL, Path: "secret/missing", Token: mustKey(t, s.RootToken)}, // an error path too
	}
	for i, cfg := range cfgs {
		v, err := secrets.Vault(cfg)
		if err != nil {
			t.Fatal(err)
		}
		k, err := v.AuthKey(context.Background())
		if i < len(cfgs)-1 && (err != nil || k.Reveal() != testAuthKey) {
			t.Errorf("flow %d: %v", i, err)
		}
	}
	if _, err := secrets.File(keyFile).AuthKey(context.Background()); err != nil {
		t.Error(err)
	}

	for name, dir := range watched {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if p != dir {
				t.Errorf("%s: %s was written", name, p)
			}
			return nil
		})
	}
}
