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
	"unicode/utf16"
	"unicode/utf8"
)

// The message is read by one pass of a small JSON scanner into a flat tree
// of nodes. Reading the text rather than decoding into maps or structs is
// what lets the parser see duplicate keys (a map keeps the last one
// silently, and encoding/json matches struct fields ignoring case), keep
// the exact bytes of data.body, and keep numbers as their literal text.
// encoding/json's Decoder is used only to word the error of input that is
// not JSON, so that the words stay those of the standard library.

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

// errSyntax marks input that is not JSON; walk words it with syntaxProblem.
var errSyntax = &walkError{detail: "not valid JSON"}

type frame struct {
	idx, last, n int32
	key          string // pending member name of an object
	haveKey      bool
	inData       bool // inside the top-level "data" member
	keys         map[string]struct{}
}

// walker is the state of one walk. It holds the tree it builds, so that
// the two, and the first levels of the stack, are one allocation.
type walker struct {
	t        tree
	text     string  // src as a string: the keys and values of the tree are substrings of this one copy
	stack    []frame // the open containers, innermost last
	stackBuf [8]frame
	command  bool
}

// walk reads src, which must hold exactly one JSON value in valid UTF-8.
// command says that src is a whole command, whose top-level "data" member
// gets the stricter duplicate rule of checkDuplicate.
//
// Problems are reported in document order, the first one only: a syntax
// error, an unpaired surrogate escape (see unquote), nesting deeper than
// maxDepth, data after the value. The tree's strings share one copy of src:
// whatever keeps one of them beyond the parse should copy it.
func walk(src []byte, command bool) (*tree, *walkError) {
	if !utf8.Valid(src) {
		return nil, &walkError{detail: "not valid JSON: the input is not valid UTF-8"}
	}
	if len(bytes.TrimLeft(src, " \t\r\n")) == 0 {
		return nil, &walkError{detail: "not valid JSON: the input is empty"}
	}
	w := &walker{
		t:       tree{src: src, nodes: make([]node, 0, nodesFor(src))},
		text:    string(src),
		command: command,
	}
	w.stack = w.stackBuf[:0]
	i, we := w.value(skipSpace(src, 0))
	if we == nil && skipSpace(src, i) != len(src) {
		we = errSyntax // data after the value: syntaxProblem says which
	}
	if we == errSyntax {
		return nil, syntaxProblem(src)
	}
	if we != nil {
		return nil, we
	}
	return &w.t, nil
}

// nodesFor is the capacity of src's node slice. Every value but the
// outermost follows a '{', '[' or ',', so their count bounds the tree
// (commas inside strings count too); the bound is capped where
// pathological input, a long string of commas, would make it wasteful,
// and past that cap the slice grows.
func nodesFor(src []byte) int {
	n := 1 + bytes.Count(src, []byte{','}) + bytes.Count(src, []byte{'{'}) + bytes.Count(src, []byte{'['})
	return min(n, 64+len(src)/24)
}

// value reads the JSON value that starts at src[i] and returns the offset
// just after it.
func (w *walker) value(i int) (int, *walkError) {
	src := w.t.src
	if i >= len(src) {
		return i, errSyntax
	}
	switch c := src[i]; c {
	case '{':
		return w.object(i)
	case '[':
		return w.array(i)
	case '"':
		end, v, lone := w.quoted(i)
		if end < 0 {
			return i, errSyntax
		}
		if lone {
			return i, &walkError{field: w.t.childPath(w.stack), detail: loneSurrogate}
		}
		w.t.add(w.stack, kindString, v, int32(i), int32(end))
		return end, nil
	case 't':
		return w.literal(i, "true", kindBool)
	case 'f':
		return w.literal(i, "false", kindBool)
	case 'n':
		return w.literal(i, "null", kindNull)
	default:
		end := scanNumber(src, i)
		if end < 0 {
			return i, errSyntax
		}
		w.t.add(w.stack, kindNumber, w.text[i:end], int32(i), int32(end))
		return end, nil
	}
}

func (w *walker) literal(i int, lit string, k kind) (int, *walkError) {
	if !bytes.HasPrefix(w.t.src[i:], []byte(lit)) {
		return i, errSyntax
	}
	s := lit
	if k == kindNull {
		s = ""
	}
	end := i + len(lit)
	w.t.add(w.stack, k, s, int32(i), int32(end))
	return end, nil
}

// open adds the container that starts at src[i] and makes it the innermost.
func (w *walker) open(i int, k kind) *walkError {
	n := len(w.stack)
	if n >= maxDepth {
		return &walkError{field: w.t.childPath(w.stack), detail: fmt.Sprintf("nested more than %d levels deep", maxDepth)}
	}
	inData := false
	if n > 0 {
		inData = w.stack[n-1].inData || (w.command && n == 1 && w.stack[0].key == "data")
	}
	idx := w.t.add(w.stack, k, "", int32(i), 0)
	w.stack = append(w.stack, frame{idx: idx, last: none, inData: inData})
	return nil
}

// close ends the innermost container at its closing bracket src[i].
func (w *walker) close(i int) int {
	n := len(w.stack)
	w.t.nodes[w.stack[n-1].idx].end = int32(i + 1)
	w.stack = w.stack[:n-1]
	return i + 1
}

