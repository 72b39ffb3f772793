package command

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzWalk checks walk against walkTokens, the json.Decoder token walk it
// replaced: the same tree, the same duplicates, the same error, for any
// input, as a command and as a plain value.
func FuzzWalk(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// The corpus of FuzzParse, in the fuzzer's file format.
	corpus, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzParse", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range corpus {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		line, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte(")
		if !ok {
			f.Fatalf("%s: not a []byte corpus entry", name)
		}
		v, err := strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(line), ")"))
		if err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		f.Add([]byte(v))
	}
	for _, s := range []string{`{"a":1,"a":2}`, `[1,2`, `{"a" 1}`, `{"a":01}`, `"\ud800\u0041"`, `{"x\udc00":1}`,
		`{} {}`, `{} x`, `1 2`, `[tru]`, `-`, `1.`, `1e+`, `"\x"`, `{"data":{"A":1,"a":2}}`, "\"\t\"", `[1,]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		for _, command := range []bool{true, false} {
			got, gotErr := walk(src, command)
			want, wantErr := walkTokens(src, command)
			if !reflect.DeepEqual(gotErr, wantErr) {
				t.Fatalf("walk(%q, %v): error %+v, want %+v", src, command, gotErr, wantErr)
			}
			if want == nil {
				continue
			}
			if !reflect.DeepEqual(got.nodes, want.nodes) {
				t.Fatalf("walk(%q, %v): nodes\n%+v\nwant\n%+v", src, command, got.nodes, want.nodes)
			}
			if got.dupData != want.dupData || got.dupOther != want.dupOther || got.dupOtherAttr != want.dupOtherAttr || got.hasDup != want.hasDup {
				t.Fatalf("walk(%q, %v): duplicates %q %q %v %v, want %q %q %v %v", src, command,
					got.dupData, got.dupOther, got.dupOtherAttr, got.hasDup, want.dupData, want.dupOther, want.dupOtherAttr, want.hasDup)
			}
		}
	})
}

// walkTokens is walk as it was before the scanner: one json.Decoder.Token
// walk. It is the oracle of FuzzWalk.
func walkTokens(src []byte, command bool) (*tree, *walkError) {
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
					if we := checkSurrogatesOld(t, top.idx, name, src[start:end]); we != nil {
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
			if we := checkSurrogatesOld(t, -1, v, src[start:end]); we != nil {
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

// checkSurrogates refuses a string literal with a \u escape of an unpaired
// UTF-16 surrogate. encoding/json turns each into U+FFFD, so two different
// literals would read (and hash) equal while Graph may read them apart.
// Only literals whose decoded value holds U+FFFD can contain one.
func checkSurrogatesOld(t *tree, obj int32, decoded string, lit []byte) *walkError {
	if !strings.ContainsRune(decoded, utf8.RuneError) || !hasLoneSurrogateOld(lit) {
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
func hasLoneSurrogateOld(lit []byte) bool {
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

// TestNodesForBoundsTheTree: the node slice is sized once for inputs under
// the cap, so a bound that undercounts would show as a grown slice.
func TestNodesForBoundsTheTree(t *testing.T) {
	inputs := [][]byte{[]byte(`1`), []byte(`[]`), []byte(`{}`), []byte(`[1,[2,[3,{}]],{"a":{"b":[]}}]`), []byte(`{"a":"x,y","b":[true,false,null]}`)}
	for _, e := range Examples() {
		inputs = append(inputs, e.Data)
	}
	for _, src := range inputs {
		tr, we := walk(src, false)
		if we != nil {
			t.Fatalf("%s: %v", src, we.detail)
		}
		if n := nodesFor(src); len(tr.nodes) > n || cap(tr.nodes) != n {
			t.Errorf("%.60s: %d nodes, bound %d, capacity %d (grew)", src, len(tr.nodes), n, cap(tr.nodes))
		}
	}
}
