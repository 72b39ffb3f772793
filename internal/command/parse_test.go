package command_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/command"
)

func TestParseAcceptsTheSeedCommands(t *testing.T) {
	type want struct {
		id, source, requestID, calloutID string
		typ                              command.Type
		time, deadline                   time.Time
		resume                           *command.Resume
		role                             *command.RoleUpdate
	}
	tests := []struct {
		file string
		want want
	}{
		{"resume-spec.json", want{
			id: "7f3c1a52-2b7e-4c43-9d1e-0c6a6f1d2e11", source: "urn:approvals:sod-check", typ: command.TypeResume,
			time:      time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
			deadline:  time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC),
			requestID: "0e60f18c-b2a0-4887-9da8-da2e30a39d99",
			calloutID: "0e60f18c-b2a0-4887-9da8-da2e30a39d99/957d0c50-466b-4840-bb5b-c92cea7141ff",
			resume: &command.Resume{AssignmentRequestID: "0e60f18c-b2a0-4887-9da8-da2e30a39d99",
				StageInstanceID: "957d0c50-466b-4840-bb5b-c92cea7141ff", Stage: "assignmentRequestCreated"},
		}},
		{"role-request-update-spec.json", want{
			id: "c0ffee00-0000-4000-8000-000000000001", source: "urn:approvals:pim-review", typ: command.TypeRoleRequestUpdate,
			requestID: "azureResources/e13ef8a0-c1cb-4d03-aaae-9cd1c8ede2d1",
			role:      &command.RoleUpdate{PrivilegedAccessID: "azureResources", RequestID: "e13ef8a0-c1cb-4d03-aaae-9cd1c8ede2d1"},
		}},
		{"resume-seed-verified.json", want{
			id: "3d5a7c1e-0b6f-4e2a-8c9d-1a2b3c4d5e01", source: "urn:approvals:sod-check", typ: command.TypeResume,
			requestID: "0e60f18c-b2a0-4887-9da8-da2e30a39d99",
			calloutID: "0e60f18c-b2a0-4887-9da8-da2e30a39d99/957d0c50-466b-4840-bb5b-c92cea7141ff",
			resume: &command.Resume{AssignmentRequestID: "0e60f18c-b2a0-4887-9da8-da2e30a39d99",
				StageInstanceID: "957d0c50-466b-4840-bb5b-c92cea7141ff", Stage: "assignmentRequestCreated"},
		}},
		{"resume-seed-denied.json", want{
			id: "3d5a7c1e-0b6f-4e2a-8c9d-1a2b3c4d5e02", source: "urn:approvals:sod-check", typ: command.TypeResume,
			requestID: "9e60f18c-b2a0-4887-9da8-da2e30a39d99",
			calloutID: "9e60f18c-b2a0-4887-9da8-da2e30a39d99/857d0c50-466b-4840-bb5b-c92cea7141ff",
			resume: &command.Resume{AssignmentRequestID: "9e60f18c-b2a0-4887-9da8-da2e30a39d99",
				StageInstanceID: "857d0c50-466b-4840-bb5b-c92cea7141ff", Stage: "AssignmentRequestCreated", State: "denied"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw := readTestdata(t, tt.file)
			c, err := command.Parse(raw, command.Options{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			w := tt.want
			if c.ID != w.id || c.Source != w.source || c.Type != w.typ {
				t.Errorf("id, source, type = %q, %q, %q; want %q, %q, %q", c.ID, c.Source, c.Type, w.id, w.source, w.typ)
			}
			if !c.Time.Equal(w.time) || !c.Deadline.Equal(w.deadline) {
				t.Errorf("time, deadline = %v, %v; want %v, %v", c.Time, c.Deadline, w.time, w.deadline)
			}
			if got := c.RequestID(); got != w.requestID {
				t.Errorf("RequestID() = %q, want %q", got, w.requestID)
			}
			if got := c.CalloutID(); got != w.calloutID {
				t.Errorf("CalloutID() = %q, want %q", got, w.calloutID)
			}
			if (c.Resume == nil) != (w.resume == nil) || (c.Resume != nil && *c.Resume != *w.resume) {
				t.Errorf("Resume = %+v, want %+v", c.Resume, w.resume)
			}
			if (c.RoleUpdate == nil) != (w.role == nil) || (c.RoleUpdate != nil && *c.RoleUpdate != *w.role) {
				t.Errorf("RoleUpdate = %+v, want %+v", c.RoleUpdate, w.role)
			}
			if c.Headers != nil {
				t.Errorf("Headers = %v, want none", c.Headers)
			}
			canon, err := command.Canonical(c.Body)
			if err != nil {
				t.Fatalf("Canonical(Body): %v", err)
			}
			if !bytes.Contains(raw, c.Body) || !strings.HasPrefix(string(c.Body), "{") || len(canon) == 0 {
				t.Errorf("Body %s is not the data.body of the message", c.Body)
			}
		})
	}
}

func TestParseRefusesTheBadSeedFiles(t *testing.T) {
	tests := []struct {
		file   string
		reason command.Reason
		field  string
		typ    command.Type
	}{
		{"bad-not-json.json", command.ReasonInvalidMessage, "", command.TypeUnknown},
		{"bad-unknown-type.json", command.ReasonInvalidMessage, "type", command.TypeUnknown},
		{"bad-id-path-traversal.json", command.ReasonValidationFailed, "data.accessPackageAssignmentRequestId", command.TypeResume},
		{"bad-stage-mismatch.json", command.ReasonValidationFailed, "data.body.data.stage", command.TypeResume},
		{"bad-connection-test.json", command.ReasonValidationFailed, "data.body.type", command.TypeResume},
		{"bad-duplicate-key.json", command.ReasonValidationFailed, "data.body.data.stage", command.TypeResume},
		{"bad-missing-odata-type.json", command.ReasonValidationFailed, "data.body.data.@odata.type", command.TypeResume},
		{"bad-header-authorization.json", command.ReasonValidationFailed, "data.headers.Authorization", command.TypeResume},
		{"bad-role-request-type.json", command.ReasonValidationFailed, "data.body.type", command.TypeRoleRequestUpdate},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			e := parseError(t, readTestdata(t, tt.file), command.Options{})
			if e.Reason != tt.reason || e.Field != tt.field || e.Type != tt.typ {
				t.Errorf("got %s %q type %q (%v); want %s %q type %q", e.Reason, e.Field, e.Type, e, tt.reason, tt.field, tt.typ)
			}
		})
	}
}

// parseError parses raw and returns its *Error, failing the test when Parse
// succeeds or returns something else.
func parseError(t *testing.T, raw []byte, opts command.Options) *command.Error {
	t.Helper()
	c, err := command.Parse(raw, opts)
	if err == nil {
		t.Fatalf("Parse succeeded (%+v), want an error", c)
	}
	if c != nil {
		t.Errorf("Parse returned a command with the error %v", err)
	}
	var e *command.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not a *command.Error", err, err)
	}
	return e
}

