package graphpath_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/graphops/worker/internal/graphpath"
)

// refused are ids every user of the package must refuse, with a word the
// problem must say; the characters issue 12 names (', (, $, non-ASCII)
// among them.
var refused = []struct {
	name, id, word string
}{
	{"the empty string", "", "empty"},
	{"129 bytes", strings.Repeat("7", 129), "129 bytes"},
	{"a slash", "a/b", "'/'"},
	{"a backslash", `a\b`, `'\\'`},
	{"a percent sign", "a%2fb", "'%'"},
	{"a question mark", "a?b", "'?'"},
	{"a hash", "a#b", "'#'"},
	{"a lone dot", ".", `"."`},
	{"a dot-dot segment", "..", `".."`},
	{"a dot-dot inside", "a..b", `".."`},
	{"a space", "a b", "whitespace"},
	{"a line feed", "a\nb", "whitespace"},
	{"a no-break space", "a\u00a0b", "whitespace"},
	{"an ideographic space", "a\u3000b", "whitespace"},
	{"a NUL", "a\x00", "control character"},
	{"DEL", "a\x7f", "control character"},
	{"a C1 control", "a\u009b", "control character"},
	{"invalid UTF-8", "a\xffb", "UTF-8"},
	{"a fullwidth solidus", "a\uff0fb", "non-ASCII"},
	{"a letter outside ASCII", "caf\u00e9", "non-ASCII"},
	{"an apostrophe", "a'b", `'\''`},
	{"an OData key predicate", "a('b')", "'('"},
	{"an OData system segment", "$ref", "'$'"},
	{"a parameter alias", "@p", "'@'"},
	{"a double quote", `a"b`, "letters, digits"},
	{"a colon", "a:b", "':'"},
	{"an equals sign", "a=b", "'='"},
	{"a comma", "a,b", "','"},
	{"a plus sign", "a+b", "'+'"},
}

var accepted = []string{
	"0e60f18c-b2a0-4887-9da8-da2e30a39d99", "azureResources", "aadRoles", "a", "v1.0", "A-z._~0", strings.Repeat("7", 128),
}

func TestProblem(t *testing.T) {
	for _, id := range accepted {
		if p := graphpath.Problem(id); p != "" {
			t.Errorf("Problem(%q) = %q, want none", id, p)
		}
	}
	for _, tt := range refused {
		t.Run(tt.name+" is not an id", func(t *testing.T) {
			p := graphpath.Problem(tt.id)
			if !strings.Contains(p, tt.word) {
				t.Errorf("Problem(%q) = %q, want it to say %q", tt.id, p, tt.word)
			}
		})
	}
}

