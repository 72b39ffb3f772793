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

// The message is read with one json.Decoder token walk into a flat tree of
// nodes. Reading tokens rather than decoding into maps is what lets the
// parser see duplicate keys (a map keeps the last one silently), keep the
// exact bytes of data.body, and keep numbers as their literal text.

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
// the walk and the canonical form's recursion small whatever the input.
const maxDepth = 64

// smallObject is the member count up to which duplicate keys are found by
// scanning the siblings; larger objects use a map, so that an object with
// thousands of members costs O(n), not O(n²).
const smallObject = 16

// none marks an absent node index.
const none int32 = -1

// ambiguous is what member returns for a name that occurs more than once.
const ambiguous int32 = -2

type node struct {
	key                 string // member name, when the parent is an object
	str                 string // string value, number literal, "true"/"false"
	start, end          int32  // the value's bytes in the input
	parent, first, next int32  // tree links, none when absent
	pos                 int32  // index among its siblings
	kind                kind
}

type tree struct {
	src   []byte
	nodes []node
	// The first duplicate member (document order), inside the top-level
	// "data" member and elsewhere, as the path of the repeated member.
	dupData, dupOther string
	dupOtherAttr      bool // dupOther is a top-level attribute
	hasDup            bool
}

// walkError is a failure to read the input as one JSON value.
type walkError struct {
	field, detail string
}

type frame struct {
	idx, last, n int32
	key          string // pending member name of an object
	haveKey      bool
	inData       bool // inside the top-level "data" member
	keys         map[string]struct{}
}

// walk reads src, which must hold exactly one JSON value in valid UTF-8.
// command says that src is a whole command, whose top-level "data" member
// gets the stricter duplicate rule of checkDuplicate.
func walk(src []byte, command bool) (*tree, *walkError) {
	if !utf8.Valid(src) {
		return nil, &walkError{detail: "not valid JSON: the input is not valid UTF-8"}
	}
	if len(bytes.TrimLeft(src, " \t\r\n")) == 0 {
		return nil, &walkError{detail: "not valid JSON: the input is empty"}
	}
	t := &tree{src: src, nodes: make([]node, 0, 8+len(src)/24)}
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	var stackBuf [8]frame
	stack := stackBuf[:0]
	done := false
	for {
		off := int32(dec.InputOffset())
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) > 0 || !done {
				return nil, &walkError{detail: "not valid JSON: unexpected end of input"}
			}
			return t, nil
		}
		if err != nil {
			return nil, syntaxError(err)
		}
		if done {
			return nil, &walkError{detail: fmt.Sprintf("not valid JSON: more data after the value at byte %d", off)}
		}
		end := int32(dec.InputOffset())
		start := skipSeparators(src, off)

		// A string where an object expects a member name is the name.
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			if t.nodes[top.idx].kind == kindObject && !top.haveKey {
				if name, ok := tok.(string); ok {
					if we := checkSurrogates(t, top.idx, name, src[start:end]); we != nil {
						return nil, we
					}
					t.checkDuplicate(top, name)
					top.key, top.haveKey = name, true
					continue
				}
			}
		}

		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if len(stack) >= maxDepth {
					return nil, &walkError{field: t.childPath(stack), detail: fmt.Sprintf("nested more than %d levels deep", maxDepth)}
				}
				k := kindObject
				if v == '[' {
					k = kindArray
				}
				inData := false
				if n := len(stack); n > 0 {
					inData = stack[n-1].inData || (command && n == 1 && stack[0].key == "data")
				}
				idx := t.add(stack, k, "", start, 0)
				stack = append(stack, frame{idx: idx, last: none, inData: inData})
			default: // '}' or ']'
				top := stack[len(stack)-1]
				t.nodes[top.idx].end = end
				stack = stack[:len(stack)-1]
				done = len(stack) == 0
			}
		case string:
			if we := checkSurrogates(t, -1, v, src[start:end]); we != nil {
				we.field = t.childPath(stack)
				return nil, we
			}
			t.add(stack, kindString, v, start, end)
			done = len(stack) == 0
		case json.Number:
			t.add(stack, kindNumber, string(v), start, end)
			done = len(stack) == 0
		case bool:
			s := "false"
			if v {
				s = "true"
			}
			t.add(stack, kindBool, s, start, end)
			done = len(stack) == 0
		case nil:
			t.add(stack, kindNull, "", start, end)
			done = len(stack) == 0
		}
	}
}

// add appends a node as the next child of the innermost open container.
func (t *tree) add(stack []frame, k kind, s string, start, end int32) int32 {
	idx := int32(len(t.nodes))
	n := node{kind: k, str: s, start: start, end: end, parent: none, first: none, next: none}
	if len(stack) > 0 {
		top := &stack[len(stack)-1]
		n.parent, n.pos = top.idx, top.n
		if top.haveKey {
			n.key, top.haveKey = top.key, false
		}
		if top.last == none {
			t.nodes[top.idx].first = idx
		} else {
			t.nodes[top.last].next = idx
		}
		top.last = idx
		top.n++
	}
	t.nodes = append(t.nodes, n)
	return idx
}