const (
	invalid = command.ReasonInvalidMessage
	wrong   = command.ReasonValidationFailed
)

type badCase struct {
	name   string
	msg    string
	opts   command.Options
	reason command.Reason
	field  string
	words  []string // in Detail
}

func runBad(t *testing.T, tests []badCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := parseError(t, []byte(tt.msg), tt.opts)
			if e.Reason != tt.reason || e.Field != tt.field {
				t.Errorf("got %s on %q (%v); want %s on %q", e.Reason, e.Field, e, tt.reason, tt.field)
			}
			for _, w := range tt.words {
				if !strings.Contains(e.Detail, w) {
					t.Errorf("detail %q does not say %q", e.Detail, w)
				}
			}
			for _, s := range []string{e.Error(), e.Field} {
				for _, r := range s {
					if r < 0x20 || r > 0x7e {
						t.Errorf("error text %q holds %U; it must be printable ASCII for a dead-letter header", s, r)
					}
				}
			}
		})
	}
}

func TestParseRefusesWhatIsNotACommand(t *testing.T) {
	big := resumeMsg(nil)
	big = big[:len(big)-1] + strings.Repeat(" ", command.MaxSize-len(big)) + "}"
	long := strings.Repeat("k", 100)
	runBad(t, []badCase{
		{"a message over 256 KiB is an invalid message", big + " ", command.Options{}, invalid, "", []string{"262145 bytes", "limit"}},
		{"an empty message is an invalid message", "", command.Options{}, invalid, "", []string{"empty"}},
		{"whitespace alone is an invalid message", " \n", command.Options{}, invalid, "", []string{"empty"}},
		{"text that is not JSON is an invalid message", "resume 0e60f18c", command.Options{}, invalid, "", []string{"not valid JSON"}},
		{"a truncated object is an invalid message", `{"specversion":"1.0","id":"x"`, command.Options{}, invalid, "", []string{"end of input"}},
		{"a trailing comma is an invalid message", `{"specversion":"1.0",}`, command.Options{}, invalid, "", []string{"not valid JSON"}},
		{"a JSON array is not a command", `[` + resumeMsg(nil) + `]`, command.Options{}, invalid, "", []string{"array", "not a JSON object"}},
		{"a JSON string is not a command", `"resume"`, command.Options{}, invalid, "", []string{"string", "not a JSON object"}},
		{"null is not a command", `null`, command.Options{}, invalid, "", []string{"null"}},
		{"data after the object is an invalid message", resumeMsg(nil) + ` x`, command.Options{}, invalid, "", []string{"not valid JSON"}},
		{"two objects in one message are an invalid message", resumeMsg(nil) + resumeMsg(nil), command.Options{}, invalid, "", []string{"more data"}},
		{"invalid UTF-8 is an invalid message", strings.Replace(resumeMsg(nil), "verified", "verified\xff", 1), command.Options{}, invalid, "", []string{"UTF-8"}},
		{"a byte order mark is an invalid message", "\uFEFF" + resumeMsg(nil), command.Options{}, invalid, "", []string{"not valid JSON"}},
		{"an unpaired surrogate escape in a value is an invalid message",
			strings.Replace(resumeMsg(nil), "verified", `verified\ud800`, 1), command.Options{}, invalid,
			"data.body.data.customExtensionStageInstanceDetail", []string{"surrogate"}},
		{"an unpaired low surrogate escape in a key is an invalid message",
			strings.Replace(resumeMsg(nil), `"body":{`, `"body":{"x\udc00y":1,`, 1), command.Options{}, invalid,
			`data.body["x\ufffdy"]`, []string{"surrogate"}},
		{"nesting deeper than 64 levels is an invalid message",
			strings.Replace(resumeMsg(nil), `"body":{`, `"body":{"deep":`+strings.Repeat("[", 70)+strings.Repeat("]", 70)+`,`, 1),
			command.Options{}, invalid, "data.body.deep" + strings.Repeat("[0]", 61), []string{"64 levels"}},
		{"a path longer than 256 bytes is cut short",
			strings.Replace(resumeMsg(nil), `"body":{`, `"body":{"`+long+`":{"`+long+`":{"`+long+`":{"a":1,"a":2}}},`, 1),
			command.Options{}, wrong, ("data.body." + long + "." + long + "." + long)[:256] + "...", []string{"duplicate"}},
	})
}