func TestCheckWrapsErrInvalidIDAndNamesTheField(t *testing.T) {
	err := graphpath.Check("privilegedAccessId", "a\r\nb")
	if !errors.Is(err, graphpath.ErrInvalidID) {
		t.Fatalf("err = %v, want ErrInvalidID", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "privilegedAccessId") || strings.ContainsAny(msg, "\r\n") {
		t.Errorf("message %q must name the field and hold no line break", msg)
	}
	if err := graphpath.Check("x", "azureResources"); err != nil {
		t.Errorf("Check of an id = %v", err)
	}
}

func TestPaths(t *testing.T) {
	const id = "0e60f18c-b2a0-4887-9da8-da2e30a39d99"
	tests := []struct {
		name string
		got  func() (string, error)
		want string
	}{
		{"the resume action", func() (string, error) { return graphpath.Resume(id) },
			"/v1.0/identityGovernance/entitlementManagement/assignmentRequests/" + id + "/resume"},
		{"the reconciliation read", func() (string, error) { return graphpath.AssignmentRequest(id) },
			"/v1.0/identityGovernance/entitlementManagement/assignmentRequests/" + id},
		{"the role request update", func() (string, error) { return graphpath.RoleRequest("azureResources", id) },
			"/beta/privilegedAccess/azureResources/roleAssignmentRequests/" + id},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.got()
			if err != nil || got != tt.want {
				t.Errorf("= %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestPathsRefuseEveryBadID(t *testing.T) {
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			builders := map[string]func() (string, error){
				"resume":   func() (string, error) { return graphpath.Resume(tt.id) },
				"read":     func() (string, error) { return graphpath.AssignmentRequest(tt.id) },
				"role pid": func() (string, error) { return graphpath.RoleRequest(tt.id, "x") },
				"role id":  func() (string, error) { return graphpath.RoleRequest("aadRoles", tt.id) },
			}
			for name, build := range builders {
				if p, err := build(); !errors.Is(err, graphpath.ErrInvalidID) || p != "" {
					t.Errorf("%s: %q, %v; want no path and ErrInvalidID", name, p, err)
				}
			}
		})
	}
}

func TestParse(t *testing.T) {
	const ar = "/v1.0/identityGovernance/entitlementManagement/assignmentRequests/"
	tests := []struct {
		name string
		path string
		want graphpath.Route
	}{
		{"the resume action", ar + "abc/resume", graphpath.Route{Kind: graphpath.KindResume, AssignmentRequestID: "abc"}},
		{"the read", ar + "abc", graphpath.Route{Kind: graphpath.KindAssignmentRequest, AssignmentRequestID: "abc"}},
		{"the role request", "/beta/privilegedAccess/aadRoles/roleAssignmentRequests/r1",
			graphpath.Route{Kind: graphpath.KindRoleRequest, PrivilegedAccessID: "aadRoles", RoleRequestID: "r1"}},
		{"fixed segments in another case", "/V1.0/IdentityGovernance/EntitlementManagement/AssignmentRequests/abc/Resume",
			graphpath.Route{Kind: graphpath.KindResume, AssignmentRequestID: "abc"}},
		{"an escaped unreserved character in an id", ar + "%61bc", graphpath.Route{Kind: graphpath.KindAssignmentRequest, AssignmentRequestID: "abc"}},
		{"the beta resume", "/beta/identityGovernance/entitlementManagement/assignmentRequests/abc/resume", graphpath.Route{}},
		{"another action", ar + "abc/reprocess", graphpath.Route{}},
		{"a trailing slash", ar + "abc/", graphpath.Route{}},
		{"an escaped slash in an id", ar + "a%2Fb/resume", graphpath.Route{}},
		{"an apostrophe in an id", ar + "a'b", graphpath.Route{}},
		{"a key predicate", "/v1.0/identityGovernance/entitlementManagement/assignmentRequests('abc')", graphpath.Route{}},
		{"a dollar segment", ar + "$count", graphpath.Route{}},
		{"non-ASCII in an id", "/beta/privilegedAccess/aadRoles/roleAssignmentRequests/caf%C3%A9", graphpath.Route{}},
		{"a bad escape", ar + "a%zz", graphpath.Route{}},
		{"the root", "/", graphpath.Route{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := graphpath.Parse(tt.path); got != tt.want {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.path, got, tt.want)
			}
		})
	}
}

// Every path a builder makes parses back to its kind and ids, with the
// method the contract uses.
func TestBuiltPathsParseBack(t *testing.T) {
	resume, _ := graphpath.Resume("abc")
	read, _ := graphpath.AssignmentRequest("abc")
	role, _ := graphpath.RoleRequest("aadRoles", "r1")
	for path, want := range map[string]struct {
		r      graphpath.Route
		method string
	}{
		resume: {graphpath.Route{Kind: graphpath.KindResume, AssignmentRequestID: "abc"}, "POST"},
		read:   {graphpath.Route{Kind: graphpath.KindAssignmentRequest, AssignmentRequestID: "abc"}, "GET"},
		role:   {graphpath.Route{Kind: graphpath.KindRoleRequest, PrivilegedAccessID: "aadRoles", RoleRequestID: "r1"}, "PATCH"},
	} {
		got := graphpath.Parse(path)
		if got != want.r || got.Kind.Method() != want.method {
			t.Errorf("Parse(%q) = %+v (%s), want %+v (%s)", path, got, got.Kind.Method(), want.r, want.method)
		}
	}
}
