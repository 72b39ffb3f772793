package command

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
)

// Canonical returns the canonical JSON form of a JSON value, the form
// BodyHash is computed from: object members sorted by name (byte order of
// the UTF-8 names), no insignificant whitespace, strings decoded and
// re-encoded one way (see appendString), numbers kept as their literal text.
//
// Two values have the same canonical form iff they are JSON-equal, with one
// deliberate choice: numbers compare by their text, so 1, 1.0 and 1e0 differ.
// Graph reads numbers into typed properties and the worker does not know
// those types; treating 1 and 1.0 as the same body could call a body "equal"
// that Graph reads differently (a string-typed property, a large integer),
// while keeping the text only ever makes two bodies differ that might have
// been equal, which SPEC §3 turns into a conflict, not a wrong call.
//
// A value with duplicate object keys, an unpaired surrogate escape, invalid
// UTF-8 or trailing data has no canonical form: Canonical returns an error.
func Canonical(v json.RawMessage) ([]byte, error) {
	t, we := walk(v, false)
	if we != nil {
		return nil, errors.New("command: canonical form: " + (&Error{Field: we.field, Detail: we.detail}).Error())
	}
	if t.hasDup {
		p := t.dupOther
		if p == "" {
			p = t.dupData
		}
		return nil, errors.New("command: canonical form: " + p + ": duplicate object key")
	}
	return t.canonical(make([]byte, 0, len(v)), 0), nil
}

// bodyHash is the hex SHA-256 of the canonical form of node i.
func (t *tree) bodyHash(i int32) string {
	var buf [512]byte
	sum := sha256.Sum256(t.canonical(buf[:0], i))
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	return string(h[:])
}

// canonical appends the canonical form of node i to dst. Recursion is
// bounded by maxDepth.
func (t *tree) canonical(dst []byte, i int32) []byte {
	n := &t.nodes[i]
	switch n.kind {
	case kindNull:
		return append(dst, "null"...)
	case kindBool, kindNumber:
		return append(dst, n.str...)
	case kindString:
		return appendString(dst, n.str)
	case kindArray:
		dst = append(dst, '[')
		for c := n.first; c != none; c = t.nodes[c].next {
			if c != n.first {
				dst = append(dst, ',')
			}
			dst = t.canonical(dst, c)
		}
		return append(dst, ']')
	}
	var buf [smallObject]int32
	members := buf[:0]
	for c := n.first; c != none; c = t.nodes[c].next {
		members = append(members, c)
	}
	slices.SortFunc(members, func(a, b int32) int {
		return strings.Compare(t.nodes[a].key, t.nodes[b].key)
	})
	dst = append(dst, '{')
	for k, c := range members {
		if k > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, t.nodes[c].key)
		dst = append(dst, ':')
		dst = t.canonical(dst, c)
	}
	return append(dst, '}')
}

// appendString appends s as a JSON string: '"' and '\' escaped with a
// backslash, control characters below U+0020 as \b \t \n \f \r or \u00XX
// (lower-case hex), every other character as its UTF-8 bytes. s is valid
// UTF-8 (walk refuses anything else).
func appendString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