func TestParseRefusesBadCloudEventsAttributes(t *testing.T) {
	ce := func(edit func(ce map[string]any)) string {
		return resumeMsg(func(c, _, _, _ map[string]any) { edit(c) })
	}
	runBad(t, []badCase{
		{"a missing specversion is an invalid message", ce(func(c map[string]any) { delete(c, "specversion") }), command.Options{}, invalid, "specversion", []string{"missing"}},
		{"specversion 0.3 is an invalid message", ce(func(c map[string]any) { c["specversion"] = "0.3" }), command.Options{}, invalid, "specversion", []string{`"0.3"`, `"1.0"`}},
		{"a numeric specversion is an invalid message", ce(func(c map[string]any) { c["specversion"] = 1.0 }), command.Options{}, invalid, "specversion", []string{"number"}},
		{"a missing id is an invalid message", ce(func(c map[string]any) { delete(c, "id") }), command.Options{}, invalid, "id", []string{"missing"}},
		{"an empty id is an invalid message", ce(func(c map[string]any) { c["id"] = "" }), command.Options{}, invalid, "id", []string{"empty"}},
		{"a numeric id is an invalid message", ce(func(c map[string]any) { c["id"] = 7 }), command.Options{}, invalid, "id", []string{"must be a string", "number"}},
		{"an id with a line break is an invalid message", ce(func(c map[string]any) { c["id"] = "a\r\nb" }), command.Options{}, invalid, "id", []string{"control character"}},
		{"a missing source is an invalid message", ce(func(c map[string]any) { delete(c, "source") }), command.Options{}, invalid, "source", []string{"missing"}},
		{"a null source is an invalid message", ce(func(c map[string]any) { c["source"] = nil }), command.Options{}, invalid, "source", []string{"null"}},
		{"a missing type is an invalid message", ce(func(c map[string]any) { delete(c, "type") }), command.Options{}, invalid, "type", []string{"missing"}},
		{"a type that is an object is an invalid message", ce(func(c map[string]any) { c["type"] = map[string]any{} }), command.Options{}, invalid, "type", []string{"object"}},
		{"an unknown type is an invalid message", ce(func(c map[string]any) { c["type"] = "graphops.accessPackageAssignmentRequest.reprocess" }), command.Options{}, invalid, "type", []string{"unknown command type", "reprocess"}},
		{"the short type is not a CloudEvents type", ce(func(c map[string]any) { c["type"] = "resume" }), command.Options{}, invalid, "type", []string{"unknown command type"}},
		{"types compare case-sensitively", ce(func(c map[string]any) { c["type"] = "graphops.accessPackageAssignmentRequest.Resume" }), command.Options{}, invalid, "type", []string{"unknown command type"}},
		{"data_base64 instead of data is an invalid message", ce(func(c map[string]any) { delete(c, "data"); c["data_base64"] = "e30=" }), command.Options{}, invalid, "data_base64", []string{"data_base64", "JSON object"}},
		{"data_base64 beside data is an invalid message", ce(func(c map[string]any) { c["data_base64"] = "e30=" }), command.Options{}, invalid, "data_base64", []string{"not accepted"}},
		{"a missing data is an invalid message", ce(func(c map[string]any) { delete(c, "data") }), command.Options{}, invalid, "data", []string{"missing"}},
		{"data as a string is an invalid message", ce(func(c map[string]any) { c["data"] = `{"body":{}}` }), command.Options{}, invalid, "data", []string{"JSON object", "string"}},
		{"null data is an invalid message", ce(func(c map[string]any) { c["data"] = nil }), command.Options{}, invalid, "data", []string{"null"}},
		{"a text/plain datacontenttype is an invalid message", ce(func(c map[string]any) { c["datacontenttype"] = "text/plain" }), command.Options{}, invalid, "datacontenttype", []string{"not a JSON media type"}},
		{"an XML datacontenttype is an invalid message", ce(func(c map[string]any) { c["datacontenttype"] = "application/xml" }), command.Options{}, invalid, "datacontenttype", []string{"not a JSON media type"}},
		{"a bare +json subtype is an invalid message", ce(func(c map[string]any) { c["datacontenttype"] = "application/+json" }), command.Options{}, invalid, "datacontenttype", []string{"not a JSON media type"}},
		{"a JSON datacontenttype in UTF-16 is an invalid message", ce(func(c map[string]any) { c["datacontenttype"] = "application/json; charset=utf-16" }), command.Options{}, invalid, "datacontenttype", []string{"charset"}},
		{"a malformed datacontenttype is an invalid message", ce(func(c map[string]any) { c["datacontenttype"] = "application/json;;" }), command.Options{}, invalid, "datacontenttype", []string{"not a media type"}},
		{"a numeric datacontenttype is an invalid message", ce(func(c map[string]any) { c["datacontenttype"] = 1 }), command.Options{}, invalid, "datacontenttype", []string{"number"}},
		{"a repeated attribute is an invalid message",
			strings.Replace(resumeMsg(nil), `"id":"7f3c1a52-2b7e-4c43-9d1e-0c6a6f1d2e11"`, `"id":"7f3c1a52-2b7e-4c43-9d1e-0c6a6f1d2e11","id":"other"`, 1),
			command.Options{}, invalid, "id", []string{"duplicate"}},
		{"a repeated data attribute is an invalid message", resumeMsg(nil)[:len(resumeMsg(nil))-1] + `,"data":{}}`, command.Options{}, invalid, "data", []string{"duplicate"}},
		{"a time that is not RFC 3339 fails validation", ce(func(c map[string]any) { c["time"] = "23/11/2026 10:00" }), command.Options{}, wrong, "time", []string{"RFC 3339"}},
		{"a time without a zone fails validation", ce(func(c map[string]any) { c["time"] = "2026-11-23T10:00:00" }), command.Options{}, wrong, "time", []string{"RFC 3339"}},
		{"a numeric time fails validation", ce(func(c map[string]any) { c["time"] = 1763892000 }), command.Options{}, wrong, "time", []string{"number"}},
		{"a deadline that is not RFC 3339 fails validation", ce(func(c map[string]any) { c["deadline"] = "tomorrow" }), command.Options{}, wrong, "deadline", []string{"RFC 3339", `"tomorrow"`}},
		{"a null deadline fails validation", ce(func(c map[string]any) { c["deadline"] = nil }), command.Options{}, wrong, "deadline", []string{"null"}},
	})
}

func TestParseRefusesBadIDs(t *testing.T) {
	apID := func(v any) string {
		return resumeMsg(func(_, data, _, _ map[string]any) { data["accessPackageAssignmentRequestId"] = v })
	}
	const apField = "data.accessPackageAssignmentRequestId"
	runBad(t, []badCase{
		{"a missing request id fails validation", resumeMsg(func(_, data, _, _ map[string]any) { delete(data, "accessPackageAssignmentRequestId") }),
			command.Options{}, wrong, apField, []string{"missing"}},
		{"an empty request id fails validation", apID(""), command.Options{}, wrong, apField, []string{"empty"}},
		{"a numeric request id fails validation", apID(12), command.Options{}, wrong, apField, []string{"must be a string"}},
		{"a request id with a slash fails validation", apID("0e60f18c/resume"), command.Options{}, wrong, apField, []string{`'/'`}},
		{"a request id with a backslash fails validation", apID(`0e60f18c\x`), command.Options{}, wrong, apField, []string{`'\\'`}},
		{"a request id with dot-dot fails validation", apID("..%2f.."), command.Options{}, wrong, apField, []string{`".."`}},
		{"a request id of one dot fails validation", apID("."), command.Options{}, wrong, apField, []string{`"."`}},
		{"a request id with a percent sign fails validation", apID("0e60f18c%2Fx"), command.Options{}, wrong, apField, []string{`'%'`}},
		{"a request id with a question mark fails validation", apID("0e60f18c?x=1"), command.Options{}, wrong, apField, []string{`'?'`}},
		{"a request id with a hash fails validation", apID("0e60f18c#x"), command.Options{}, wrong, apField, []string{`'#'`}},
		{"a request id with a space fails validation", apID("0e60f18c x"), command.Options{}, wrong, apField, []string{"whitespace"}},
		{"a request id with a no-break space fails validation", apID("0e60f18c\u00a0x"), command.Options{}, wrong, apField, []string{"whitespace"}},
		{"a request id with a NUL fails validation", apID("0e60f18c\x00"), command.Options{}, wrong, apField, []string{"control character"}},
		{"a request id with DEL fails validation", apID("0e60f18c\x7f"), command.Options{}, wrong, apField, []string{"control character"}},
		{"a request id with a C1 control fails validation", apID("0e60f18c\u0080"), command.Options{}, wrong, apField, []string{"control character"}},
		{"a request id with a fullwidth solidus fails validation", apID("0e60f18c\uff0fx"), command.Options{}, wrong, apField, []string{"non-ASCII", "U+FF0F"}},
		{"a request id over 128 bytes fails validation", apID(strings.Repeat("a", 129)), command.Options{}, wrong, apField, []string{"129 bytes"}},
		{"a request id with a quote fails validation", apID(`0e60f18c"`), command.Options{}, wrong, apField, []string{"letters, digits"}},
		{"a request id with an OData key predicate fails validation", apID(`0e60f18c('x')`), command.Options{}, wrong, apField, []string{"'('"}},
		{"a missing privilegedAccessId fails validation", roleMsg(func(_, data, _ map[string]any) { delete(data, "privilegedAccessId") }),
			command.Options{}, wrong, "data.privilegedAccessId", []string{"missing"}},
		{"a privilegedAccessId with a slash fails validation", roleMsg(func(_, data, _ map[string]any) { data["privilegedAccessId"] = "azureResources/roleAssignments" }),
			command.Options{}, wrong, "data.privilegedAccessId", []string{`'/'`}},
		{"a null governanceRoleAssignmentRequestId fails validation", roleMsg(func(_, data, _ map[string]any) { data["governanceRoleAssignmentRequestId"] = nil }),
			command.Options{}, wrong, "data.governanceRoleAssignmentRequestId", []string{"must be a string", "null"}},
		{"a governanceRoleAssignmentRequestId with a tab fails validation", roleMsg(func(_, data, _ map[string]any) { data["governanceRoleAssignmentRequestId"] = "e13e\tf8a0" }),
			command.Options{}, wrong, "data.governanceRoleAssignmentRequestId", []string{"whitespace"}},
		{"a missing stage instance id fails validation", resumeMsg(func(_, _, _, cb map[string]any) { delete(cb, "customExtensionStageInstanceId") }),
			command.Options{}, wrong, "data.body.data.customExtensionStageInstanceId", []string{"missing"}},
		{"a stage instance id with a slash fails validation", resumeMsg(func(_, _, _, cb map[string]any) { cb["customExtensionStageInstanceId"] = "a/b" }),
			command.Options{}, wrong, "data.body.data.customExtensionStageInstanceId", []string{`'/'`}},
	})
}

