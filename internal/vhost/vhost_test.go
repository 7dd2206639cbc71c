package vhost

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net"

	"golang.org/x/net/http2/hpack"
	"strings"
	"testing"
	"time"
)

// allowA allows a.example and nothing else.
func allowA(name string) error {
	if strings.EqualFold(name, "a.example") {
		return nil
	}
	return errors.New("not the tunnel's host a.example")
}

// clientHello is the first flight of a real crypto/tls client.
func clientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		tls.Client(c, cfg).Handshake()
		c.Close()
	}()
	var out []byte
	buf := make([]byte, 64<<10)
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := s.Read(buf)
		out = append(out, buf[:n]...)
		got, d := New(Options{Check: func(string) error { return nil }, AllowECH: true}).Feed(out)
		if d != nil {
			t.Fatalf("the ClientHello: %v", d)
		}
		if len(got) == len(out) {
			return out
		}
		if err != nil {
			t.Fatalf("reading the ClientHello: %v (%d bytes)", err, len(out))
		}
	}
}

// echConfigList is an ECHConfigList (draft-ietf-tls-esni) with one
// X25519 / HKDF-SHA256 / AES-128-GCM config whose public name is public.
func echConfigList(t testing.TB, public string) []byte {
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u16 := func(b []byte, v int) []byte { return append(b, byte(v>>8), byte(v)) }
	var c []byte
	c = append(c, 7)   // config_id
	c = u16(c, 0x0020) // DHKEM(X25519, HKDF-SHA256)
	c = u16(c, 32)     // public key
	c = append(c, key.PublicKey().Bytes()...)
	c = u16(c, 4)      // cipher suites
	c = u16(c, 0x0001) // HKDF-SHA256
	c = u16(c, 0x0001) // AES-128-GCM
	c = append(c, 64)  // maximum_name_length
	c = append(c, byte(len(public)))
	c = append(c, public...)
	c = u16(c, 0) // extensions
	cfg := u16(u16(nil, 0xfe0d), len(c))
	cfg = append(cfg, c...)
	return append(u16(nil, len(cfg)), cfg...)
}

// h2cCases are an HTTP/2 client's bytes: the preface, SETTINGS, two
// requests for a.example (the second with HPACK's dynamic table), a DATA
// frame, a WINDOW_UPDATE; then, after those, a request that names
// admin.example in various ways.
func h2cCases() (c struct{ allowed, other, continued, hostField, connect []byte }) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	frame := func(typ, flags byte, stream uint32, p []byte) []byte {
		return append([]byte{byte(len(p) >> 16), byte(len(p) >> 8), byte(len(p)), typ, flags,
			byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}, p...)
	}
	// The variants after the allowed part add nothing to the dynamic
	// table (never-indexed fields), so each decodes after the allowed part.
	variant := false
	block := func(fields ...string) []byte {
		buf.Reset()
		for i := 0; i < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1], Sensitive: variant})
		}
		return bytes.Clone(buf.Bytes())
	}
	get := func(auth string, extra ...string) []byte {
		return block(append([]string{":method", "GET", ":scheme", "http", ":authority", auth, ":path", "/"}, extra...)...)
	}
	a := []byte(h2Preface)
	a = append(a, frame(0x4, 0, 0, []byte{0, 3, 0, 0, 0, 100})...)                                      // SETTINGS
	a = append(a, frame(0x1, 0x4|0x1, 1, get("a.example"))...)                                          // HEADERS, END_HEADERS|END_STREAM
	a = append(a, frame(0x1, 0x4|0x8, 3, append(append([]byte{2}, get("a.example:8080")...), 0, 0))...) // padded
	a = append(a, frame(0x0, 0x1, 3, []byte("body"))...)                                                // DATA
	a = append(a, frame(0x8, 0, 0, []byte{0, 0, 1, 0})...)                                              // WINDOW_UPDATE
	c.allowed = a
	variant = true
	c.other = append(bytes.Clone(a), frame(0x1, 0x4, 5, get("admin.example"))...)
	hb := get("admin.example")
	c.continued = append(bytes.Clone(a), frame(0x1, 0, 7, hb[:3])...)
	c.continued = append(c.continued, frame(0x9, 0x4, 7, hb[3:])...)
	c.hostField = append(bytes.Clone(a), frame(0x1, 0x4, 9, get("a.example", "host", "admin.example"))...)
	c.connect = append(bytes.Clone(a), frame(0x1, 0x4, 11, block(":method", "CONNECT", ":authority", "a.example:443"))...)
	return c
}

type feedCase struct {
	name   string
	opts   Options
	in     []byte
	out    string // the bytes released; "" with pass means all of in
	pass   bool   // all of in is released and nothing denied
	proto  string
	denied string // a substring of the denial, "" if none
	reply  string // a prefix of the denial's Reply
}

