package graphops

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Graph's customExtensionCalloutInstanceStatus values.
const (
	StatusCalloutSent        = "calloutSent"
	StatusCallbackReceived   = "callbackReceived"
	StatusCalloutFailed      = "calloutFailed"
	StatusCallbackTimedOut   = "callbackTimedOut"
	StatusWaitingForCallback = "waitingForCallback"
)

// AssignmentRequest is the part of an accessPackageAssignmentRequest the
// reconciliation read selects (docs/SPEC.md §3).
type AssignmentRequest struct {
	ID, State, Status string
	CalloutInstances  []CalloutInstance
}

// CalloutInstance is one customExtensionCalloutInstance of a request.
type CalloutInstance struct {
	ID, Status, Detail, CustomExtensionID, ExternalCorrelationID string
}

// Instance finds the callout instance with this id. Graph ids are GUIDs,
// compared case-insensitively.
func (a AssignmentRequest) Instance(id string) (CalloutInstance, bool) {
	for _, in := range a.CalloutInstances {
		if strings.EqualFold(in.ID, id) {
			return in, true
		}
	}
	return CalloutInstance{}, false
}

// GetAssignmentRequest makes one GET
// {base}/v1.0/identityGovernance/entitlementManagement/assignmentRequests/{id}?$select=id,state,status,customExtensionCalloutInstances,
// observed under operation "resume". Errors are typed as for the writes; a
// 2xx whose body is not the expected JSON gives ErrBadResponse.
func (c *Client) GetAssignmentRequest(ctx context.Context, assignmentRequestID string) (AssignmentRequest, Result, error) {
	u, err := c.assignmentRequestURL(assignmentRequestID)
	if err != nil {
		return AssignmentRequest{}, Result{}, err
	}
	res, err := c.roundTrip(ctx, request{op: OpResume, method: http.MethodGet, url: u})
	if err != nil {
		return AssignmentRequest{}, Result{}, err
	}
	if res.readErr != nil {
		return AssignmentRequest{}, res.Result, fmt.Errorf("graph: %s read: %w: %v", OpResume, ErrBadResponse, res.readErr)
	}
	var wire struct {
		ID        string `json:"id"`
		State     string `json:"state"`
		Status    string `json:"status"`
		Instances []struct {
			ID                    string `json:"id"`
			Status                string `json:"status"`
			Detail                string `json:"detail"`
			CustomExtensionID     string `json:"customExtensionId"`
			ExternalCorrelationID string `json:"externalCorrelationId"`
		} `json:"customExtensionCalloutInstances"`
	}
	if err := json.Unmarshal(res.Body, &wire); err != nil {
		return AssignmentRequest{}, res.Result, fmt.Errorf("graph: %s read: %w: %v", OpResume, ErrBadResponse, err)
	}
	if wire.ID == "" {
		return AssignmentRequest{}, res.Result, fmt.Errorf("graph: %s read: %w: no id in the answer", OpResume, ErrBadResponse)
	}
	ar := AssignmentRequest{ID: wire.ID, State: wire.State, Status: wire.Status}
	for _, in := range wire.Instances {
		ar.CalloutInstances = append(ar.CalloutInstances, CalloutInstance(in))
	}
	return ar, res.Result, nil
}