func TestParseRefusesBadResumeBodies(t *testing.T) {
	body := func(edit func(body, cb map[string]any)) string {
		return resumeMsg(func(_, _, b, cb map[string]any) { edit(b, cb) })
	}
	const prefix = "microsoft.graph.accessPackageCustomExtensionStage."
	runBad(t, []badCase{
		{"a missing body fails validation", resumeMsg(func(_, data, _, _ map[string]any) { delete(data, "body") }), command.Options{}, wrong, "data.body", []string{"missing"}},
		{"a body that is an array fails validation", resumeMsg(func(_, data, _, _ map[string]any) { data["body"] = []any{} }), command.Options{}, wrong, "data.body", []string{"JSON object", "array"}},
		{"a body that is a string fails validation", resumeMsg(func(_, data, _, _ map[string]any) { data["body"] = "{}" }), command.Options{}, wrong, "data.body", []string{"JSON object"}},
		{"a missing type fails validation", body(func(b, _ map[string]any) { delete(b, "type") }), command.Options{}, wrong, "data.body.type", []string{"missing"}},
		{"a numeric type fails validation", body(func(b, _ map[string]any) { b["type"] = 1 }), command.Options{}, wrong, "data.body.type", []string{"must be a string"}},
		{"a type without the stage prefix fails validation", body(func(b, _ map[string]any) { b["type"] = "assignmentRequestCreated" }), command.Options{}, wrong, "data.body.type", []string{"not of the form"}},
		{"a type with the prefix only fails validation", body(func(b, _ map[string]any) { b["type"] = prefix }), command.Options{}, wrong, "data.body.type", []string{"not of the form"}},
		{"a type naming an undocumented stage fails validation", body(func(b, _ map[string]any) { b["type"] = prefix + "assignmentRequestDeterminingApprovalRequirements" }), command.Options{}, wrong, "data.body.type", []string{"does not document"}},
		{"the unknownFutureValue sentinel is not a stage", body(func(b, cb map[string]any) {
			b["type"] = prefix + "unknownFutureValue"
			cb["stage"] = "unknownFutureValue"
		}), command.Options{}, wrong, "data.body.type", []string{"does not document"}},
		{"the connection test stage in type fails validation", body(func(b, _ map[string]any) { b["type"] = prefix + "CustomExtensionConnectionTest" }), command.Options{}, wrong, "data.body.type", []string{"connection test", "never resumed"}},
		{"the connection test stage in type fails validation in any case", body(func(b, _ map[string]any) { b["type"] = "customextensionconnectiontest" }), command.Options{}, wrong, "data.body.type", []string{"connection test"}},
		{"the connection test stage in data.stage fails validation", body(func(_, cb map[string]any) { cb["stage"] = "customExtensionConnectionTest" }), command.Options{}, wrong, "data.body.data.stage", []string{"connection test", "never resumed"}},
		{"a missing callback data fails validation", body(func(b, _ map[string]any) { delete(b, "data") }), command.Options{}, wrong, "data.body.data", []string{"missing"}},
		{"callback data that is an array fails validation", body(func(b, _ map[string]any) { b["data"] = []any{} }), command.Options{}, wrong, "data.body.data", []string{"JSON object"}},
		{"a missing @odata.type fails validation", body(func(_, cb map[string]any) { delete(cb, "@odata.type") }), command.Options{}, wrong, "data.body.data.@odata.type", []string{"missing"}},
		{"an empty @odata.type fails validation", body(func(_, cb map[string]any) { cb["@odata.type"] = "" }), command.Options{}, wrong, "data.body.data.@odata.type", []string{"empty"}},
		{"a null @odata.type fails validation", body(func(_, cb map[string]any) { cb["@odata.type"] = nil }), command.Options{}, wrong, "data.body.data.@odata.type", []string{"must be a string"}},
		{"a missing stage fails validation", body(func(_, cb map[string]any) { delete(cb, "stage") }), command.Options{}, wrong, "data.body.data.stage", []string{"missing"}},
		{"a numeric stage fails validation", body(func(_, cb map[string]any) { cb["stage"] = 1 }), command.Options{}, wrong, "data.body.data.stage", []string{"must be a string"}},
		{"an undocumented stage fails validation", body(func(_, cb map[string]any) { cb["stage"] = "assignmentRequestExpired" }), command.Options{}, wrong, "data.body.data.stage", []string{"not a stage Graph documents"}},
		{"a stage that differs from the stage of type fails validation", body(func(_, cb map[string]any) { cb["stage"] = "assignmentRequestApproved" }), command.Options{}, wrong, "data.body.data.stage",
			[]string{`"assignmentRequestApproved" differs from the stage of type "microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated"`}},
		{"a state other than Denied or Canceled fails validation", body(func(_, cb map[string]any) { cb["state"] = "Approved" }), command.Options{}, wrong, "data.body.data.state", []string{`"Approved"`, "Denied, Canceled"}},
		{"an empty state fails validation", body(func(_, cb map[string]any) { cb["state"] = "" }), command.Options{}, wrong, "data.body.data.state", []string{"Denied, Canceled"}},
		{"a numeric state fails validation", body(func(_, cb map[string]any) { cb["state"] = 2 }), command.Options{}, wrong, "data.body.data.state", []string{"must be a string"}},
		{"a numeric detail fails validation", body(func(_, cb map[string]any) { cb["customExtensionStageInstanceDetail"] = 2 }), command.Options{}, wrong, "data.body.data.customExtensionStageInstanceDetail", []string{"must be a string"}},
		{"a source that is an object fails validation", body(func(b, _ map[string]any) { b["source"] = map[string]any{} }), command.Options{}, wrong, "data.body.source", []string{"must be a string"}},
	})
}

