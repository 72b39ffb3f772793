package command_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// resumeMsg returns a valid resume command, after edit changes its
// CloudEvent (ce), its data, data.body and data.body.data.
func resumeMsg(edit func(ce, data, body, cb map[string]any)) string {
	cb := map[string]any{
		"@odata.type":                        "microsoft.graph.accessPackageAssignmentRequestCallbackData",
		"stage":                              "assignmentRequestCreated",
		"customExtensionStageInstanceId":     "957d0c50-466b-4840-bb5b-c92cea7141ff",
		"customExtensionStageInstanceDetail": "This user is all verified",
	}
	body := map[string]any{
		"source": "Contoso.SodCheckProcess",
		"type":   "microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated",
		"data":   cb,
	}
	data := map[string]any{
		"accessPackageAssignmentRequestId": "0e60f18c-b2a0-4887-9da8-da2e30a39d99",
		"body":                             body,
	}
	ce := map[string]any{
		"specversion": "1.0",
		"id":          "7f3c1a52-2b7e-4c43-9d1e-0c6a6f1d2e11",
		"source":      "urn:approvals:sod-check",
		"type":        "graphops.accessPackageAssignmentRequest.resume",
		"data":        data,
	}
	if edit != nil {
		edit(ce, data, body, cb)
	}
	return mustJSON(ce)
}

// roleMsg returns a valid role request update, after edit changes its
// CloudEvent, its data and data.body.
func roleMsg(edit func(ce, data, body map[string]any)) string {
	body := map[string]any{
		"reason":   "Extended after review",
		"schedule": map[string]any{"type": "Once", "endDateTime": "2026-12-31T00:00:00Z"},
	}
	data := map[string]any{
		"privilegedAccessId":                "azureResources",
		"governanceRoleAssignmentRequestId": "e13ef8a0-c1cb-4d03-aaae-9cd1c8ede2d1",
		"body":                              body,
	}
	ce := map[string]any{
		"specversion": "1.0",
		"id":          "c0ffee00-0000-4000-8000-000000000001",
		"source":      "urn:approvals:pim-review",
		"type":        "graphops.governanceRoleAssignmentRequest.update",
		"data":        data,
	}
	if edit != nil {
		edit(ce, data, body)
	}
	return mustJSON(ce)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
