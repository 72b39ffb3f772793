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
// been equal, which docs/SPEC.md §3 turns into a conflict, not a wrong call.
//
// A value with duplicate object keys, an unpaired surrogate escape, invalid
// UTF-8 or trailing data has no canonical form: Canonical returns an error.
func Canonical(v json.RawMessage) ([]byte, error) {
	d, we := walk(v, false)
	if we != nil {
		return nil, errors.New("command: canonical form: " + (&Error{Field: we.field, Detail: we.detail}).Error())
	}
	if d.hasDup() {
		p := d.dupOther
		if p == "" {
			p = d.dupData
		}
		return nil, errors.New("command: canonical form: " + p + ": duplicate object key")
	}
	return appendCanonical(make([]byte, 0, len(v)), d.root), nil
}

// bodyHash is the hex SHA-256 of the canonical form of v.
func bodyHash(v *value) string {
	sum := sha256.Sum256(appendCanonical(nil, v))
	return hex.EncodeToString(sum[:])
}

// appendCanonical appends the canonical form of v to dst. Recursion is
// bounded by maxDepth.
func appendCanonical(dst []byte, v *value) []byte {
	switch v.kind {
	case kindNull:
		return append(dst, "null"...)
	case kindBool, kindNumber:
		return append(dst, v.text...)
	case kindString:
		return appendString(dst, v.text)
	case kindArray:
		dst = append(dst, '[')
		for i, e := range v.elems {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCanonical(dst, e)
		}
		return append(dst, ']')
	}
	members := slices.SortedFunc(slices.Values(v.members), func(a, b member) int { return strings.Compare(a.key, b.key) })
	dst = append(dst, '{')
	for i, m := range members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, m.key)
		dst = append(dst, ':')
		dst = appendCanonical(dst, m.val)
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