func TestParseRefusesBadRoleRequestBodies(t *testing.T) {
	body := func(edit func(body map[string]any)) string {
		return roleMsg(func(_, _, b map[string]any) { edit(b) })
	}
	runBad(t, []badCase{
		{"a role request update is refused when the operation is switched off", roleMsg(nil), command.Options{RoleRequestUpdateDisabled: true}, wrong, "type", []string{"switched off", "GRAPH_ROLE_REQUEST_UPDATE=off"}},
		{"a missing body fails validation", roleMsg(func(_, data, _ map[string]any) { delete(data, "body") }), command.Options{}, wrong, "data.body", []string{"missing"}},
		{"a null body fails validation", roleMsg(func(_, data, _ map[string]any) { data["body"] = nil }), command.Options{}, wrong, "data.body", []string{"JSON object", "null"}},
		{"an undocumented request type fails validation", body(func(b map[string]any) { b["type"] = "AdminApprove" }), command.Options{}, wrong, "data.body.type", []string{`"AdminApprove"`, "AdminRenew"}},
		{"a null request type fails validation", body(func(b map[string]any) { b["type"] = nil }), command.Options{}, wrong, "data.body.type", []string{"must be a string"}},
		{"an undocumented assignment state fails validation", body(func(b map[string]any) { b["assignmentState"] = "Permanent" }), command.Options{}, wrong, "data.body.assignmentState", []string{"Eligible, Active"}},
		{"a schedule that is a string fails validation", body(func(b map[string]any) { b["schedule"] = "Once" }), command.Options{}, wrong, "data.body.schedule", []string{"JSON object"}},
		{"a recurring schedule fails validation", body(func(b map[string]any) { b["schedule"] = map[string]any{"type": "Recurring"} }), command.Options{}, wrong, "data.body.schedule.type", []string{`"Recurring"`, "Once"}},
		{"a numeric schedule end fails validation", body(func(b map[string]any) { b["schedule"] = map[string]any{"endDateTime": 1} }), command.Options{}, wrong, "data.body.schedule.endDateTime", []string{"string or null"}},
		{"a numeric reason fails validation", body(func(b map[string]any) { b["reason"] = 1 }), command.Options{}, wrong, "data.body.reason", []string{"string or null"}},
		{"a numeric body id fails validation", body(func(b map[string]any) { b["id"] = 1 }), command.Options{}, wrong, "data.body.id", []string{"must be a string"}},
	})
}

func TestParseRefusesBadHeaders(t *testing.T) {
	headers := func(h any) string {
		return resumeMsg(func(_, data, _, _ map[string]any) { data["headers"] = h })
	}
	runBad(t, []badCase{
		{"an Authorization header fails validation", headers(map[string]any{"Authorization": "Bearer x"}), command.Options{}, wrong, "data.headers.Authorization", []string{"not allowed", "set by the worker"}},
		{"a Content-Type header fails validation", headers(map[string]any{"content-type": "text/plain"}), command.Options{}, wrong, "data.headers.content-type", []string{"not allowed"}},
		{"a client-request-id header fails validation", headers(map[string]any{"client-request-id": "x"}), command.Options{}, wrong, "data.headers.client-request-id", []string{"not allowed"}},
		{"an unknown header fails validation", headers(map[string]any{"X-Foo": "x"}), command.Options{}, wrong, "data.headers.X-Foo", []string{"not allowed"}},
		{"a header name that folds into an allowed one only in Unicode fails validation", headers(map[string]any{"x-mſ-throttle-priority": "low"}), command.Options{}, wrong, `data.headers["x-m\u017f-throttle-priority"]`, []string{"not allowed"}},
		{"a header name with a line break is named safely", headers(map[string]any{"Prefer\r\nX-Evil": "x"}), command.Options{}, wrong, `data.headers["Prefer\r\nX-Evil"]`, []string{"not allowed"}},
		{"a header value with CR LF fails validation", headers(map[string]any{"Prefer": "a\r\nAuthorization: Bearer x"}), command.Options{}, wrong, "data.headers.Prefer", []string{"CR or LF"}},
		{"a header value with a tab fails validation", headers(map[string]any{"Prefer": "a\tb"}), command.Options{}, wrong, "data.headers.Prefer", []string{"control character"}},
		{"a non-ASCII header value fails validation", headers(map[string]any{"Prefer": "é"}), command.Options{}, wrong, "data.headers.Prefer", []string{"non-ASCII"}},
		{"a numeric header value fails validation", headers(map[string]any{"ConsistencyLevel": 1}), command.Options{}, wrong, "data.headers.ConsistencyLevel", []string{"must be a string"}},
		{"a header given twice in different case fails validation", strings.Replace(resumeMsg(nil), `"data":{`, `"data":{"headers":{"Prefer":"a","prefer":"b"},`, 1), command.Options{}, wrong, "data.headers.prefer", []string{"duplicate", "ignoring case"}},
		{"headers that are an array fail validation", headers([]any{"Prefer: x"}), command.Options{}, wrong, "data.headers", []string{"JSON object"}},
	})
}

