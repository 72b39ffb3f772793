package command_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/graphops/worker/internal/command"
)

func TestCanonical(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"sorts keys at every level and drops whitespace",
			"{ \"b\" : [ 1 , { \"d\" : null , \"c\" : true } ] ,\n \"a\" : \"x\" }",
			`{"a":"x","b":[1,{"c":true,"d":null}]}`},
		{"keeps number literals as they are", `[1, 1.0, 1e0, -0, 1.50, 12345678901234567890]`, `[1,1.0,1e0,-0,1.50,12345678901234567890]`},
		{"decodes escapes that need none", `"\u0041\/\u00e9\ud83d\ude00"`, `"A/é😀"`},
		{"escapes quotes, backslashes and control characters one way", `"\"\\\u0008\u000C\n\r\t\u0001\u001f"`, `"\"\\\b\f\n\r\t\u0001\u001f"`},
		{"leaves HTML characters and line separators alone", `"<&>\u2028"`, "\"<&>\u2028\""},
		{"sorts keys by their decoded bytes", `{"\u00e9":1,"z":2,"A":3}`, `{"A":3,"z":2,"é":1}`},
		{"keeps an empty object and array", `{"a":{},"b":[]}`, `{"a":{},"b":[]}`},
		{"keeps keys that differ only in case, at any level", `{"data":{"b":1,"B":2},"A":0}`, `{"A":0,"data":{"B":2,"b":1}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := command.Canonical(json.RawMessage(tt.in))
			if err != nil {
				t.Fatalf("Canonical: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Canonical(%s) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestCanonicalRefusesValuesWithoutOneMeaning(t *testing.T) {
	tests := []struct {
		name, in, word string
	}{
		{"a duplicate key", `{"a":{"b":1,"b":2}}`, "a.b: duplicate"},
		{"an unpaired surrogate", `"\ud800"`, "surrogate"},
		{"invalid UTF-8", "\"\xff\"", "UTF-8"},
		{"trailing data", `{} {}`, "more data"},
		{"no JSON at all", `{a}`, "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := command.Canonical(json.RawMessage(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.word) {
				t.Errorf("Canonical(%q) = %s, %v; want an error saying %q", tt.in, got, err, tt.word)
			}
		})
	}
}

// withBody returns the seed resume command with data.body replaced by body,
// verbatim.
func withBody(body string) string {
	return `{"specversion":"1.0","id":"a","source":"b","type":"graphops.accessPackageAssignmentRequest.resume",` +
		`"data":{"accessPackageAssignmentRequestId":"r","body":` + body + `}}`
}

const hashBase = `{"source":"Contoso.SodCheckProcess","type":"microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated",` +
	`"data":{"@odata.type":"microsoft.graph.accessPackageAssignmentRequestCallbackData","stage":"assignmentRequestCreated",` +
	`"customExtensionStageInstanceId":"957d0c50-466b-4840-bb5b-c92cea7141ff","customExtensionStageInstanceDetail":"A","n":1}}`

func TestBodyHash(t *testing.T) {
	tests := []struct {
		name  string
		other string
		equal bool
	}{
		{"keys in another order hash equal", `{"data":{"n":1,"customExtensionStageInstanceDetail":"A","customExtensionStageInstanceId":"957d0c50-466b-4840-bb5b-c92cea7141ff",` +
			`"stage":"assignmentRequestCreated","@odata.type":"microsoft.graph.accessPackageAssignmentRequestCallbackData"},` +
			`"type":"microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated","source":"Contoso.SodCheckProcess"}`, true},
		{"other whitespace hashes equal", strings.ReplaceAll(strings.ReplaceAll(hashBase, ",", " ,\n\t"), ":", " : "), true},
		{"an escaped character hashes equal", strings.Replace(hashBase, `Detail":"A"`, `Detail":"\u0041"`, 1), true},
		{"an escaped key hashes equal", strings.Replace(hashBase, `"source"`, `"\u0073ource"`, 1), true},
		{"another detail hashes different", strings.Replace(hashBase, `Detail":"A"`, `Detail":"B"`, 1), false},
		{"a detail in another case hashes different", strings.Replace(hashBase, `Detail":"A"`, `Detail":"a"`, 1), false},
		{"the stage in another case hashes different", strings.ReplaceAll(hashBase, `"stage":"assignmentRequestCreated"`, `"stage":"AssignmentRequestCreated"`), false},
		{"an added state hashes different", strings.Replace(hashBase, `"n":1`, `"n":1,"state":"Denied"`, 1), false},
		{"an added null hashes different", strings.Replace(hashBase, `"n":1`, `"n":1,"state":null`, 1), false},
		{"1.0 instead of 1 hashes different", strings.Replace(hashBase, `"n":1`, `"n":1.0`, 1), false},
		{"a string instead of a number hashes different", strings.Replace(hashBase, `"n":1`, `"n":"1"`, 1), false},
	}
	base, err := command.Parse([]byte(withBody(hashBase)), command.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(mustCanonical(t, base.Body))
	if base.BodyHash != hex.EncodeToString(sum[:]) {
		t.Errorf("BodyHash %s is not the SHA-256 of the canonical body", base.BodyHash)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.other == hashBase {
				t.Fatal("the case does not change the body")
			}
			c, err := command.Parse([]byte(withBody(tt.other)), command.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.BodyHash == base.BodyHash; got != tt.equal {
				t.Errorf("hashes equal = %v, want %v\n%s\n%s", got, tt.equal, mustCanonical(t, base.Body), mustCanonical(t, c.Body))
			}
		})
	}
}

func mustCanonical(t *testing.T, v json.RawMessage) []byte {
	t.Helper()
	b, err := command.Canonical(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
