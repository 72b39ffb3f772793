package command

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// A message is read with the jsontext Decoder of go-json-experiment/json,
// token by token, into a small tree of values (encoding/json's Decoder.Token
// allocated for every token: 32 of the worker's ~130 µs per command in a
// profile of `worker bench throughput`). Decoding straight into structs or maps would lose
// what validation needs: maps keep the last of two duplicate keys silently
// and forget the order of members, struct fields match names ignoring case,
// and neither keeps the exact bytes of data.body or the literal text of
// numbers (which BodyHash compares). The token stream has all of it: the
// walk below only adds the duplicate-key check (case-folded inside data, and
// reported later than jsontext would), the nesting limit and the check for
// unpaired surrogate escapes.

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
	keys    map[string]struct{} // a large object's member names so far (see seen)
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
// error (in jsontext's words), an unpaired surrogate escape, nesting
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
	// jsontext would refuse a repeated name at once, and only an exact
	// repeat: checkDuplicate records them instead. Invalid UTF-8 is refused
	// above, so allowing it only lets a lone surrogate escape through, to be
	// named by hasLoneSurrogate with its path.
	dec := jsontext.NewDecoder(bytes.NewBuffer(src), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	var stack []*frame
	for d.root == nil || len(stack) > 0 {
		off := int(dec.InputOffset())
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, syntaxError(err)
		}
		end := int(dec.InputOffset())
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		k := tok.Kind()

		// A string where an object expects a member name is the name.
		if k == '"' && top != nil && top.v.kind == kindObject && !top.haveKey {
			name := tok.String()
			if hasLoneSurrogate(name, src[off:end]) {
				return nil, &walkError{field: joinPath(top.path, name), detail: loneSurrogate}
			}
			d.checkDuplicate(top, name, len(stack) == 1)
			top.key, top.haveKey = name, true
			continue
		}

		if k == '}' || k == ']' {
			top.v.raw = src[top.start:end]
			stack = stack[:len(stack)-1]
			continue
		}
		v := &value{}
		switch k {
		case '{', '[':
			if len(stack) >= maxDepth {
				return nil, &walkError{field: top.childPath(), detail: fmt.Sprintf("nested more than %d levels deep", maxDepth)}
			}
			v.kind = kindObject
			if k == '[' {
				v.kind = kindArray
			}
			f := &frame{v: v, start: end - 1}
			if top != nil {
				f.path = top.childPath()
				f.inData = top.inData || (command && len(stack) == 1 && top.v.kind == kindObject && top.key == "data")
			}
			stack = append(stack, f)
		case '"':
			v.kind, v.text = kindString, tok.String()
			if hasLoneSurrogate(v.text, src[off:end]) {
				field := ""
				if top != nil {
					field = top.childPath()
				}
				return nil, &walkError{field: field, detail: loneSurrogate}
			}
		case '0':
			v.kind, v.text = kindNumber, tok.String()
		case 't', 'f':
			v.kind, v.text = kindBool, tok.String()
		}
		if top != nil {
			top.add(v)
		} else {
			d.root = v
		}
	}
	if rest := bytes.TrimLeft(src[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return nil, &walkError{detail: fmt.Sprintf("not valid JSON: more data after the value at byte %d", len(src)-len(rest))}
	}
	return d, nil
}

// checkDuplicate records name if the open object already has a member of
// that name. Inside data, names that differ only in case count as the same:
// Graph's JSON readers may match property names case-insensitively, so
// {"stage":"a","Stage":"b"} is as ambiguous as a plain repeat.
func (d *document) checkDuplicate(f *frame, name string, topLevel bool) {
	if !f.seen(name) {
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

// seen reports whether object f has a member of the name already (folded
// inside data). A command's objects have a few members each: they are
// compared one by one, and only a large object gets a map of its names (a
// map for each object was a third of the parse's allocations).
func (f *frame) seen(name string) bool {
	ms := f.v.members
	if f.keys == nil && len(ms) < 16 {
		return slices.ContainsFunc(ms, func(m member) bool {
			return m.key == name || f.inData && strings.EqualFold(m.key, name)
		})
	}
	key := func(s string) string {
		if f.inData {
			return foldKey(s)
		}
		return s
	}
	if f.keys == nil {
		f.keys = make(map[string]struct{}, 2*len(ms))
		for _, m := range ms {
			f.keys[key(m.key)] = struct{}{}
		}
	}
	k := key(name)
	_, dup := f.keys[k]
	f.keys[k] = struct{}{}
	return dup
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
	var se *jsontext.SyntacticError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &walkError{detail: "not valid JSON: unexpected end of input"}
	case errors.As(err, &se):
		return &walkError{detail: fmt.Sprintf("not valid JSON: %v (byte %d)", se.Err, se.ByteOffset)}
	}
	return &walkError{detail: "not valid JSON: " + err.Error()}
}

// loneSurrogate is the detail of a string literal with a \u escape of an
// unpaired UTF-16 surrogate. encoding/json turns each into U+FFFD, so two
// different literals would read (and hash) equal while Graph may read them
// apart.
const loneSurrogate = "invalid Unicode escape: an unpaired UTF-16 surrogate"

// hasLoneSurrogate reports whether the string literal lit (with the
// separators before it, if any), which decoded to s, holds a \uXXXX escape of a surrogate that is not part of a high-low
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
