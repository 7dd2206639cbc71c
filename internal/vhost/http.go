package vhost

import (
	"bytes"
	"net"
	"strconv"
	"strings"
)

// The kinds of first line classify finds.
const (
	lineOther  = iota // not HTTP: pass through
	lineHTTP          // METHOD SP TARGET SP HTTP/…, to be parsed strictly
	lineHTTP09        // GET SP TARGET, an HTTP/0.9 request (nginx serves them)
)

// classify looks at the first line of a tunnel that starts with a token
// character or an empty line: done is false while it needs more bytes.
// It errs towards HTTP: a line a server could take for a request is
// parsed as one, strictly, and refused if it is not well formed.
func classify(b []byte) (kind int, done bool) {
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++
	}
	start := i
	for i < len(b) && isToken(b[i]) {
		i++
	}
	if i == len(b) {
		return 0, false
	}
	if i == start || b[i] != ' ' {
		return lineOther, true
	}
	method := string(b[start:i])
	line := b[i:]
	end := bytes.IndexByte(line, '\n')
	if end >= 0 {
		line = line[:end]
	}
	for _, c := range line {
		if c < 0x20 && c != '\r' && c != '\t' || c == 0x7f {
			return lineOther, true
		}
	}
	if end < 0 {
		return 0, false
	}
	f := strings.Fields(string(line))
	switch {
	case len(f) >= 2 && strings.HasPrefix(f[len(f)-1], "HTTP/"):
		return lineHTTP, true
	case len(f) == 1 && method == "GET":
		return lineHTTP09, true
	}
	return lineOther, true
}

// request is what head found in one request head.
type request struct {
	method, target, version string
	hosts                   []string
	contentLength           []string
	transferEncoding        []string
	upgrade                 bool
}

// head waits for a complete request head, parses it strictly and checks
// the names in it; then it releases the head and sets the state for the
// body.
func (s *Stream) head(b []byte) (int, *Denial) {
	i := 0
	for i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' { // RFC 9112: empty lines before a request
		i += 2
	}
	if i < len(b) && (b[i] == '\n' || b[i] == '\r' && i+1 == len(b)) {
		if b[i] == '\n' {
			return 0, s.deny("", "malformed request: a bare LF", false)
		}
		return 0, nil
	}
	if rest := b[i:]; len(rest) < len(h2Preface) && strings.HasPrefix(h2Preface, string(rest)) {
		return 0, nil // perhaps HTTP/2's preface
	} else if strings.HasPrefix(string(rest[:min(len(rest), len(h2Preface))]), h2Preface) {
		s.proto, s.st = ProtoH2C, stH2
		return i + len(h2Preface), nil
	}
	var r request
	lineNo := 0
	for p := i; ; lineNo++ {
		nl := bytes.IndexByte(b[p:], '\n')
		if nl < 0 {
			return 0, nil
		}
		if nl == 0 || b[p+nl-1] != '\r' {
			return 0, s.deny("", "malformed request: a bare LF", false)
		}
		line := b[p : p+nl-1]
		p += nl + 1
		if bytes.IndexByte(line, '\r') >= 0 || bytes.IndexByte(line, 0) >= 0 {
			return 0, s.deny("", "malformed request: a bare CR or NUL", false)
		}
		if lineNo == 0 {
			if d := s.requestLine(&r, string(line)); d != nil {
				return 0, d
			}
			continue
		}
		if len(line) == 0 {
			return s.endHead(&r, p)
		}
		if d := s.header(&r, line); d != nil {
			return 0, d
		}
	}
}

func (s *Stream) requestLine(r *request, line string) *Denial {
	f := strings.Split(line, " ")
	if len(f) != 3 || f[0] == "" || f[1] == "" || !allToken(f[0]) {
		return s.deny("", "malformed request line", false)
	}
	r.method, r.target, r.version = f[0], f[1], f[2]
	if r.method == "PRI" && r.target == "*" && r.version == "HTTP/2.0" {
		s.proto = ProtoH2C
		return s.deny("", "malformed HTTP/2 client preface", false)
	}
	if r.version != "HTTP/1.1" && r.version != "HTTP/1.0" {
		return s.deny("", "unsupported HTTP version "+strconv.Quote(r.version), false)
	}
	return nil
}

