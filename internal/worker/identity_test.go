package worker

import (
	"strings"
	"testing"

	"github.com/graphops/worker/internal/command"
)

func parse(t *testing.T, raw string) *command.Command {
	t.Helper()
	c, err := command.Parse([]byte(raw), command.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const resumeTmpl = `{"specversion":"1.0","id":"%ID%","source":"urn:a","type":"graphops.accessPackageAssignmentRequest.resume",
"data":{"accessPackageAssignmentRequestId":"%REQ%","body":{"type":"microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated",
"data":{"@odata.type":"microsoft.graph.accessPackageAssignmentRequestCallbackData","stage":"assignmentRequestCreated","customExtensionStageInstanceId":"%INST%"}}}}`

func resume(t *testing.T, id, req, inst string) *command.Command {
	return parse(t, strings.NewReplacer("%ID%", id, "%REQ%", req, "%INST%", inst).Replace(resumeTmpl))
}

func TestResumesAreKeyedByTheirCalloutInstanceWhateverTheirIds(t *testing.T) {
	a := identityOf(resume(t, "one", "0E60F18C-b2a0-4887-9da8-da2e30a39d99", "957d0c50-466b-4840-bb5b-c92cea7141ff"))
	upper := identityOf(resume(t, "one", "0e60f18c-b2a0-4887-9da8-da2e30a39d99", "957D0C50-466b-4840-bb5b-c92cea7141ff"))
	b := identityOf(resume(t, "two", "0e60f18c-b2a0-4887-9da8-da2e30a39d99", "957d0c50-466b-4840-bb5b-c92cea7141ff"))
	c := identityOf(resume(t, "one", "0e60f18c-b2a0-4887-9da8-da2e30a39d99", "other-instance"))
	if a.Key != b.Key {
		t.Error("two commands for one callout instance (ids in another case) got different keys")
	}
	if upper.Key != b.Key {
		t.Error("an instance id in another case got another key")
	}
	if a.Key == c.Key {
		t.Error("two callout instances share a key")
	}
	if a.BodyHash != b.BodyHash {
		t.Error("JSON-equal bodies hash differently")
	}
}

func TestRoleRequestUpdatesAreKeyedBySourceAndID(t *testing.T) {
	role := func(src, id string) *command.Command {
		return parse(t, `{"specversion":"1.0","id":"`+id+`","source":"`+src+`","type":"graphops.governanceRoleAssignmentRequest.update",
"data":{"privilegedAccessId":"azureResources","governanceRoleAssignmentRequestId":"r1","body":{"reason":"x"}}}`)
	}
	if identityOf(role("s", "1")).Key == identityOf(role("s", "2")).Key {
		t.Error("two updates of one role request share a key: the second would never be applied")
	}
	if identityOf(role("s", "1")).Key == identityOf(role("t", "1")).Key {
		t.Error("the same id from two sources shares a key")
	}
}

func TestCallOfNamesTheContractCall(t *testing.T) {
	m, p := callOf(resume(t, "x", "abc", "i"))
	if m != "POST" || p != "/v1.0/identityGovernance/entitlementManagement/assignmentRequests/abc/resume" {
		t.Errorf("resume: %s %s", m, p)
	}
	role := parse(t, `{"specversion":"1.0","id":"1","source":"s","type":"graphops.governanceRoleAssignmentRequest.update",
"data":{"privilegedAccessId":"azureResources","governanceRoleAssignmentRequestId":"r-1","body":{}}}`)
	if m, p := callOf(role); m != "PATCH" || p != "/beta/privilegedAccess/azureResources/roleAssignmentRequests/r-1" {
		t.Errorf("role request update: %s %s", m, p)
	}
	// A command not made by Parse with an id graphpath refuses gets no path.
	bad := resume(t, "x", "abc", "i")
	bad.Resume.AssignmentRequestID = "a('b')"
	if m, p := callOf(bad); m != "POST" || p != "" {
		t.Errorf("bad id: %s %q, want POST and no path", m, p)
	}
}

func TestCommandsForOneRequestIDShareItsRequestWhateverTheCase(t *testing.T) {
	a := identityOf(resume(t, "one", "0E60F18C-b2a0-4887-9da8-da2e30a39d99", "inst-1"))
	b := identityOf(resume(t, "two", "0e60f18c-b2a0-4887-9da8-da2e30a39d99", "inst-2"))
	other := identityOf(resume(t, "one", "1e60f18c-b2a0-4887-9da8-da2e30a39d99", "inst-1"))
	if a.Request != b.Request {
		t.Errorf("two stages of one assignment request are serialized apart: %q, %q", a.Request, b.Request)
	}
	if a.Request == other.Request {
		t.Error("two assignment requests share a request lock")
	}
	role := parse(t, `{"specversion":"1.0","id":"1","source":"s","type":"graphops.governanceRoleAssignmentRequest.update",
"data":{"privilegedAccessId":"azureResources","governanceRoleAssignmentRequestId":"0e60f18c-b2a0-4887-9da8-da2e30a39d99","body":{"reason":"x"}}}`)
	if identityOf(role).Request == a.Request {
		t.Error("a role request and an assignment request with the same id share a request lock")
	}
}
