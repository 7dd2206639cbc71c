package socks

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// checkRequestLine reads ahead the first request line of an HTTP client
// connection and answers it here when net/http would reject it with its
// bare "400 Bad Request" and no audit line: a target whose host is
// malformed (NUL, CR, space, tab, '%', '#', '\', a zone, brackets around
// something that is not an IPv6 address) gets the same 403 "malformed host
// name" denial as a malformed host that net/http lets through; any other
// line net/http cannot parse gets a 400 saying so. Both are audited. It
// reports whether it answered (and the connection is done with).
//
// Only the first request of a connection is read ahead: net/http answers
// a later one on a keep-alive connection itself. A line longer than the
// read-ahead buffer goes to net/http unchecked; its host, if it has one, is
// checked with the rest of policy as usual.
func (s *Server) checkRequestLine(cc *clientConn) bool {
	line, err := peekLine(cc.br)
	if err != nil {
		if isTimeout(err) {
			rec := s.newRecord(cc, "http", cc.start)
			rec.fail(fmt.Errorf("handshake timeout: no complete request line within %v", s.cfg.HandshakeTimeout))
			writeHTTPError(cc, http.StatusRequestTimeout, "", fmt.Sprintf("tsconnect: no complete request line within %v (the handshake timeout)\n", s.cfg.HandshakeTimeout))
			s.finish(rec)
			return true
		}
		return false // too long, or the client left: net/http's to handle
	}
	// net/http's own parser, on the line alone: it accepts exactly the
	// request lines the server would.
	_, perr := http.ReadRequest(bufio.NewReaderSize(strings.NewReader(line+"\r\n\r\n"), len(line)+4))
	if perr == nil {
		return false
	}
	method, target, version := splitRequestLine(line)
	rec := s.newRecord(cc, "http", cc.start)
	if method == http.MethodConnect {
		rec.Protocol = "http-connect"
	}
	var body string
	code := http.StatusBadRequest
	host, port, hostErr := targetHost(method, target)
	switch {
	case isDenial(hostErr) || hostErr == errBadHost:
		rec.Host, rec.Port = host, port
		pe := newPolicyError(joinHostPort(host, port), hostErr)
		rec.denyPolicy(pe)
		code, body = http.StatusForbidden, fmt.Sprintf("tsconnect: %v\n", pe)
	case len(line) > 0 && line[0] == 0x16:
		rec.fail(errors.New("malformed request: TLS sent to the plain-text proxy"))
		body = "tsconnect: this proxy speaks plain HTTP (and SOCKS5): use http:// in the proxy URL, not https://\n"
	case !isToken(method) || target == "":
		rec.fail(fmt.Errorf("malformed request: %q is not an HTTP request line", line))
		body = notHTTP
	case version == "":
		rec.fail(fmt.Errorf("malformed request line %q: no HTTP version (a line break in the target?)", line))
		body = "tsconnect: malformed request line: no HTTP version (a line break in the target?)\n"
	case method == http.MethodConnect && hostErr != nil:
		rec.fail(fmt.Errorf("bad CONNECT target %q: %v", target, hostErr))
		body = fmt.Sprintf("tsconnect: bad CONNECT target %q: want host:port, e.g. CONNECT example.ts.net:443\n", target)
	default:
		rec.fail(fmt.Errorf("malformed request line %q: %v", line, perr))
		body = fmt.Sprintf("tsconnect: malformed request line: %v\n", perr)
	}
	writeHTTPError(cc, code, "", body)
	s.finish(rec)
	return true
}

// writeHTTPError answers a client outside http.Server, with extra header
// lines ("Name: value\r\n" each) if any, and closes the connection.
func writeHTTPError(cc *clientConn, code int, extra, body string) {
	cc.SetWriteDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(cc, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n%s",
		code, http.StatusText(code), len(body), extra, body)
	lingerClose(cc)
}

// notHTTP answers what is neither SOCKS5 nor an HTTP request.
const notHTTP = "tsconnect: not an HTTP request line: this port serves SOCKS5 (first byte 0x05) and HTTP proxy requests\n"

// isToken reports whether s is a non-empty HTTP token (RFC 9110), as a
// method must be.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

var errLongLine = errors.New("request line longer than the read-ahead buffer")

// peekLine returns the first line buffered in br, without its line
// ending, reading more as needed up to br's size, without consuming it.
func peekLine(br *bufio.Reader) (string, error) {
	for {
		buf, _ := br.Peek(br.Buffered()) // never blocks
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return strings.TrimSuffix(string(buf[:i]), "\r"), nil
		}
		if len(buf) == br.Size() {
			return "", errLongLine
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return "", err
		}
	}
}

// splitRequestLine splits a request line the way its sender meant it: the
// method up to the first space, the version after the last space if it
// looks like one, the target in between (spaces and all).
func splitRequestLine(line string) (method, target, version string) {
	method, rest, _ := strings.Cut(line, " ")
	if i := strings.LastIndexByte(rest, ' '); i >= 0 && strings.HasPrefix(rest[i+1:], "HTTP/") {
		return method, rest[:i], rest[i+1:]
	}
	return method, rest, ""
}

// targetHost finds the host in a request target that net/http rejected:
// the authority of a CONNECT target or of an absolute URL, up to the port.
// It returns a denial when that host is malformed, another error when
// the target has no host or a bad port, and nil otherwise.
func targetHost(method, target string) (host string, port uint16, err error) {
	authority := target
	if method != http.MethodConnect {
		_, after, ok := strings.Cut(target, "://")
		if !ok {
			return "", 0, errors.New("no host")
		}
		if i := strings.IndexAny(after, "/?"); i >= 0 {
			after = after[:i]
		}
		authority, port = after, 80
	}
	var hostOK bool
	var hostErr error // the denial of a malformed host
	portStr := ""
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return authority, port, errBadHost
		}
		host, portStr = authority[1:end], authority[end+1:]
		a, err := netip.ParseAddr(host)
		hostOK = err == nil && a.Is6() && a.Zone() == ""
		if !hostOK {
			host = authority[:end+1] // as sent, brackets and all
		}
	} else {
		var ok bool
		host, portStr, ok = strings.Cut(authority, ":")
		if ok {
			portStr = ":" + portStr
		}
		hostErr = checkHost(host)
		hostOK = hostErr == nil
	}
	var portErr error
	switch {
	case strings.HasPrefix(portStr, ":"):
		p, ok := parsePort(portStr[1:])
		if !ok {
			portErr = fmt.Errorf("bad port %q", portStr[1:])
		}
		port = p
	case portStr != "":
		portErr = fmt.Errorf("%q after the address", portStr)
	case method == http.MethodConnect:
		portErr = errors.New("no port")
	}
	switch {
	case host == "" && !strings.HasPrefix(authority, "["):
		return host, port, errors.New("no host")
	case hostErr != nil:
		return host, port, hostErr
	case !hostOK:
		return host, port, errBadHost
	}
	return host, port, portErr
}