// checkDuplicate records name if the open object already has a member of
// that name. Inside data, names that differ only in case count as the same:
// Graph's JSON readers may match property names case-insensitively, so
// {"stage":"a","Stage":"b"} is as ambiguous as a plain repeat.
func (t *tree) checkDuplicate(top *frame, name string) {
	key := name
	if top.inData && top.n >= smallObject {
		key = foldKey(name)
	}
	dup := false
	switch {
	case top.keys != nil:
		_, dup = top.keys[key]
		top.keys[key] = struct{}{}
	case top.n < smallObject:
		for c := t.nodes[top.idx].first; c != none; c = t.nodes[c].next {
			if k := t.nodes[c].key; k == name || (top.inData && strings.EqualFold(k, name)) {
				dup = true
				break
			}
		}
	default:
		top.keys = make(map[string]struct{}, 2*smallObject)
		for c := t.nodes[top.idx].first; c != none; c = t.nodes[c].next {
			k := t.nodes[c].key
			if top.inData {
				k = foldKey(k)
			}
			top.keys[k] = struct{}{}
		}
		_, dup = top.keys[key]
		top.keys[key] = struct{}{}
	}
	if !dup {
		return
	}
	t.hasDup = true
	switch {
	case top.inData && t.dupData == "":
		t.dupData = joinPath(t.path(top.idx), name)
	case !top.inData && t.dupOther == "":
		t.dupOther = joinPath(t.path(top.idx), name)
		t.dupOtherAttr = t.nodes[top.idx].parent == none
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

// childPath is the path of the value about to be added to the innermost
// open container.
func (t *tree) childPath(stack []frame) string {
	if len(stack) == 0 {
		return ""
	}
	top := stack[len(stack)-1]
	p := t.path(top.idx)
	if t.nodes[top.idx].kind == kindObject {
		return joinPath(p, top.key)
	}
	return p + "[" + strconv.Itoa(int(top.n)) + "]"
}

// path is the JSON path of node i: "data.body.data.stage", "a.b[2]"; "" for
// the root.
func (t *tree) path(i int32) string {
	n := &t.nodes[i]
	if n.parent == none {
		return ""
	}
	p := t.path(n.parent)
	if t.nodes[n.parent].kind == kindArray {
		return p + "[" + strconv.Itoa(int(n.pos)) + "]"
	}
	return joinPath(p, n.key)
}

// member returns the index of the member name of object i, none when it is
// absent (or i is not an object), ambiguous when it occurs more than once.
func (t *tree) member(i int32, name string) int32 {
	if i < 0 || t.nodes[i].kind != kindObject {
		return none
	}
	found := none
	for c := t.nodes[i].first; c != none; c = t.nodes[c].next {
		if t.nodes[c].key == name {
			if found != none {
				return ambiguous
			}
			found = c
		}
	}
	return found
}

// str returns the string value of node i, and whether it is a string.
func (t *tree) str(i int32) (string, bool) {
	if i < 0 || t.nodes[i].kind != kindString {
		return "", false
	}
	return t.nodes[i].str, true
}

// raw returns the input bytes of node i.
func (t *tree) raw(i int32) []byte {
	n := &t.nodes[i]
	return t.src[n.start:n.end]
}

// skipSeparators returns the offset of the first byte at or after off that
// is not whitespace, ':' or ',': where the next token starts.
func skipSeparators(src []byte, off int32) int32 {
	for int(off) < len(src) {
		switch src[off] {
		case ' ', '\t', '\r', '\n', ':', ',':
			off++
		default:
			return off
		}
	}
	return off
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

// checkSurrogates refuses a string literal with a \u escape of an unpaired
// UTF-16 surrogate. encoding/json turns each into U+FFFD, so two different
// literals would read (and hash) equal while Graph may read them apart.
// Only literals whose decoded value holds U+FFFD can contain one.
func checkSurrogates(t *tree, obj int32, decoded string, lit []byte) *walkError {
	if !strings.ContainsRune(decoded, utf8.RuneError) || !hasLoneSurrogate(lit) {
		return nil
	}
	we := &walkError{detail: "invalid Unicode escape: an unpaired UTF-16 surrogate"}
	if obj >= 0 {
		we.field = joinPath(t.path(obj), decoded)
	}
	return we
}

// hasLoneSurrogate reports whether the JSON string literal lit holds a
// \uXXXX escape of a surrogate that is not part of a high-low pair.
func hasLoneSurrogate(lit []byte) bool {
	for i := 0; i < len(lit); i++ {
		if lit[i] != '\\' || i+1 >= len(lit) {
			continue
		}
		if lit[i+1] != 'u' {
			i++ // skip the escaped character, which may be a backslash
			continue
		}
		r, ok := hex4(lit, i+2)
		if !ok {
			return false // the decoder has checked the syntax already
		}
		i += 5
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(lit) || lit[i+1] != '\\' || lit[i+2] != 'u' {
				return true
			}
			lo, ok := hex4(lit, i+3)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 6
		}
	}
	return false
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
