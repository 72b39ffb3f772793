package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A message is read with encoding/json's Decoder, token by token, into a
// small tree of values. Decoding straight into structs or maps would lose
// what validation needs: maps keep the last of two duplicate keys silently
// and forget the order of members, struct fields match names ignoring case,
// and neither keeps the exact bytes of data.body or the literal text of
// numbers (which BodyHash compares). The token stream has all of it: the
// walk below only adds the duplicate-key check, the nesting limit and the
// check for unpaired surrogate escapes, which the Decoder accepts silently.

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindObject
	kindArray
)

func (k kind) String() string {
	switch k {
	case kindNull:
		return "null"
	case kindBool:
		return "a boolean"
	case kindNumber:
		return "a number"
	case kindString:
		return "a string"
	case kindObject:
		return "an object"
	}
	return "an array"
}

// maxDepth bounds nesting. A command is four levels deep; the limit keeps
// the canonical form's recursion small whatever the input.
const maxDepth = 64

// value is one JSON value of the input.
type value struct {
	kind    kind
	text    string   // a string's value, a number's literal, "true" or "false"
	members []member // an object's, in document order
	elems   []*value // an array's
	raw     []byte   // the value's bytes in the input (not a copy)
}

type member struct {
	key string
	val *value
}

// member returns the member name of object v; nil when v is not an object
// (or nil), when name is absent, and when it occurs more than once (which
// value Graph would read is then unknown).
func (v *value) member(name string) *value {
	if v == nil || v.kind != kindObject {
		return nil
	}
	var found *value
	for _, m := range v.members {
		if m.key == name {
			if found != nil {
				return nil
			}
			found = m.val
		}
	}
	return found
}

// str returns v's string value, and whether v is a string.
func (v *value) str() (string, bool) {
	if v == nil || v.kind != kindString {
		return "", false
	}
	return v.text, true
}

// document is an input read by walk.
type document struct {
	root *value
	// The first duplicate member (document order), inside the top-level
	// "data" member and elsewhere, as the path of the repeated member.
	dupData, dupOther string
	dupOtherAttr      bool // dupOther is a top-level attribute
}

func (d *document) hasDup() bool { return d.dupData != "" || d.dupOther != "" }

// walkError is a failure to read the input as one JSON value.
type walkError struct {
	field, detail string
}

// frame is an open container of the walk.
type frame struct {
	v       *value
	start   int
	path    string // JSON path of the container, "" for the root
	key     string // pending member name of an object
	haveKey bool
	inData  bool                // inside the top-level "data" member
	keys    map[string]struct{} // an object's member names so far (folded inside data)
}

// childPath is the path of the next value of the container.
func (f *frame) childPath() string {
	if f.v.kind == kindObject {
		return joinPath(f.path, f.key)
	}
	return f.path + "[" + strconv.Itoa(len(f.v.elems)) + "]"
}

// add makes v the next value of the container.
func (f *frame) add(v *value) {
	if f.v.kind == kindObject {
		f.v.members = append(f.v.members, member{key: f.key, val: v})
		f.key, f.haveKey = "", false
		return
	}
	f.v.elems = append(f.v.elems, v)
}