func feedCases(t testing.TB) []feedCase {
	helloA := clientHello(t, &tls.Config{ServerName: "a.example"})
	helloB := clientHello(t, &tls.Config{ServerName: "admin.example"})
	helloNone := clientHello(t, &tls.Config{InsecureSkipVerify: true})
	helloECH := clientHello(t, &tls.Config{ServerName: "admin.example", EncryptedClientHelloConfigList: echConfigList(t, "a.example")})
	const getA = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
	const getB = "GET /admin HTTP/1.1\r\nHost: admin.example\r\n\r\n"
	alertName, alertDenied := string(alertUnrecognizedName), string(alertAccessDenied)
	h2c := h2cCases()
	return []feedCase{
		{name: "tls/allowed", in: append(helloA, "\x17\x03\x03\x00\x01x"...), pass: true, proto: ProtoTLS},
		{name: "tls/other-sni", in: helloB, proto: ProtoTLS, denied: `TLS SNI "admin.example": not the tunnel's host`, reply: alertName},
		{name: "tls/no-sni", in: helloNone, pass: true, proto: ProtoTLS},
		{name: "tls/no-sni-strict", opts: Options{RequireName: true}, in: helloNone, proto: ProtoTLS, denied: "no SNI", reply: alertName},
		{name: "tls/ech", in: helloECH, proto: ProtoTLS, denied: `TLS SNI "a.example": encrypted ClientHello (ECH)`, reply: alertDenied},
		{name: "tls/ech-allowed", opts: Options{AllowECH: true}, in: helloECH, pass: true, proto: ProtoTLS},
		{name: "tls/garbage", in: []byte("\x16\x03\x01\x00\x08\x01\x00\x00\x04abcd"), proto: ProtoTLS, denied: "malformed ClientHello", reply: alertDenied},
		{name: "tls/not-hello", in: []byte("\x16\x03\x01\x00\x04\x02\x00\x00\x00"), proto: ProtoTLS, denied: "not a ClientHello", reply: alertDenied},
		{name: "tls/alert-first", in: []byte("\x16\x03\x01\x00\x02\x01\x00\x15\x03\x03\x00\x02\x02\x28"), proto: ProtoTLS, denied: "malformed TLS record", reply: alertDenied},

		{name: "http/allowed", in: []byte(getA), pass: true, proto: ProtoHTTP},
		{name: "http/port-and-case", in: []byte("GET / HTTP/1.1\r\nhost: A.example:8080\r\n\r\n"), pass: true, proto: ProtoHTTP},
		{name: "http/other-host", in: []byte(getB), proto: ProtoHTTP, denied: `HTTP Host "admin.example": not the tunnel's host`, reply: "HTTP/1.1 403 Forbidden\r\n"},
		{name: "http/keep-alive-second", in: []byte(getA + getB), out: getA, proto: ProtoHTTP, denied: `"admin.example"`},
		{name: "http/body-then-second", in: []byte("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello" + getB), out: "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello", proto: ProtoHTTP, denied: `"admin.example"`},
		{name: "http/body-hides-request", in: []byte("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 45\r\n\r\n" + getB), pass: true, proto: ProtoHTTP},
		{name: "http/chunked-then-second", in: []byte("POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n" + getB), out: "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", proto: ProtoHTTP, denied: `"admin.example"`},
		{name: "http/absolute-url", in: []byte("GET http://admin.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"), proto: ProtoHTTP, denied: `HTTP Host "admin.example"`},
		{name: "http/absolute-url-userinfo", in: []byte("GET http://a.example@admin.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"), proto: ProtoHTTP, denied: `"admin.example"`},
		{name: "http/two-hosts", in: []byte("GET / HTTP/1.1\r\nHost: a.example\r\nHost: admin.example\r\n\r\n"), proto: ProtoHTTP, denied: "more than one Host"},
		{name: "http/no-host-1.1", in: []byte("GET / HTTP/1.1\r\n\r\n"), proto: ProtoHTTP, denied: "without a Host header"},
		{name: "http/no-host-1.0", in: []byte("GET / HTTP/1.0\r\n\r\n"), pass: true, proto: ProtoHTTP},
		{name: "http/no-host-1.0-strict", opts: Options{RequireName: true}, in: []byte("GET / HTTP/1.0\r\n\r\n"), proto: ProtoHTTP, denied: "without a Host"},
		{name: "http/0.9", in: []byte("GET /\r\n"), pass: true, proto: ProtoHTTP},
		{name: "http/0.9-strict", opts: Options{RequireName: true}, in: []byte("GET /\r\n"), proto: ProtoHTTP, denied: "HTTP/0.9"},
		{name: "http/fold", in: []byte("GET / HTTP/1.1\r\nHost: a.example\r\nX: 1\r\n admin\r\n\r\n"), proto: ProtoHTTP, denied: "folded"},
		{name: "http/space-before-colon", in: []byte("GET / HTTP/1.1\r\nHost : admin.example\r\n\r\n"), proto: ProtoHTTP, denied: "field name"},
		{name: "http/bare-lf", in: []byte("GET / HTTP/1.1\nHost: admin.example\n\n"), proto: ProtoHTTP, denied: "bare LF"},
		{name: "http/bare-cr", in: []byte("GET / HTTP/1.1\r\nHost: a.example\rX: y\r\n\r\n"), proto: ProtoHTTP, denied: "bare CR"},
		{name: "http/double-space", in: []byte("GET  / HTTP/1.1\r\nHost: admin.example\r\n\r\n"), proto: ProtoHTTP, denied: "malformed request line"},
		{name: "http/cl-and-te", in: []byte("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), proto: ProtoHTTP, denied: "both Content-Length"},
		{name: "http/te-not-chunked", in: []byte("POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), proto: ProtoHTTP, denied: "Transfer-Encoding"},
		{name: "http/te-1.0", in: []byte("POST / HTTP/1.0\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"), proto: ProtoHTTP, denied: "Transfer-Encoding"},
		{name: "http/two-cl", in: []byte("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"), proto: ProtoHTTP, denied: "differing Content-Length"},
		{name: "http/cl-sign", in: []byte("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: +3\r\n\r\n"), proto: ProtoHTTP, denied: "malformed Content-Length"},
		{name: "http/bad-chunk", in: []byte("POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), out: "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n", proto: ProtoHTTP, denied: "chunk size"},
		{name: "http/connect-inside", in: []byte("CONNECT admin.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n"), proto: ProtoHTTP, denied: "CONNECT inside"},
		{name: "http/version", in: []byte("GET / HTTP/1.2\r\nHost: a.example\r\n\r\n"), proto: ProtoHTTP, denied: "version"},
		{name: "http/websocket", in: []byte("GET /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85abcdGET / HTTP/1.1\r\nHost: admin.example\r\n\r\n"), pass: true, proto: ProtoHTTP},
		{name: "http/upgrade-refused", in: []byte("GET /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n\r\n" + getB), out: "GET /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n\r\n", proto: ProtoHTTP, denied: `"admin.example"`},
		{name: "http/leading-crlf", in: []byte("\r\n" + getB), proto: ProtoHTTP, denied: `"admin.example"`},
		{name: "http/unknown-method", in: []byte("FOO / HTTP/1.1\r\nHost: admin.example\r\n\r\n"), proto: ProtoHTTP, denied: `"admin.example"`},
		{name: "h2c/allowed", in: h2c.allowed, pass: true, proto: ProtoH2C},
		{name: "h2c/other-authority", in: h2c.other, out: string(h2c.allowed), proto: ProtoH2C, denied: `HTTP/2 :authority "admin.example": not the tunnel's host`, reply: "\x00\x00\x00\x04"},
		{name: "h2c/continuation", in: h2c.continued, out: string(h2c.allowed), proto: ProtoH2C, denied: `"admin.example"`},
		{name: "h2c/host-field", in: h2c.hostField, out: string(h2c.allowed), proto: ProtoH2C, denied: `"admin.example"`},
		{name: "h2c/connect", in: h2c.connect, out: string(h2c.allowed), proto: ProtoH2C, denied: "CONNECT inside"},
		{name: "h2c/push-promise", in: append(append([]byte(nil), h2c.allowed...), 0, 0, 4, 0x5, 0x4, 0, 0, 0, 1, 0, 0, 0, 2), out: string(h2c.allowed), proto: ProtoH2C, denied: "out of place"},
		{name: "h2c/bad-preface", in: []byte("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"), proto: ProtoH2C, denied: "malformed HTTP/2 client preface"},

		{name: "opaque/postgres", in: []byte("\x00\x00\x00\x08\x04\xd2\x16\x2f"), pass: true, proto: ProtoOpaque},
		{name: "opaque/ssh", in: []byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x00\x00\x05\xdc"), pass: true, proto: ProtoOpaque},
		{name: "opaque/redis", in: []byte("*1\r\n$4\r\nPING\r\n"), pass: true, proto: ProtoOpaque},
	}
}

// TestFeed: each case fed whole and a byte at a time releases the same
// bytes and reaches the same decision.
func TestFeed(t *testing.T) {
	for _, tc := range feedCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Check = allowA
			for _, chunk := range []int{len(tc.in), 1, 7} {
				s := New(tc.opts)
				out, err := feedAll(s, tc.in, chunk)
				want := tc.out
				if tc.pass || (tc.out == "" && tc.denied == "") {
					want = string(tc.in)
				}
				if tc.denied == "" {
					if err != nil {
						t.Fatalf("chunk %d: denied: %v", chunk, err)
					}
				} else {
					var d *Denial
					if !errors.As(err, &d) || !strings.Contains(d.Error(), tc.denied) {
						t.Fatalf("chunk %d: err = %v, want a denial with %q", chunk, err, tc.denied)
					}
					if !bytes.HasPrefix(d.Reply, []byte(tc.reply)) {
						t.Errorf("chunk %d: reply %q, want it to start %q", chunk, d.Reply, tc.reply)
					}
					if tc.pass {
						t.Fatal("bad case: pass and denied")
					}
				}
				if !sameRelease(out, want) || chunk == len(tc.in) && out != want {
					t.Errorf("chunk %d: released %q, want %q", chunk, out, want)
				}
				if s.Proto() != tc.proto {
					t.Errorf("chunk %d: Proto = %q, want %q", chunk, s.Proto(), tc.proto)
				}
			}
		})
	}
}

// sameRelease reports whether got, what a Stream fed in pieces released,
// is want, what it released fed whole: the same, or want ("" then) and
// the start of the first line before its end (empty lines, then no line
// end), which a Stream fed in pieces releases as it comes.
func sameRelease(got, want string) bool {
	extra, ok := strings.CutPrefix(got, want)
	return ok && (extra == "" || want == "" && !strings.Contains(strings.TrimLeft(extra, "\r\n"), "\n"))
}

// feedAll feeds in, chunk bytes at a time, and returns what was released
// and the first error.
func feedAll(s *Stream, in []byte, chunk int) (string, error) {
	var out []byte
	for len(in) > 0 {
		n := min(chunk, len(in))
		b, err := s.Feed(in[:n])
		out = append(out, b...)
		if err != nil {
			return string(out), err
		}
		in = in[n:]
	}
	return string(out), nil
}

// TestHold: nothing of an incomplete head is released, and a head
// longer than MaxHold is refused.
func TestHold(t *testing.T) {
	s := New(Options{Check: allowA, MaxHold: 100})
	if out, err := s.Feed([]byte("GET / HTTP/1.1\r\nHost: a.example\r\n")); len(out) != 0 || err != nil {
		t.Fatalf("Feed(partial head) = %q, %v; want nothing held back", out, err)
	}
	_, err := s.Feed([]byte("X-Pad: " + strings.Repeat("x", 100) + "\r\n"))
	var d *Denial
	if !errors.As(err, &d) || !strings.Contains(d.Reason, "more than 100 bytes") {
		t.Fatalf("Feed(long head) err = %v", err)
	}
	if out, err2 := s.Feed([]byte("\r\n")); len(out) != 0 || err2 != err {
		t.Errorf("after a denial: Feed = %q, %v; want nothing and the same denial", out, err2)
	}
}

// TestPassthroughNoCopy: once a tunnel passes, Feed returns p itself, and
// a body that fits returns p too.
func TestPassthroughNoCopy(t *testing.T) {
	s := New(Options{Check: allowA})
	s.Feed([]byte("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 100000\r\n\r\n"))
	p := make([]byte, 32<<10)
	if out, _ := s.Feed(p); &out[0] != &p[0] {
		t.Error("a body chunk was copied")
	}
	s = New(Options{Check: allowA})
	s.Feed([]byte("\x00\x00"))
	if out, _ := s.Feed(p); &out[0] != &p[0] || !s.Passthrough() {
		t.Error("an opaque stream's bytes were copied")
	}
}

// TestFirstLine: the start of a first line without its end goes out as
// it comes (a client that types and waits); the line is still checked
// once it ends.
func TestFirstLine(t *testing.T) {
	s := New(Options{Check: allowA})
	for _, p := range []string{"x", "y"} {
		if out, err := s.Feed([]byte(p)); string(out) != p || err != nil {
			t.Fatalf("Feed(%q) = %q, %v; want it released at once", p, out, err)
		}
	}
	out, err := s.Feed([]byte(" / HTTP/1.1\r\nHost: admin.example\r\n\r\n"))
	var d *Denial
	if len(out) != 0 || !errors.As(err, &d) || d.Name != "admin.example" {
		t.Fatalf("the line's end: %q, %v; want nothing more released and a denial for admin.example", out, err)
	}
	s = New(Options{Check: allowA})
	s.Feed([]byte("hel"))
	if out, err := s.Feed([]byte("lo\r\n")); string(out) != "lo\r\n" || err != nil || !s.Passthrough() {
		t.Errorf("the line's end = %q, %v, passthrough %v; want it released, opaque", out, err, s.Passthrough())
	}
	s = New(Options{Check: allowA})
	if out, _ := s.Feed([]byte("GET / HTTP/1.1\r\nHost: a.example\r\n")); len(out) != 0 {
		t.Errorf("a request line and a header without the head's end: released %q", out)
	}
}