func (w *walker) object(i int) (int, *walkError) {
	if we := w.open(i, kindObject); we != nil {
		return i, we
	}
	src := w.t.src
	i = skipSpace(src, i+1)
	if i < len(src) && src[i] == '}' {
		return w.close(i), nil
	}
	for {
		if i >= len(src) || src[i] != '"' {
			return i, errSyntax
		}
		end, name, lone := w.quoted(i)
		if end < 0 {
			return i, errSyntax
		}
		top := &w.stack[len(w.stack)-1]
		if lone {
			return i, &walkError{field: joinPath(w.t.path(top.idx), name), detail: loneSurrogate}
		}
		w.t.checkDuplicate(top, name)
		top.key, top.haveKey = name, true
		if i = skipSpace(src, end); i >= len(src) || src[i] != ':' {
			return i, errSyntax
		}
		var we *walkError
		if i, we = w.value(skipSpace(src, i+1)); we != nil {
			return i, we
		}
		if i = skipSpace(src, i); i >= len(src) {
			return i, errSyntax
		}
		switch src[i] {
		case ',':
			i = skipSpace(src, i+1)
		case '}':
			return w.close(i), nil
		default:
			return i, errSyntax
		}
	}
}

func (w *walker) array(i int) (int, *walkError) {
	if we := w.open(i, kindArray); we != nil {
		return i, we
	}
	src := w.t.src
	i = skipSpace(src, i+1)
	if i < len(src) && src[i] == ']' {
		return w.close(i), nil
	}
	for {
		var we *walkError
		if i, we = w.value(i); we != nil {
			return i, we
		}
		if i = skipSpace(src, i); i >= len(src) {
			return i, errSyntax
		}
		switch src[i] {
		case ',':
			i = skipSpace(src, i+1)
		case ']':
			return w.close(i), nil
		default:
			return i, errSyntax
		}
	}
}

// quoted reads the string literal that starts at src[i] (a '"'): the
// offset after it (-1 when it is not a valid literal), its value, and
// whether it holds an unpaired surrogate escape.
func (w *walker) quoted(i int) (end int, v string, lone bool) {
	src := w.t.src
	escaped := false
	for j := i + 1; j < len(src); j++ {
		switch c := src[j]; {
		case c == '"':
			if !escaped {
				return j + 1, w.text[i+1 : j], false
			}
			v, lone = unquote(src[i+1 : j])
			return j + 1, v, lone
		case c == '\\':
			escaped = true
			j++
			if j >= len(src) {
				return -1, "", false
			}
			switch src[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if _, ok := hex4(src, j+1); !ok {
					return -1, "", false
				}
				j += 4
			default:
				return -1, "", false
			}
		case c < 0x20:
			return -1, "", false
		}
	}
	return -1, "", false
}

// scanNumber returns the offset after the JSON number that starts at
// src[i], -1 when there is none.
func scanNumber(src []byte, i int) int {
	digits := func(i int) int {
		for i < len(src) && '0' <= src[i] && src[i] <= '9' {
			i++
		}
		return i
	}
	if i < len(src) && src[i] == '-' {
		i++
	}
	switch {
	case i >= len(src):
		return -1
	case src[i] == '0':
		i++
	case '1' <= src[i] && src[i] <= '9':
		i = digits(i + 1)
	default:
		return -1
	}
	if i < len(src) && src[i] == '.' {
		if j := digits(i + 1); j > i+1 {
			i = j
		} else {
			return -1
		}
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		i++
		if i < len(src) && (src[i] == '+' || src[i] == '-') {
			i++
		}
		if j := digits(i); j > i {
			i = j
		} else {
			return -1
		}
	}
	return i
}

// skipSpace returns the offset of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(src []byte, i int) int {
	for i < len(src) {
		switch src[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
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

// syntaxProblem words why src, which walk found not to be one JSON value,
// is not: it replays src through encoding/json's Decoder token by token, as
// earlier versions of walk read every message, so that the error names the
// same byte in the same words.
func syntaxProblem(src []byte) *walkError {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	depth, done := 0, false
	for {
		off := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			if depth > 0 || !done {
				return &walkError{detail: "not valid JSON: unexpected end of input"}
			}
			return errSyntax // walk and the Decoder disagree: cannot happen
		}
		if err != nil {
			return syntaxError(err)
		}
		if done {
			return &walkError{detail: fmt.Sprintf("not valid JSON: more data after the value at byte %d", off)}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		done = depth == 0
	}
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

// unquote decodes the contents of a string literal (without its quotes)
// that holds at least one escape and is otherwise valid, as encoding/json
// does: a surrogate escape that is not the high half of a high-low pair
// becomes U+FFFD, and lone reports that one did.
func unquote(lit []byte) (v string, lone bool) {
	b := make([]byte, 0, len(lit))
	for i := 0; i < len(lit); {
		c := lit[i]
		if c != '\\' {
			b = append(b, c)
			i++
			continue
		}
		switch e := lit[i+1]; e {
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, _ := hex4(lit, i+2)
			i += 6
			if utf16.IsSurrogate(r) {
				if lo, ok := hex4(lit, i+2); ok && r < 0xDC00 && lit[i] == '\\' && lit[i+1] == 'u' && lo >= 0xDC00 && lo <= 0xDFFF {
					r = utf16.DecodeRune(r, lo)
					i += 6
				} else {
					r, lone = utf8.RuneError, true
				}
			}
			b = utf8.AppendRune(b, r)
			continue
		default: // '"', '\\', '/'
			b = append(b, e)
		}
		i += 2
	}
	return string(b), lone
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
