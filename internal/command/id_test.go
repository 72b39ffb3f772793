package command_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/graphops/worker/internal/command"
)

func TestValidateID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		ok   bool
		word string // in the detail when refused
	}{
		{"a GUID is an id", "0e60f18c-b2a0-4887-9da8-da2e30a39d99", true, ""},
		{"a provider name is an id", "azureResources", true, ""},
		{"one character is an id", "a", true, ""},
		{"a dot inside a name is an id", "v1.0", true, ""},
		{"128 bytes is an id", strings.Repeat("7", 128), true, ""},
		{"the unreserved punctuation is allowed", "A-z._~0", true, ""},
		{"the empty string is not an id", "", false, "empty"},
		{"129 bytes is not an id", strings.Repeat("7", 129), false, "129 bytes"},
		{"a slash is not allowed", "a/b", false, "'/'"},
		{"a backslash is not allowed", `a\b`, false, `'\\'`},
		{"a percent sign is not allowed", "a%2fb", false, "'%'"},
		{"a question mark is not allowed", "a?b", false, "'?'"},
		{"a hash is not allowed", "a#b", false, "'#'"},
		{"a lone dot is not allowed", ".", false, `"."`},
		{"a dot-dot segment is not allowed", "..", false, `".."`},
		{"a dot-dot inside is not allowed", "a..b", false, `".."`},
		{"a space is not allowed", "a b", false, "whitespace"},
		{"a line feed is not allowed", "a\nb", false, "whitespace"},
		{"an ideographic space is not allowed", "a\u3000b", false, "whitespace"},
		{"a NUL is not allowed", "a\x00", false, "control character"},
		{"an escape is not allowed", "a\x1b", false, "control character"},
		{"DEL is not allowed", "a\x7f", false, "control character"},
		{"a C1 control is not allowed", "a\u009b", false, "control character"},
		{"invalid UTF-8 is not allowed", "a\xffb", false, "UTF-8"},
		{"a fullwidth solidus is not allowed", "a\uff0fb", false, "non-ASCII"},
		{"a letter outside ASCII is not allowed", "é", false, "non-ASCII"},
		{"a double quote is not allowed", `a"b`, false, "letters, digits"},
		{"angle brackets are not allowed", "a<b", false, "letters, digits"},
		{"a pipe is not allowed", "a|b", false, "letters, digits"},
		{"an OData key predicate is not allowed", "a('b')", false, "'('"},
		{"an OData system segment is not allowed", "$ref", false, "'$'"},
		{"an apostrophe is not allowed", "a'b", false, `'\''`},
		{"a parameter alias is not allowed", "@p", false, "'@'"},
		{"a colon is not allowed", "a:b", false, "':'"},
		{"a semicolon is not allowed", "a;b", false, "';'"},
		{"an equals sign is not allowed", "a=b", false, "'='"},
		{"a plus sign is not allowed", "a+b", false, "'+'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := command.ValidateID("data.x", tt.id)
			if tt.ok {
				if err != nil {
					t.Fatalf("ValidateID(%q) = %v, want nil", tt.id, err)
				}
				return
			}
			var e *command.Error
			if !errors.As(err, &e) {
				t.Fatalf("ValidateID(%q) = %v, want a *command.Error", tt.id, err)
			}
			if e.Reason != command.ReasonValidationFailed || e.Field != "data.x" || !strings.Contains(e.Detail, tt.word) {
				t.Errorf("ValidateID(%q) = %s %q %q; want validation_failed on data.x saying %q", tt.id, e.Reason, e.Field, e.Detail, tt.word)
			}
		})
	}
}