func (s *Stream) header(r *request, line []byte) *Denial {
	if line[0] == ' ' || line[0] == '\t' {
		return s.deny("", "malformed request: a folded header line", false)
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || !allToken(string(line[:colon])) {
		return s.deny("", "malformed header field name", false)
	}
	name := string(line[:colon])
	value := strings.Trim(string(line[colon+1:]), " \t")
	switch {
	case strings.EqualFold(name, "Host"):
		r.hosts = append(r.hosts, value)
	case strings.EqualFold(name, "Content-Length"):
		r.contentLength = append(r.contentLength, value)
	case strings.EqualFold(name, "Transfer-Encoding"):
		r.transferEncoding = append(r.transferEncoding, value)
	case strings.EqualFold(name, "Upgrade"):
		r.upgrade = true
	}
	return nil
}

// endHead checks the names of a complete head of n bytes and sets up its
// body.
func (s *Stream) endHead(r *request, n int) (int, *Denial) {
	if r.method == "CONNECT" {
		return 0, s.deny("", "CONNECT inside a tunnel", false)
	}
	var names []string
	switch {
	case len(r.hosts) > 1:
		return 0, s.deny("", "more than one Host header", false)
	case len(r.hosts) == 1 && r.hosts[0] != "":
		h, ok := hostOf(r.hosts[0])
		if !ok {
			return 0, s.deny(r.hosts[0], "malformed Host header", false)
		}
		names = append(names, h)
	case r.version == "HTTP/1.1":
		return 0, s.deny("", "an HTTP/1.1 request without a Host header", false)
	}
	switch {
	case strings.HasPrefix(r.target, "/"), r.target == "*" && r.method == "OPTIONS":
	default:
		h, ok := absoluteHost(r.target)
		if !ok {
			return 0, s.deny("", "malformed request target", false)
		}
		names = append(names, h)
	}
	if len(names) == 0 && s.o.RequireName {
		return 0, s.deny("", "a request without a Host", true)
	}
	for _, h := range names {
		if d := s.check(h); d != nil {
			return 0, d
		}
	}
	s.st = stHead
	if r.upgrade {
		s.st = stAfterUp
	}
	switch {
	case len(r.transferEncoding) > 0:
		if len(r.contentLength) > 0 {
			return 0, s.deny("", "both Content-Length and Transfer-Encoding", false)
		}
		if len(r.transferEncoding) > 1 || !strings.EqualFold(r.transferEncoding[0], "chunked") || r.version != "HTTP/1.1" {
			return 0, s.deny("", "a Transfer-Encoding other than HTTP/1.1 chunked", false)
		}
		s.after, s.st = s.st, stChunkSize
	case len(r.contentLength) > 0:
		for _, v := range r.contentLength[1:] {
			if v != r.contentLength[0] {
				return 0, s.deny("", "differing Content-Length headers", false)
			}
		}
		v := r.contentLength[0]
		cl, err := strconv.ParseInt(v, 10, 64)
		if err != nil || cl < 0 || v == "" || v[0] < '0' || v[0] > '9' {
			return 0, s.deny("", "malformed Content-Length", false)
		}
		if cl > 0 {
			s.after, s.st, s.n = s.st, stBody, cl
		}
	}
	return n, nil
}

// bodyLine finds a chunk-size or trailer line in b: the line without its
// CRLF and the bytes it takes; ok false with no denial while b holds no
// line end yet.
func (s *Stream) bodyLine(b []byte, what string) (line []byte, n int, d *Denial) {
	nl := bytes.IndexByte(b, '\n')
	switch {
	case nl < 0 && len(b) > 4096:
		return nil, 0, s.deny("", "malformed chunked body: a "+what+" line too long", false)
	case nl < 0:
		return nil, 0, nil
	case nl == 0 || b[nl-1] != '\r' || bytes.ContainsAny(b[:nl-1], "\r\x00"):
		return nil, 0, s.deny("", "malformed chunked body: a bad "+what+" line", false)
	}
	return b[:nl-1], nl + 1, nil
}

// chunkSize reads a chunk-size line: hex digits, an optional extension.
func (s *Stream) chunkSize(b []byte) (int, *Denial) {
	line, n, d := s.bodyLine(b, "chunk")
	if n == 0 {
		return 0, d
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	size, err := strconv.ParseUint(string(line), 16, 63)
	if err != nil || len(line) == 0 || line[0] == '+' {
		return 0, s.deny("", "malformed chunked body: a bad chunk size", false)
	}
	if size == 0 {
		s.st = stTrailer
	} else {
		s.st, s.n = stChunkData, int64(size)
	}
	return n, nil
}

// trailer reads the trailer section's lines, up to the empty one.
func (s *Stream) trailer(b []byte) (int, *Denial) {
	line, n, d := s.bodyLine(b, "trailer")
	switch {
	case n == 0:
		return 0, d
	case len(line) == 0:
		s.st = s.after
	case line[0] == ' ' || line[0] == '\t' || bytes.IndexByte(line, ':') <= 0:
		return 0, s.deny("", "malformed chunked body: a bad trailer line", false)
	}
	return n, nil
}

// hostOf is the host of a Host header value (or a URL's authority):
// host, host:port, [v6], [v6]:port.
func hostOf(v string) (string, bool) {
	host, port := v, ""
	if strings.HasPrefix(v, "[") {
		end := strings.IndexByte(v, ']')
		if end < 0 {
			return "", false
		}
		host, port = v[1:end], v[end+1:]
		if port != "" && port[0] != ':' {
			return "", false
		}
	} else if i := strings.LastIndexByte(v, ':'); i >= 0 {
		host, port = v[:i], v[i:]
	}
	if port != "" {
		if _, err := strconv.ParseUint(port[1:], 10, 16); err != nil && port != ":" {
			return "", false
		}
	}
	if host == "" || strings.ContainsAny(host, " \t@/\\:?#") && net.ParseIP(host) == nil {
		return "", false
	}
	return host, true
}

// absoluteHost is the host of an absolute-form request target.
func absoluteHost(t string) (string, bool) {
	i := strings.Index(t, "://")
	if i <= 0 || !allToken(t[:i]) {
		return "", false
	}
	auth := t[i+3:]
	if j := strings.IndexAny(auth, "/?#"); j >= 0 {
		auth = auth[:j]
	}
	if j := strings.LastIndexByte(auth, '@'); j >= 0 {
		auth = auth[j+1:]
	}
	return hostOf(auth)
}

func allToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isToken(s[i]) {
			return false
		}
	}
	return true
}

// mayStartRequest reports whether a stream whose next byte is c may be an
// HTTP request: a method's first character, or an empty line before it.
func mayStartRequest(c byte) bool { return isToken(c) || c == '\r' || c == '\n' }

// isToken reports whether c is a tchar (RFC 9110).
func isToken(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