func TestParseRefusesDuplicateKeysInData(t *testing.T) {
	msg := resumeMsg(nil)
	runBad(t, []badCase{
		{"a repeated key in the callback data fails validation",
			strings.Replace(msg, `"stage":"assignmentRequestCreated"`, `"stage":"assignmentRequestCreated","stage":"assignmentRequestApproved"`, 1),
			command.Options{}, wrong, "data.body.data.stage", []string{"duplicate"}},
		{"a key repeated with an escape fails validation",
			strings.Replace(msg, `"stage":"assignmentRequestCreated"`, `"stage":"assignmentRequestCreated","st\u0061ge":"assignmentRequestApproved"`, 1),
			command.Options{}, wrong, "data.body.data.stage", []string{"duplicate"}},
		{"a repeated request id fails validation",
			strings.Replace(msg, `"data":{`, `"data":{"accessPackageAssignmentRequestId":"9e60f18c-b2a0-4887-9da8-da2e30a39d99",`, 1),
			command.Options{}, wrong, "data.accessPackageAssignmentRequestId", []string{"duplicate"}},
		{"a repeated body fails validation",
			strings.Replace(msg, `"data":{`, `"data":{"body":{},`, 1),
			command.Options{}, wrong, "data.body", []string{"duplicate"}},
		{"a repeated key deep inside an array of the body fails validation",
			strings.Replace(msg, `"body":{`, `"body":{"extra":[1,{"a":{"b":1,"b":2}}],`, 1),
			command.Options{}, wrong, "data.body.extra[1].a.b", []string{"duplicate"}},
		{"a repeated key in a large object fails validation",
			strings.Replace(msg, `"body":{`, `"body":{"extra":{`+manyKeys(40)+`,"k7":0},`, 1),
			command.Options{}, wrong, "data.body.extra.k7", []string{"duplicate"}},
		{"keys that differ only in case fail validation",
			strings.Replace(msg, `"stage":"assignmentRequestCreated"`, `"stage":"assignmentRequestCreated","Stage":"assignmentRequestApproved"`, 1),
			command.Options{}, wrong, "data.body.data.Stage", []string{"duplicate", "ignoring case"}},
		{"keys that differ only in case fail validation in a large object",
			strings.Replace(msg, `"body":{`, `"body":{"extra":{`+manyKeys(40)+`,"K39":0},`, 1),
			command.Options{}, wrong, "data.body.extra.K39", []string{"duplicate"}},
		{"keys that differ only in case are not duplicates outside data",
			strings.Replace(strings.Replace(msg, `"specversion":"1.0"`, `"specversion":"1.0","ID":"x","Id":"y","ext":{"a":1,"A":2,"b":{}}`, 1),
				`"body":{`, `"body":{"a":1,"a":2,`, 1),
			command.Options{}, wrong, "data.body.a", nil},
		{"a repeated key inside an extension attribute is an invalid message",
			strings.Replace(msg, `"specversion":"1.0"`, `"specversion":"1.0","ext":{"a":1,"a":2}`, 1),
			command.Options{}, invalid, "ext.a", []string{"duplicate"}},
		{"the first repeated key in the message is named",
			strings.Replace(msg, `"body":{`, `"body":{"x":1,"x":2,"y":1,"y":2,`, 1),
			command.Options{}, wrong, "data.body.x", []string{"duplicate"}},
	})
}

// manyKeys returns n object members "k0":0 … "k<n-1>":0.
func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + strconvItoa(i) + `":0`)
	}
	return b.String()
}

func strconvItoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return strconvItoa(i/10) + string(rune('0'+i%10))
}

func TestParseReportsTheFirstFailureInAFixedOrder(t *testing.T) {
	runBad(t, []badCase{
		{"an unknown type wins over a bad time", resumeMsg(func(ce, _, _, _ map[string]any) { ce["type"] = "x"; ce["time"] = "x" }), command.Options{}, invalid, "type", nil},
		{"a missing id wins over an unknown type", resumeMsg(func(ce, _, _, _ map[string]any) { ce["type"] = "x"; delete(ce, "id") }), command.Options{}, invalid, "id", nil},
		{"an unreadable data wins over a bad time", resumeMsg(func(ce, _, _, _ map[string]any) { ce["data"] = 1; ce["time"] = "x" }), command.Options{}, invalid, "data", nil},
		{"a bad time wins over a bad deadline", resumeMsg(func(ce, _, _, _ map[string]any) { ce["deadline"] = "x"; ce["time"] = "x" }), command.Options{}, wrong, "time", nil},
		{"a bad deadline wins over a bad id", resumeMsg(func(ce, data, _, _ map[string]any) {
			ce["deadline"] = "x"
			data["accessPackageAssignmentRequestId"] = ""
		}), command.Options{}, wrong, "deadline", nil},
		{"a switched-off operation wins over a bad id", roleMsg(func(_, data, _ map[string]any) { data["privilegedAccessId"] = "" }), command.Options{RoleRequestUpdateDisabled: true}, wrong, "type", nil},
		{"a duplicate key wins over a bad id",
			strings.Replace(resumeMsg(func(_, data, _, _ map[string]any) { data["accessPackageAssignmentRequestId"] = "" }), `"body":{`, `"body":{"a":1,"a":1,`, 1),
			command.Options{}, wrong, "data.body.a", nil},
		{"a bad id wins over a bad body", resumeMsg(func(_, data, body, _ map[string]any) {
			data["accessPackageAssignmentRequestId"] = "a/b"
			delete(body, "type")
		}), command.Options{}, wrong, "data.accessPackageAssignmentRequestId", nil},
		{"the privileged access id is checked before the request id", roleMsg(func(_, data, _ map[string]any) {
			data["privilegedAccessId"] = ""
			data["governanceRoleAssignmentRequestId"] = ""
		}), command.Options{}, wrong, "data.privilegedAccessId", nil},
		{"a bad body wins over a bad header", resumeMsg(func(_, data, body, _ map[string]any) {
			data["headers"] = map[string]any{"X": "y"}
			delete(body, "type")
		}), command.Options{}, wrong, "data.body.type", nil},
		{"a bad header wins over an unknown data property", resumeMsg(func(_, data, _, _ map[string]any) { data["headers"] = map[string]any{"X": "y"}; data["extra"] = 1 }), command.Options{}, wrong, "data.headers.X", nil},
	})
}

func TestParseRefusesUnknownDataProperties(t *testing.T) {
	runBad(t, []badCase{
		{"a misspelt headers property fails validation", resumeMsg(func(_, data, _, _ map[string]any) { data["header"] = map[string]any{"Prefer": "x"} }), command.Options{}, wrong, "data.header", []string{"unknown property"}},
		{"a role request id in a resume fails validation", resumeMsg(func(_, data, _, _ map[string]any) { data["privilegedAccessId"] = "aadRoles" }), command.Options{}, wrong, "data.privilegedAccessId", []string{"unknown property", "resume"}},
		{"a resume id in a role request update fails validation", roleMsg(func(_, data, _ map[string]any) { data["accessPackageAssignmentRequestId"] = "x" }), command.Options{}, wrong, "data.accessPackageAssignmentRequestId", []string{"unknown property"}},
	})
}

