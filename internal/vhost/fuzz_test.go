package vhost

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzStream: whatever the bytes, Feed releases a prefix of them, and the
// same prefix and decision however they are split into two Feeds — so a
// client cannot get past the check by how it times its writes.
func FuzzStream(f *testing.F) {
	for _, tc := range feedCases(f) {
		f.Add(tc.in, uint16(len(tc.in)/2), tc.opts.RequireName)
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint16, strict bool) {
		o := Options{Check: allowA, RequireName: strict, MaxHold: 4096}
		whole, werr := feedAll(New(o), in, len(in)+1)
		cut := int(split) % (len(in) + 1)
		s := New(o)
		a, aerr := s.Feed(in[:cut])
		got := string(a)
		var perr error = aerr
		if aerr == nil {
			b, berr := s.Feed(in[cut:])
			got, perr = got+string(b), berr
		}
		if !bytes.HasPrefix(in, []byte(whole)) {
			t.Fatalf("released %q, not a prefix of the input", whole)
		}
		// They agree, but that the split one may have released the start
		// of the first line before its end (see sameRelease).
		if !sameRelease(got, whole) || errString(werr) != errString(perr) {
			t.Fatalf("whole: %q, %v; split at %d: %q, %v", whole, werr, cut, got, perr)
		}
		var d *Denial
		if errors.As(werr, &d) && len(d.Reply) == 0 {
			t.Fatal("a denial without a reply")
		}
	})
}

// FuzzClientHello: a handshake record with any body is parsed or denied,
// never a panic, and a denial names no SNI it did not check.
func FuzzClientHello(f *testing.F) {
	for _, tc := range feedCases(f) {
		if tc.proto == ProtoTLS && len(tc.in) > 9 {
			f.Add(tc.in[9:])
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 16000 {
			return
		}
		msg := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
		rec := append([]byte{0x16, 3, 1, byte(len(msg) >> 8), byte(len(msg))}, msg...)
		var checked string
		s := New(Options{Check: func(n string) error { checked = n; return allowA(n) }})
		out, err := s.Feed(rec)
		var d *Denial
		switch {
		case err == nil:
			if len(out) != len(rec) {
				t.Fatalf("no denial, but %d of %d bytes released", len(out), len(rec))
			}
		case !errors.As(err, &d):
			t.Fatalf("err %v is not a *Denial", err)
		case len(out) != 0:
			t.Fatalf("denied, but %d bytes released", len(out))
		case d.Name != "" && d.Name != checked && !bytes.Contains(d.Reply, []byte{49}):
			t.Fatalf("denial names %q, checked %q", d.Name, checked)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
