package vhost

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// HTTP/2 without TLS (h2c: prior knowledge, or after an Upgrade), as gRPC
// speaks it in plaintext: every request's :authority (and host) is
// checked. Frames pass as they come but for header blocks (HEADERS and
// its CONTINUATIONs), held whole until checked, and decoded in order with
// one HPACK decoder, so its dynamic table follows the client's.

// h2Preface is what an HTTP/2 client sends first (RFC 9113 §3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

const (
	h2FrameHeader  = 9
	h2Headers      = 0x1
	h2PushPromise  = 0x5
	h2Continuation = 0x9

	h2FlagEndHeaders = 0x4
	h2FlagPadded     = 0x8
	h2FlagPriority   = 0x20
)

// h2Frames reads the next frame: a header block is held until complete
// and checked; any other frame's header is released and its payload
// passes as a body does.
func (s *Stream) h2Frames(b []byte) (int, *Denial) {
	if len(b) < h2FrameHeader {
		return 0, nil
	}
	length := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
	switch b[3] {
	case h2Headers:
	case h2PushPromise, h2Continuation:
		return 0, s.deny("", fmt.Sprintf("HTTP/2 frame type %#x out of place from a client", b[3]), false)
	default:
		s.after, s.st, s.n = stH2, stBody, int64(length)
		if length == 0 {
			s.st = stH2
		}
		return h2FrameHeader, nil
	}
	// HEADERS, then CONTINUATIONs of the same stream up to END_HEADERS.
	stream := binary.BigEndian.Uint32(b[5:9]) & 0x7fffffff
	var block []byte
	for off := 0; ; {
		if len(b)-off < h2FrameHeader {
			return 0, s.holdH2(len(b))
		}
		h := b[off : off+h2FrameHeader]
		n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		if len(b)-off-h2FrameHeader < n {
			return 0, s.holdH2(len(b))
		}
		if binary.BigEndian.Uint32(h[5:9])&0x7fffffff != stream || off > 0 && h[3] != h2Continuation {
			return 0, s.deny("", "HTTP/2 header block interrupted", false)
		}
		p := b[off+h2FrameHeader : off+h2FrameHeader+n]
		if off == 0 {
			var ok bool
			if p, ok = h2HeadersPayload(h[4], p); !ok {
				return 0, s.deny("", "malformed HTTP/2 HEADERS frame", false)
			}
		}
		block = append(block, p...)
		off += h2FrameHeader + n
		if h[4]&h2FlagEndHeaders != 0 {
			if d := s.checkH2Block(block); d != nil {
				return 0, d
			}
			return off, nil
		}
	}
}

// holdH2 is nil while a header block may still complete, a denial once
// it is longer than MaxHold.
func (s *Stream) holdH2(held int) *Denial {
	if held > s.o.MaxHold {
		return s.deny("", fmt.Sprintf("an HTTP/2 header block of more than %d bytes", s.o.MaxHold), false)
	}
	return nil
}

// h2HeadersPayload strips a HEADERS frame's padding and priority fields.
func h2HeadersPayload(flags byte, p []byte) ([]byte, bool) {
	pad := 0
	if flags&h2FlagPadded != 0 {
		if len(p) < 1 {
			return nil, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags&h2FlagPriority != 0 {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}

// checkH2Block decodes a complete header block and checks its names.
func (s *Stream) checkH2Block(block []byte) *Denial {
	if s.hpack == nil {
		s.hpack = hpack.NewDecoder(4096, nil)
		// The server's SETTINGS_HEADER_TABLE_SIZE bounds the client's
		// table, and the server's side is not seen here: allow what a
		// server may grant.
		s.hpack.SetAllowedMaxDynamicTableSize(1 << 20)
		s.hpack.SetMaxStringLength(s.o.MaxHold)
	}
	fields, err := s.hpack.DecodeFull(block)
	if err != nil {
		return s.deny("", "malformed HTTP/2 header block: "+err.Error(), false)
	}
	var method, authority string
	var hosts []string
	for _, f := range fields {
		switch strings.ToLower(f.Name) {
		case ":method":
			method = f.Value
		case ":authority":
			authority = f.Value
		case "host":
			hosts = append(hosts, f.Value)
		}
	}
	if method == "" && authority == "" && len(hosts) == 0 {
		return nil // trailers
	}
	if method == "CONNECT" {
		return s.deny("", "CONNECT inside a tunnel", false)
	}
	if len(hosts) > 1 {
		return s.deny("", "more than one host header", false)
	}
	var names []string
	for _, v := range append(hosts, authority) {
		if v == "" {
			continue
		}
		h, ok := hostOf(v)
		if !ok {
			return s.deny(v, "malformed :authority", false)
		}
		names = append(names, h)
	}
	if len(names) == 0 && s.o.RequireName {
		return s.deny("", "a request without :authority", true)
	}
	for _, h := range names {
		if d := s.check(h); d != nil {
			return d
		}
	}
	return nil
}

// h2GoAway is the reply to a refused h2c stream: an empty SETTINGS (the
// server preface a client waits for) and a GOAWAY (PROTOCOL_ERROR) whose
// debug data says why.
func h2GoAway(reason string) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0, 0, 0x4, 0, 0, 0, 0, 0}) // SETTINGS
	debug := "tsconnect: " + reason
	if len(debug) > 1024 {
		debug = debug[:1024]
	}
	n := 8 + len(debug)
	b.Write([]byte{byte(n >> 16), byte(n >> 8), byte(n), 0x7, 0, 0, 0, 0, 0}) // GOAWAY on stream 0
	b.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0x1})                                 // last stream 0, PROTOCOL_ERROR
	b.WriteString(debug)
	return b.Bytes()
}
