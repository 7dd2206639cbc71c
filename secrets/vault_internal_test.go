package secrets

import (
	"errors"
	"strings"
	"testing"
)

func TestKV2DataPath(t *testing.T) {
	cases := []struct {
		mount, path, want, wantErr string
	}{
		{mount: "secret", path: "secret/tailscale", want: "secret/data/tailscale"},
		{mount: "secret", path: "secret/data/tailscale", want: "secret/data/tailscale"},
		{mount: "secret", path: "secret/a/b", want: "secret/data/a/b"},
		{mount: "secret", path: "secret/data", want: "secret/data/data"},
		{mount: "kv/team", path: "kv/team/x", want: "kv/team/data/x"},
		// The mount Vault reports can carry the namespace the path lacks.
		{mount: "ns1/secret", path: "secret/x", want: "secret/data/x"},
		{mount: "secret", path: "secret", wantErr: "names the kv mount itself"},
		{mount: "secret", path: "secretive/x", wantErr: "is not on the kv mount"},
		{mount: "other", path: "secret/x", wantErr: "is not on the kv mount"},
	}
	for _, tc := range cases {
		got, err := kv2DataPath(tc.mount, tc.path)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("kv2DataPath(%q, %q) = %q, %v; want error %q", tc.mount, tc.path, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("kv2DataPath(%q, %q) = %q, %v; want %q", tc.mount, tc.path, got, err, tc.want)
		}
	}
}

func TestMessages(t *testing.T) {
	cases := []struct {
		errs []string
		want string
	}{
		{nil, "no error message"},
		{[]string{}, "no error message"},
		{[]string{"permission denied"}, "Vault: permission denied"},
		{[]string{"1 error occurred:\n\t* permission denied\n\n"}, "Vault: permission denied"},
		{[]string{"2 errors occurred:\n\t* a\n\t* b\n\n"}, "Vault: a; b"},
	}
	for _, tc := range cases {
		if got := (&vaultReply{Errors: tc.errs}).messages(); got != tc.want {
			t.Errorf("messages(%q) = %q; want %q", tc.errs, got, tc.want)
		}
	}
}

func TestScrub(t *testing.T) {
	base := errors.New("vault said: token hvs.secret-token-1 is bad")
	err := scrub(base, []string{"hvs.secret-token-1", "tiny"})
	if strings.Contains(err.Error(), "hvs.secret-token-1") || !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("scrub = %q", err)
	}
	if !errors.Is(err, base) {
		t.Error("scrub lost the wrapped error")
	}
	if scrub(base, []string{"absent-value"}) != base {
		t.Error("scrub changed an error holding no secret")
	}
}