// walk reads src, which must hold exactly one JSON value in valid UTF-8.
// command says that src is a whole command, whose top-level "data" member
// gets the stricter duplicate rule of checkDuplicate.
//
// Problems are reported in document order, the first one only: a syntax
// error (in encoding/json's words), an unpaired surrogate escape, nesting
// deeper than maxDepth, data after the value. Duplicate keys are not a
// problem here: the document records them, and the caller decides when to
// report them.
func walk(src []byte, command bool) (*document, *walkError) {
	if !utf8.Valid(src) {
		return nil, &walkError{detail: "not valid JSON: the input is not valid UTF-8"}
	}
	if len(bytes.TrimLeft(src, " \t\r\n")) == 0 {
		return nil, &walkError{detail: "not valid JSON: the input is empty"}
	}
	d := &document{}
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	var stack []*frame
	for {
		off := int(dec.InputOffset())
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) > 0 || d.root == nil {
				return nil, &walkError{detail: "not valid JSON: unexpected end of input"}
			}
			return d, nil
		}
		if err != nil {
			return nil, syntaxError(err)
		}
		if d.root != nil && len(stack) == 0 {
			return nil, &walkError{detail: fmt.Sprintf("not valid JSON: more data after the value at byte %d", off)}
		}
		end := int(dec.InputOffset())
		start := skipSeparators(src, off)
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}

		// A string where an object expects a member name is the name.
		if name, ok := tok.(string); ok && top != nil && top.v.kind == kindObject && !top.haveKey {
			if hasLoneSurrogate(name, src[start:end]) {
				return nil, &walkError{field: joinPath(top.path, name), detail: loneSurrogate}
			}
			d.checkDuplicate(top, name, len(stack) == 1)
			top.key, top.haveKey = name, true
			continue
		}

		v := &value{raw: src[start:end]}
		switch t := tok.(type) {
		case json.Delim:
			if t == '}' || t == ']' {
				top.v.raw = src[top.start:end]
				stack = stack[:len(stack)-1]
				continue
			}
			if len(stack) >= maxDepth {
				return nil, &walkError{field: top.childPath(), detail: fmt.Sprintf("nested more than %d levels deep", maxDepth)}
			}
			v.kind = kindObject
			if t == '[' {
				v.kind = kindArray
			}
			f := &frame{v: v, start: start}
			if top != nil {
				f.path = top.childPath()
				f.inData = top.inData || (command && len(stack) == 1 && top.v.kind == kindObject && top.key == "data")
			}
			stack = append(stack, f)
		case string:
			if hasLoneSurrogate(t, src[start:end]) {
				field := ""
				if top != nil {
					field = top.childPath()
				}
				return nil, &walkError{field: field, detail: loneSurrogate}
			}
			v.kind, v.text = kindString, t
		case json.Number:
			v.kind, v.text = kindNumber, string(t)
		case bool:
			v.kind, v.text = kindBool, strconv.FormatBool(t)
		case nil:
			v.kind = kindNull
		}
		if top != nil {
			top.add(v)
		} else {
			d.root = v
		}
	}
}

// skipSeparators returns the offset of the first byte at or after off that
// is not whitespace, ':' or ',': where the next token starts.
func skipSeparators(src []byte, off int) int {
	for off < len(src) && strings.IndexByte(" \t\r\n:,", src[off]) >= 0 {
		off++
	}
	return off
}

// checkDuplicate records name if the open object already has a member of
// that name. Inside data, names that differ only in case count as the same:
// Graph's JSON readers may match property names case-insensitively, so
// {"stage":"a","Stage":"b"} is as ambiguous as a plain repeat.
func (d *document) checkDuplicate(f *frame, name string, topLevel bool) {
	key := name
	if f.inData {
		key = foldKey(name)
	}
	if f.keys == nil {
		f.keys = make(map[string]struct{})
	}
	if _, dup := f.keys[key]; !dup {
		f.keys[key] = struct{}{}
		return
	}
	switch {
	case f.inData && d.dupData == "":
		d.dupData = joinPath(f.path, name)
	case !f.inData && d.dupOther == "":
		d.dupOther = joinPath(f.path, name)
		d.dupOtherAttr = topLevel
	}
}

// foldKey maps s to one representative of its case-folding class: two
// strings have the same foldKey iff strings.EqualFold says they are equal.
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		b.WriteRune(low)
	}
	return b.String()
}

func syntaxError(err error) *walkError {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return &walkError{detail: fmt.Sprintf("not valid JSON: %s (byte %d)", se.Error(), se.Offset)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &walkError{detail: "not valid JSON: unexpected end of input"}
	}
	return &walkError{detail: "not valid JSON: " + err.Error()}
}

// loneSurrogate is the detail of a string literal with a \u escape of an
// unpaired UTF-16 surrogate. encoding/json turns each into U+FFFD, so two
// different literals would read (and hash) equal while Graph may read them
// apart.
const loneSurrogate = "invalid Unicode escape: an unpaired UTF-16 surrogate"

// hasLoneSurrogate reports whether the string literal lit, which decoded to
// s, holds a \uXXXX escape of a surrogate that is not part of a high-low
// pair. Only a literal whose value holds U+FFFD can.
func hasLoneSurrogate(s string, lit []byte) bool {
	if !strings.ContainsRune(s, utf8.RuneError) {
		return false
	}
	for i := 0; i+1 < len(lit); i++ {
		if lit[i] != '\\' {
			continue
		}
		if lit[i+1] != 'u' {
			i++ // the escaped character, which may be a backslash
			continue
		}
		r := hex4(lit[i+2:])
		i += 5
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(lit) || lit[i+1] != '\\' || lit[i+2] != 'u' {
				return true
			}
			if lo := hex4(lit[i+3:]); lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 6
		}
	}
	return false
}

// hex4 reads the four hex digits the Decoder has already checked.
func hex4(b []byte) rune {
	r, _ := strconv.ParseUint(string(b[:4]), 16, 32)
	return rune(r)
}
