package command_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/graphops/worker/internal/command"
)

// FuzzParse checks the invariants of Parse on any input. Seeds: the
// testdata commands, plus the corpus in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := command.Parse(raw, command.Options{})
		checkResult(t, raw, c, err)

		// Deterministic: the same input gives the same result.
		c2, err2 := command.Parse(raw, command.Options{})
		if !reflect.DeepEqual(c, c2) || !reflect.DeepEqual(err, err2) {
			t.Fatalf("Parse is not deterministic: %+v, %v then %+v, %v", c, err, c2, err2)
		}

		// Switching role request updates off refuses exactly those.
		c3, err3 := command.Parse(raw, command.Options{RoleRequestUpdateDisabled: true})
		checkResult(t, raw, c3, err3)
		if c != nil && c.Type == command.TypeRoleRequestUpdate {
			var e *command.Error
			if !errors.As(err3, &e) || e.Field != "type" || e.Reason != command.ReasonValidationFailed {
				t.Fatalf("a role request update parsed with the operation switched off: %v", err3)
			}
		} else if !reflect.DeepEqual(c, c3) {
			t.Fatalf("switching role request updates off changed %+v into %+v, %v", c, c3, err3)
		}
	})
}

func checkResult(t *testing.T, raw []byte, c *command.Command, err error) {
	t.Helper()
	if (c == nil) == (err == nil) {
		t.Fatalf("Parse returned command %+v and error %v: want exactly one", c, err)
	}
	if err != nil {
		var e *command.Error
		if !errors.As(err, &e) {
			t.Fatalf("error %T is not a *command.Error", err)
		}
		if e.Reason != command.ReasonInvalidMessage && e.Reason != command.ReasonValidationFailed {
			t.Fatalf("unknown reason %q", e.Reason)
		}
		switch e.Type {
		case command.TypeResume, command.TypeRoleRequestUpdate, command.TypeUnknown:
		default:
			t.Fatalf("error type %q", e.Type)
		}
		for _, s := range []string{e.Error(), e.ID, e.Source, e.RequestID} {
			for _, r := range s {
				if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
					t.Fatalf("error value %q holds control character %U", s, r)
				}
			}
		}
		for _, r := range e.Error() {
			if r > 0x7e {
				t.Fatalf("error text %q is not ASCII", e.Error())
			}
		}
		return
	}
	if !json.Valid(raw) {
		t.Fatalf("Parse accepted invalid JSON %q", raw)
	}
	if c.ID == "" || c.Source == "" {
		t.Fatalf("id %q, source %q", c.ID, c.Source)
	}
	var ids []string
	switch c.Type {
	case command.TypeResume:
		if c.Resume == nil || c.RoleUpdate != nil {
			t.Fatalf("resume with Resume %v, RoleUpdate %v", c.Resume, c.RoleUpdate)
		}
		ids = []string{c.Resume.AssignmentRequestID, c.Resume.StageInstanceID}
	case command.TypeRoleRequestUpdate:
		if c.RoleUpdate == nil || c.Resume != nil {
			t.Fatalf("role request update with Resume %v, RoleUpdate %v", c.Resume, c.RoleUpdate)
		}
		ids = []string{c.RoleUpdate.PrivilegedAccessID, c.RoleUpdate.RequestID}
	default:
		t.Fatalf("accepted type %q", c.Type)
	}
	for _, id := range ids {
		if err := command.ValidateID("id", id); err != nil {
			t.Fatalf("accepted id: %v", err)
		}
	}
	if c.RequestID() == "" {
		t.Fatal("empty RequestID")
	}
	if trimmed := bytes.TrimSpace(c.Body); !json.Valid(c.Body) || len(trimmed) != len(c.Body) || c.Body[0] != '{' {
		t.Fatalf("Body %q is not a JSON object", c.Body)
	}
	if !bytes.Contains(raw, c.Body) {
		t.Fatalf("Body %q is not bytes of the message", c.Body)
	}
	canon, err := command.Canonical(c.Body)
	if err != nil {
		t.Fatalf("Canonical(Body): %v", err)
	}
	if sum := sha256.Sum256(canon); hex.EncodeToString(sum[:]) != c.BodyHash {
		t.Fatal("BodyHash is not the SHA-256 of the canonical body")
	}
	again, err := command.Canonical(canon)
	if err != nil || !bytes.Equal(again, canon) {
		t.Fatalf("the canonical form is not canonical: %s, %v", again, err)
	}
	for k, v := range c.Headers {
		switch k {
		case "x-ms-throttle-priority", "Prefer", "ConsistencyLevel":
		default:
			t.Fatalf("header %q", k)
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] > 0x7e {
				t.Fatalf("header value %q", v)
			}
		}
	}
}

// FuzzCanonical checks that the canonical form is valid JSON, canonical
// itself, and JSON-equal to its input.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{`{"b":[1,1.0,{"d":null,"c":true}],"a":"\u0041\/\ud83d\ude00"}`, `"x"`, `[]`, `{"a":1,"a":2}`, `"\udc00"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := command.Canonical(in)
		if err != nil {
			return
		}
		if !json.Valid(in) || !json.Valid(out) {
			t.Fatalf("Canonical(%q) = %q from or to invalid JSON", in, out)
		}
		again, err := command.Canonical(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("Canonical is not idempotent on %q: %q, %v", out, again, err)
		}
		decode := func(b []byte) any {
			d := json.NewDecoder(bytes.NewReader(b))
			d.UseNumber()
			var v any
			if err := d.Decode(&v); err != nil {
				t.Fatalf("decode %q: %v", b, err)
			}
			return v
		}
		if a, b := decode(in), decode(out); !reflect.DeepEqual(a, b) {
			t.Fatalf("Canonical(%q) = %q reads differently: %#v vs %#v", in, out, a, b)
		}
	})
}