func TestParseAccepts(t *testing.T) {
	const prefix = "microsoft.graph.accessPackageCustomExtensionStage."
	tests := []struct {
		name  string
		msg   string
		check func(t *testing.T, c *command.Command)
	}{
		{"a message of exactly 256 KiB", func() string {
			m := resumeMsg(nil)
			return m[:len(m)-1] + strings.Repeat(" ", command.MaxSize-len(m)) + "}"
		}(), func(t *testing.T, c *command.Command) {}},
		{"a deny at assignmentRequestCreated (Graph decides)", resumeMsg(func(_, _, _, cb map[string]any) { cb["state"] = "Denied" }),
			func(t *testing.T, c *command.Command) {
				if c.Resume.State != "Denied" {
					t.Errorf("State = %q", c.Resume.State)
				}
			}},
		{"a cancel in lower case", resumeMsg(func(_, _, _, cb map[string]any) { cb["state"] = "canceled" }),
			func(t *testing.T, c *command.Command) {
				if c.Resume.State != "canceled" {
					t.Errorf("State = %q", c.Resume.State)
				}
			}},
		{"a null state, detail and source", resumeMsg(func(_, _, b, cb map[string]any) {
			cb["state"] = nil
			cb["customExtensionStageInstanceDetail"] = nil
			b["source"] = nil
		}), func(t *testing.T, c *command.Command) {
			if c.Resume.State != "" {
				t.Errorf("State = %q", c.Resume.State)
			}
		}},
		{"a resume without source and detail", resumeMsg(func(_, _, b, cb map[string]any) {
			delete(b, "source")
			delete(cb, "customExtensionStageInstanceDetail")
		}),
			func(t *testing.T, c *command.Command) {}},
		{"every documented stage, in any case", resumeMsg(func(_, _, b, cb map[string]any) {
			b["type"] = "Microsoft.Graph.AccessPackageCustomExtensionStage.ASSIGNMENTONEDAYBEFOREEXPIRATION"
			cb["stage"] = "assignmentOneDayBeforeExpiration"
		}), func(t *testing.T, c *command.Command) {
			if c.Resume.Stage != "assignmentOneDayBeforeExpiration" {
				t.Errorf("Stage = %q, want it as sent", c.Resume.Stage)
			}
		}},
		{"the approved stage", resumeMsg(func(_, _, b, cb map[string]any) {
			b["type"] = prefix + "assignmentRequestApproved"
			cb["stage"] = "AssignmentRequestApproved"
		}),
			func(t *testing.T, c *command.Command) {}},
		{"the granted stage", resumeMsg(func(_, _, b, cb map[string]any) {
			b["type"] = prefix + "assignmentRequestGranted"
			cb["stage"] = "assignmentRequestGranted"
		}),
			func(t *testing.T, c *command.Command) {}},
		{"the removed stage", resumeMsg(func(_, _, b, cb map[string]any) {
			b["type"] = prefix + "assignmentRequestRemoved"
			cb["stage"] = "assignmentRequestRemoved"
		}),
			func(t *testing.T, c *command.Command) {}},
		{"the fourteen-days stage", resumeMsg(func(_, _, b, cb map[string]any) {
			b["type"] = prefix + "assignmentFourteenDaysBeforeExpiration"
			cb["stage"] = "assignmentFourteenDaysBeforeExpiration"
		}), func(t *testing.T, c *command.Command) {}},
		{"unknown properties in the body and the callback data", resumeMsg(func(_, _, b, cb map[string]any) {
			b["extra"] = []any{1, "x"}
			cb["approvalStage"] = map[string]any{"a": 1}
		}),
			func(t *testing.T, c *command.Command) {
				if !strings.Contains(string(c.Body), `"extra":[1,"x"]`) || !strings.Contains(string(c.Body), `"approvalStage"`) {
					t.Errorf("Body lost unknown properties: %s", c.Body)
				}
			}},
		{"allowed headers, named in their canonical spelling", resumeMsg(func(_, data, _, _ map[string]any) {
			data["headers"] = map[string]any{"X-MS-Throttle-Priority": "high", "prefer": "return=minimal", "consistencylevel": "eventual"}
		}), func(t *testing.T, c *command.Command) {
			want := map[string]string{"x-ms-throttle-priority": "high", "Prefer": "return=minimal", "ConsistencyLevel": "eventual"}
			if len(c.Headers) != len(want) {
				t.Errorf("Headers = %v, want %v", c.Headers, want)
			}
			for k, v := range want {
				if c.Headers[k] != v {
					t.Errorf("Headers[%q] = %q, want %q", k, c.Headers[k], v)
				}
			}
		}},
		{"null headers as none", resumeMsg(func(_, data, _, _ map[string]any) { data["headers"] = nil }),
			func(t *testing.T, c *command.Command) {
				if c.Headers != nil {
					t.Errorf("Headers = %v, want nil", c.Headers)
				}
			}},
		{"a JSON datacontenttype with parameters", resumeMsg(func(ce, _, _, _ map[string]any) { ce["datacontenttype"] = "Application/JSON; charset=UTF-8" }),
			func(t *testing.T, c *command.Command) {}},
		{"a +json datacontenttype", resumeMsg(func(ce, _, _, _ map[string]any) { ce["datacontenttype"] = "application/cloudevents+json" }),
			func(t *testing.T, c *command.Command) {}},
		{"other CloudEvents attributes", resumeMsg(func(ce, _, _, _ map[string]any) {
			ce["subject"] = "0e60f18c"
			ce["dataschema"] = "https://example.com/schema"
			ce["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		}), func(t *testing.T, c *command.Command) {}},
		{"time and deadline with offsets, fractions and lower-case letters", resumeMsg(func(ce, _, _, _ map[string]any) {
			ce["time"] = "2026-11-23T11:00:00.5+01:00"
			ce["deadline"] = "2026-11-24t10:00:00z"
		}), func(t *testing.T, c *command.Command) {
			if !c.Time.Equal(time.Date(2026, 11, 23, 10, 0, 0, 5e8, time.UTC)) || !c.Deadline.Equal(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)) {
				t.Errorf("Time, Deadline = %v, %v", c.Time, c.Deadline)
			}
		}},
		{"ids of 128 bytes with every allowed punctuation", resumeMsg(func(_, data, _, _ map[string]any) {
			data["accessPackageAssignmentRequestId"] = strings.Repeat("a", 128-4) + "-._~"
		}), func(t *testing.T, c *command.Command) {
			if len(c.Resume.AssignmentRequestID) != 128 {
				t.Errorf("AssignmentRequestID = %q", c.Resume.AssignmentRequestID)
			}
		}},
		{"a role request with lower-case enumerations, nulls and unknown properties", roleMsg(func(_, _, b map[string]any) {
			b["type"] = "adminextend"
			b["assignmentState"] = "active"
			b["schedule"] = map[string]any{"type": nil, "startDateTime": nil, "duration": "P30D"}
			b["reason"] = nil
			b["subjectId"] = nil
			b["customProperty"] = map[string]any{"x": []any{true, false, nil}}
		}), func(t *testing.T, c *command.Command) {
			if c.RoleUpdate == nil || c.Resume != nil || c.CalloutID() != "" {
				t.Errorf("RoleUpdate, Resume, CalloutID = %+v, %+v, %q", c.RoleUpdate, c.Resume, c.CalloutID())
			}
		}},
		{"a role request with an empty body (a no-op PATCH)", roleMsg(func(_, data, _ map[string]any) { data["body"] = map[string]any{} }),
			func(t *testing.T, c *command.Command) {
				if string(c.Body) != "{}" {
					t.Errorf("Body = %s", c.Body)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := command.Parse([]byte(tt.msg), command.Options{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseAcceptsAResumeWhileRoleRequestUpdatesAreSwitchedOff(t *testing.T) {
	c, err := command.Parse([]byte(resumeMsg(nil)), command.Options{RoleRequestUpdateDisabled: true})
	if err != nil || c.Type != command.TypeResume {
		t.Fatalf("Parse = %+v, %v; want a resume", c, err)
	}
}

func TestParseKeepsTheBodyBytes(t *testing.T) {
	body := "{ \"type\" :\"microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestGranted\",\n\t\"unknown\": [ 1.50 , \"\\u0041\\/\" ],\r\n" +
		"  \"data\":{\"@odata.type\":\"#microsoft.graph.accessPackageAssignmentRequestCallbackData\",\"stage\":\"assignmentRequestGranted\"," +
		"\"customExtensionStageInstanceId\":\"957d0c50-466b-4840-bb5b-c92cea7141ff\"}   }"
	msg := "{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"b\",\"type\":\"graphops.accessPackageAssignmentRequest.resume\"," +
		"\"data\":{\"accessPackageAssignmentRequestId\":\"r\",\"body\":  " + body + "  \n}}"
	raw := []byte(msg)
	c, err := command.Parse(raw, command.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Body) != body {
		t.Fatalf("Body =\n%s\nwant\n%s", c.Body, body)
	}
	// Body is a copy: reusing the message buffer does not change it.
	for i := range raw {
		raw[i] = 'x'
	}
	if string(c.Body) != body {
		t.Errorf("Body aliases the input buffer")
	}
}

func TestParseErrorsCarryWhatCouldBeRead(t *testing.T) {
	tests := []struct {
		name                          string
		msg                           string
		typ                           command.Type
		id, source, requestID, reason string
	}{
		{"nothing from a message that is not JSON", `{"id":"a","type":"graphops.accessPackageAssignmentRequest.resume",`,
			command.TypeUnknown, "", "", "", string(invalid)},
		{"the id and source of a message with an unknown type", resumeMsg(func(ce, _, _, _ map[string]any) { ce["type"] = "x" }),
			command.TypeUnknown, "7f3c1a52-2b7e-4c43-9d1e-0c6a6f1d2e11", "urn:approvals:sod-check", "", string(invalid)},
		{"the type of a message without a specversion", resumeMsg(func(ce, _, _, _ map[string]any) { delete(ce, "specversion") }),
			command.TypeResume, "7f3c1a52-2b7e-4c43-9d1e-0c6a6f1d2e11", "urn:approvals:sod-check", "0e60f18c-b2a0-4887-9da8-da2e30a39d99", string(invalid)},
		{"the request id of a resume with a bad body", resumeMsg(func(_, _, b, _ map[string]any) { delete(b, "type") }),
			command.TypeResume, "7f3c1a52-2b7e-4c43-9d1e-0c6a6f1d2e11", "urn:approvals:sod-check", "0e60f18c-b2a0-4887-9da8-da2e30a39d99", string(wrong)},
		{"the request id of a switched-off role request update", roleMsg(nil),
			command.TypeRoleRequestUpdate, "c0ffee00-0000-4000-8000-000000000001", "urn:approvals:pim-review", "azureResources/e13ef8a0-c1cb-4d03-aaae-9cd1c8ede2d1", string(wrong)},
		{"no request id that is not a safe id", resumeMsg(func(_, data, _, _ map[string]any) { data["accessPackageAssignmentRequestId"] = "a\r\nb" }),
			command.TypeResume, "7f3c1a52-2b7e-4c43-9d1e-0c6a6f1d2e11", "urn:approvals:sod-check", "", string(wrong)},
		{"no id or source with control characters", resumeMsg(func(ce, _, _, _ map[string]any) { ce["id"] = "a\nb"; ce["source"] = "c\x00" }),
			command.TypeResume, "", "", "0e60f18c-b2a0-4887-9da8-da2e30a39d99", string(invalid)},
		{"no type when the type attribute is repeated",
			strings.Replace(resumeMsg(nil), `"type":"graphops`, `"type":"x","type":"graphops`, 1),
			command.TypeUnknown, "7f3c1a52-2b7e-4c43-9d1e-0c6a6f1d2e11", "urn:approvals:sod-check", "", string(invalid)},
		{"nothing from a message over the size limit", resumeMsg(nil) + strings.Repeat(" ", command.MaxSize),
			command.TypeUnknown, "", "", "", string(invalid)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := parseError(t, []byte(tt.msg), command.Options{RoleRequestUpdateDisabled: true})
			if e.Type != tt.typ || e.ID != tt.id || e.Source != tt.source || e.RequestID != tt.requestID || string(e.Reason) != tt.reason {
				t.Errorf("got type %q id %q source %q request %q reason %s; want %q %q %q %q %s (%v)",
					e.Type, e.ID, e.Source, e.RequestID, e.Reason, tt.typ, tt.id, tt.source, tt.requestID, tt.reason, e)
			}
		})
	}
}

func TestErrorReadsFieldColonDetail(t *testing.T) {
	tests := []struct {
		name string
		err  command.Error
		want string
	}{
		{"with a field", command.Error{Field: "data.body.data.stage", Detail: "is missing"}, "data.body.data.stage: is missing"},
		{"without a field", command.Error{Detail: "not valid JSON"}, "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRequestIDAndCalloutIDOfHandMadeCommands(t *testing.T) {
	tests := []struct {
		name               string
		cmd                command.Command
		request, calloutID string
	}{
		{"a resume", command.Command{Type: command.TypeResume, Resume: &command.Resume{AssignmentRequestID: "r", StageInstanceID: "s"}}, "r", "r/s"},
		{"a role request update", command.Command{Type: command.TypeRoleRequestUpdate, RoleUpdate: &command.RoleUpdate{PrivilegedAccessID: "p", RequestID: "q"}}, "p/q", ""},
		{"a resume without its ids", command.Command{Type: command.TypeResume}, "", ""},
		{"an unknown type", command.Command{Type: command.TypeUnknown}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cmd.RequestID(); got != tt.request {
				t.Errorf("RequestID() = %q, want %q", got, tt.request)
			}
			if got := tt.cmd.CalloutID(); got != tt.calloutID {
				t.Errorf("CalloutID() = %q, want %q", got, tt.calloutID)
			}
		})
	}
}
