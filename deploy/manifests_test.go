package deploy_test

// No YAML parser is in the module graph, so the manifests are read with a
// small indentation-based reader that understands the subset these files use
// (maps, lists, inline and block scalars, one document or several per file).
// It is strict where a mistake would hide: tabs and documents without a kind
// fail the test.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type doc struct {
	file  string
	lines []string // comment-only and blank lines removed
}

// manifests returns every YAML document of deploy/*.yaml by kind.
func manifests(t *testing.T) map[string][]doc {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no YAML files found: %v", err)
	}
	out := make(map[string][]doc)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cur []string
		flush := func() {
			if len(cur) == 0 {
				return
			}
			d := doc{file: f, lines: cur}
			kind, ok := scalar(cur, "kind")
			if !ok {
				t.Fatalf("%s: a document without kind", f)
			}
			out[kind] = append(out[kind], d)
			cur = nil
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.TrimSpace(line) == "---" {
				flush()
				continue
			}
			if trimmed := strings.TrimSpace(line); trimmed == "" || strings.HasPrefix(trimmed, "#") {
				continue
			}
			if strings.Contains(line, "\t") {
				t.Fatalf("%s: tab in %q (YAML indents with spaces)", f, line)
			}
			cur = append(cur, line)
		}
		flush()
	}
	return out
}

// one returns the only document of kind.
func one(t *testing.T, m map[string][]doc, kind string) doc {
	t.Helper()
	if len(m[kind]) != 1 {
		t.Fatalf("want exactly one %s, found %d", kind, len(m[kind]))
	}
	return m[kind][0]
}

// keyAt reports whether line holds `key:` (possibly as a list item "- key:")
// and returns the key's column and the rest of the line after the colon.
func keyAt(line, key string) (col int, rest string, ok bool) {
	indent := len(line) - len(strings.TrimLeft(line, " "))
	s := line[indent:]
	for strings.HasPrefix(s, "- ") {
		s = s[2:]
		indent += 2
	}
	if !strings.HasPrefix(s, key+":") {
		return 0, "", false
	}
	rest = s[len(key)+1:]
	if rest != "" && rest[0] != ' ' {
		return 0, "", false
	}
	return indent, strings.TrimSpace(rest), true
}

func indentOf(line string) int {
	n := len(line) - len(strings.TrimLeft(line, " "))
	if s := line[n:]; strings.HasPrefix(s, "- ") {
		return n + 2
	}
	return n
}

// block returns the lines nested under the first `key:` in lines.
func block(lines []string, key string) ([]string, bool) {
	for i, line := range lines {
		col, _, ok := keyAt(line, key)
		if !ok {
			continue
		}
		var out []string
		for _, l := range lines[i+1:] {
			if len(l)-len(strings.TrimLeft(l, " ")) <= col {
				break
			}
			out = append(out, l)
		}
		return out, true
	}
	return nil, false
}

// path follows nested keys: path(lines, "spec", "template", "metadata").
func path(t *testing.T, d doc, keys ...string) []string {
	t.Helper()
	lines := d.lines
	for _, k := range keys {
		var ok bool
		if lines, ok = block(lines, k); !ok {
			t.Fatalf("%s: no %s", d.file, strings.Join(keys, "."))
		}
	}
	return lines
}

// scalars returns the values of every `key:` in lines, inline or as a block
// scalar (| or >), unquoted and without trailing comments.
func scalars(lines []string, key string) []string {
	var out []string
	for i, line := range lines {
		col, rest, ok := keyAt(line, key)
		if !ok {
			continue
		}
		if strings.HasPrefix(rest, "|") || strings.HasPrefix(rest, ">") {
			var body []string
			for _, l := range lines[i+1:] {
				if len(l)-len(strings.TrimLeft(l, " ")) <= col {
					break
				}
				body = append(body, strings.TrimSpace(l))
			}
			out = append(out, strings.Join(body, "\n"))
			continue
		}
		out = append(out, unquote(rest))
	}
	return out
}

func scalar(lines []string, key string) (string, bool) {
	v := scalars(lines, key)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') {
		if end := strings.IndexByte(s[1:], s[0]); end >= 0 {
			return s[1 : end+1]
		}
	}
	if i := strings.Index(s, " #"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// mapping returns the `key: value` pairs directly under a block.
func mapping(lines []string) map[string]string {
	out := make(map[string]string)
	if len(lines) == 0 {
		return out
	}
	col := indentOf(lines[0])
	for _, l := range lines {
		if indentOf(l) != col {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "- ")), ":")
		if ok {
			out[strings.TrimSpace(k)] = unquote(strings.TrimSpace(v))
		}
	}
	return out
}
