package graphsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Graph's customExtensionCalloutInstanceStatus values.
const (
	StatusCalloutSent        = "calloutSent"
	StatusCallbackReceived   = "callbackReceived"
	StatusCalloutFailed      = "calloutFailed"
	StatusCallbackTimedOut   = "callbackTimedOut"
	StatusWaitingForCallback = "waitingForCallback"
)

// assignmentRequest is a v1.0 accessPackageAssignmentRequest, reduced to what
// the resume and the read touch.
type assignmentRequest struct {
	id        string
	created   time.Time
	state     string // accessPackageRequestState: submitted, delivering, denied, canceled, …
	status    string // the free-text status: WaitingForCallback, Delivering, Denied, …
	instances []*calloutInstance
	byID      map[string]*calloutInstance // by lower-cased id: Graph ids are case-insensitive
	// count is the number of instances per status, so that settle stays O(1)
	// when a load run piles many instances onto one request.
	count map[string]int
}

// calloutInstance is a customExtensionCalloutInstance. Its id is the
// customExtensionStageInstanceId of the callout and of the resume that
// answers it (an inference: Microsoft does not say so, see graph-facts §a).
type calloutInstance struct {
	id                string
	status            string
	detail            string
	customExtensionID string
}

func newAssignmentRequest(id string, created time.Time) *assignmentRequest {
	return &assignmentRequest{id: id, created: created,
		byID: make(map[string]*calloutInstance), count: make(map[string]int)}
}

func (a *assignmentRequest) add(instanceID, status string) {
	if a.byID[strings.ToLower(instanceID)] != nil {
		return
	}
	in := &calloutInstance{id: instanceID, status: status, customExtensionID: uuid.NewString()}
	a.instances = append(a.instances, in)
	a.byID[strings.ToLower(instanceID)] = in
	a.count[status]++
	a.settle()
}

// setStatus changes an instance's status; the caller settles the request.
func (a *assignmentRequest) setStatus(in *calloutInstance, status string) {
	a.count[in.status]--
	a.count[status]++
	in.status = status
}

// settle derives the request's state and status from its instances: a
// request waits while one of its callouts waits and moves on to delivering
// once they have all been answered. A denial or cancellation is final.
func (a *assignmentRequest) settle() {
	if a.state == "denied" || a.state == "canceled" {
		return
	}
	switch {
	case a.count[StatusWaitingForCallback] > 0:
		a.state, a.status = "submitted", "WaitingForCallback"
	case a.count[StatusCallbackReceived] > 0:
		a.state, a.status = "delivering", "Delivering"
	default:
		a.state, a.status = "submitted", "Accepted"
	}
}

// AddAssignmentRequest creates (or replaces) the assignment request id with a
// callout instance waiting for callback for each of waitingInstanceIDs.
func (s *Sim) AddAssignmentRequest(id string, waitingInstanceIDs ...string) {
	req := newAssignmentRequest(id, s.now())
	for _, iid := range waitingInstanceIDs {
		req.add(iid, StatusWaitingForCallback)
	}
	req.settle()
	s.mu.Lock()
	s.assign[strings.ToLower(id)] = req
	s.mu.Unlock()
}

// SetInstanceStatus sets the status of a callout instance (e.g.
// StatusCallbackTimedOut, to test a late resume); false when the request or
// the instance is unknown.
func (s *Sim) SetInstanceStatus(requestID, instanceID, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := s.assign[strings.ToLower(requestID)]
	if req == nil {
		return false
	}
	in := req.byID[strings.ToLower(instanceID)]
	if in == nil {
		return false
	}
	req.setStatus(in, status)
	req.settle()
	return true
}

// Instance returns the status of a callout instance; ok is false when the
// request or the instance is unknown.
func (s *Sim) Instance(requestID, instanceID string) (status string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := s.assign[strings.ToLower(requestID)]
	if req == nil {
		return "", false
	}
	in := req.byID[strings.ToLower(instanceID)]
	if in == nil {
		return "", false
	}
	return in.status, true
}

// roleRequest is a beta governanceRoleAssignmentRequest, kept as the JSON
// object a PATCH merges into.
type roleRequest struct {
	props map[string]json.RawMessage
}

func newRoleRequest(id string) *roleRequest {
	return &roleRequest{props: map[string]json.RawMessage{
		"id":              json.RawMessage(mustJSON(id)),
		"type":            json.RawMessage(`"AdminAdd"`),
		"assignmentState": json.RawMessage(`"Eligible"`),
		"reason":          json.RawMessage(`null`),
		"status":          json.RawMessage(`{"status":"InProgress","subStatus":"PendingAdminDecision","statusDetails":[]}`),
	}}
}

// AddRoleRequest creates (or replaces) the role assignment request id of
// privilegedAccessID (e.g. "azureResources"), with default properties.
func (s *Sim) AddRoleRequest(privilegedAccessID, id string) {
	rr := newRoleRequest(id)
	s.mu.Lock()
	s.roles[strings.ToLower(privilegedAccessID+"/"+id)] = rr
	s.mu.Unlock()
}

// autoCreateLocked creates what a call names when Config.AutoCreate is set.
// It runs when the call arrives, before faults and the rate limit, so that
// the instance a throttled or faulted resume named exists and waits when the
// worker reads the request to settle an unknown outcome.
func (s *Sim) autoCreateLocked(in *incoming) {
	switch in.rt.op {
	case OpRead, OpResume:
		req := s.assign[in.rt.key]
		if req == nil {
			req = newAssignmentRequest(in.rt.requestID, in.call.Time)
			req.settle()
			s.assign[in.rt.key] = req
		}
		if iid := in.resume.instanceID; in.rt.op == OpResume && iid != "" && req.byID[strings.ToLower(iid)] == nil {
			req.add(iid, StatusWaitingForCallback)
		}
	case OpRoleRequestUpdate:
		if s.roles[in.rt.key] == nil {
			_, id, _ := strings.Cut(in.rt.requestID, "/")
			s.roles[in.rt.key] = newRoleRequest(id)
		}
	}
}

// process runs the normal processing of a Graph call: the rate limit (writes,
// when limit is set), the validation found while decoding, and the effect.
func (s *Sim) process(in *incoming, limit bool) reply {
	if in.rt.op == OpRead {
		if in.bad != nil {
			return *in.bad
		}
		s.mu.Lock()
		v, ok := s.viewLocked(in.rt.key)
		s.mu.Unlock()
		if !ok {
			return notFound(in.rt.requestID)
		}
		return reply{status: http.StatusOK, body: v.render(in.sel)}
	}
	var warn string
	if limit {
		s.mu.Lock()
		rp, throttled := s.throttleLocked()
		// Every write answer past 80 % of the limit carries the warning,
		// the 429 too; the bucket's level is this call's, taken or refused.
		warn = s.limitWarningLocked()
		s.mu.Unlock()
		if throttled {
			rp.limitPercentage = warn
			return rp
		}
	}
	rp := s.processWrite(in)
	rp.limitPercentage = warn
	return rp
}

// processWrite is process for a write call the rate limit let through.
func (s *Sim) processWrite(in *incoming) reply {
	s.mu.Lock()
	if in.bad != nil {
		s.mu.Unlock()
		return *in.bad
	}
	if in.rt.op == OpResume {
		rp := s.resumeLocked(in)
		s.mu.Unlock()
		return rp
	}
	props, ok := s.patchLocked(in)
	s.mu.Unlock()
	switch {
	case !ok:
		return notFound(in.rt.requestID)
	case s.cfg.RoleUpdateNoContent:
		return reply{status: http.StatusNoContent}
	}
	return reply{status: http.StatusOK, body: mustJSON(props)}
}

func notFound(requestID string) reply {
	return errReply(http.StatusNotFound, "ResourceNotFound",
		fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", requestID))
}

// resumeLocked applies a resume. Graph documents the resume only for a
// request in WaitingForCallback and documents none of its errors; a resume
// for an instance that no longer waits is refused here with 400
// InvalidRequestState, a code chosen by the simulator (Graph's real code is
// undocumented: a client must branch on the status, then reconcile by
// reading). Such a resume of an already answered instance is a double apply.
func (s *Sim) resumeLocked(in *incoming) reply {
	req := s.assign[in.rt.key]
	if req == nil {
		return notFound(in.rt.requestID)
	}
	inst := req.byID[strings.ToLower(in.resume.instanceID)]
	if inst == nil {
		return errReply(http.StatusBadRequest, "BadRequest",
			fmt.Sprintf("The customExtensionStageInstanceId '%s' is not a callout of request '%s'.", in.resume.instanceID, req.id))
	}
	if inst.status != StatusWaitingForCallback {
		if inst.status == StatusCallbackReceived {
			s.stats.DoubleApplies++
		}
		return errReply(http.StatusBadRequest, "InvalidRequestState",
			fmt.Sprintf("The request '%s' is not in WaitingForCallback state for callout '%s': its status is %s.", req.id, inst.id, inst.status))
	}
	req.setStatus(inst, StatusCallbackReceived)
	if in.resume.detail != "" {
		inst.detail = in.resume.detail
	}
	switch in.resume.state {
	case "denied":
		req.state, req.status = "denied", "Denied"
	case "canceled":
		req.state, req.status = "canceled", "Canceled"
	default:
		req.settle()
	}
	s.recordAppliedLocked(OpResume, in.rt.key)
	return reply{status: http.StatusNoContent}
}

// patchLocked merges a PATCH body into the role request and returns a copy of
// the result; false when the role request is unknown. Every applied PATCH
// counts: several updates of one role request are all legitimate.
func (s *Sim) patchLocked(in *incoming) (map[string]json.RawMessage, bool) {
	rr := s.roles[in.rt.key]
	if rr == nil {
		return nil, false
	}
	for k, v := range in.patch {
		rr.props[k] = v
	}
	_, id, _ := strings.Cut(in.rt.requestID, "/")
	rr.props["id"] = json.RawMessage(mustJSON(id)) // the key is the path's, whatever the body says
	s.recordAppliedLocked(OpRoleRequestUpdate, in.rt.key)
	out := make(map[string]json.RawMessage, len(rr.props))
	for k, v := range rr.props { // values are never mutated in place: a shallow copy is safe to encode unlocked
		out[k] = v
	}
	return out, true
}

// requestView is a copy of an assignment request, rendered without the lock.
type requestView struct {
	id, state, status string
	created           time.Time
	instances         []instanceView
}

type instanceView struct {
	ID                    string  `json:"id"`
	Status                string  `json:"status"`
	Detail                *string `json:"detail"`
	CustomExtensionID     string  `json:"customExtensionId"`
	ExternalCorrelationID *string `json:"externalCorrelationId"`
}

func (s *Sim) viewLocked(key string) (requestView, bool) {
	req := s.assign[key]
	if req == nil {
		return requestView{}, false
	}
	v := requestView{id: req.id, state: req.state, status: req.status, created: req.created,
		instances: make([]instanceView, len(req.instances))}
	for i, in := range req.instances {
		v.instances[i] = instanceView{ID: in.id, Status: in.status, CustomExtensionID: in.customExtensionID}
		if in.detail != "" {
			d := in.detail
			v.instances[i].Detail = &d
		}
	}
	return v, true
}

// render returns the GET body: every property, or those of $select (plus id,
// which Graph always returns).
func (v requestView) render(sel []string) []byte {
	all := map[string]any{
		"id":                              v.id,
		"requestType":                     "userAdd",
		"state":                           v.state,
		"status":                          v.status,
		"createdDateTime":                 v.created.UTC().Format(time.RFC3339),
		"completedDateTime":               nil,
		"justification":                   nil,
		"schedule":                        nil,
		"answers":                         []any{},
		"customExtensionCalloutInstances": v.instances,
	}
	out := all
	context := "https://graph.microsoft.com/v1.0/$metadata#identityGovernance/entitlementManagement/assignmentRequests/$entity"
	if sel != nil {
		out = map[string]any{"id": v.id}
		for _, p := range sel {
			out[p] = all[p]
		}
		context = "https://graph.microsoft.com/v1.0/$metadata#identityGovernance/entitlementManagement/assignmentRequests(" +
			strings.Join(sel, ",") + ")/$entity"
	}
	out["@odata.context"] = context
	return mustJSON(out)
}

// mustJSON encodes values that cannot fail to encode (strings, maps of raw
// JSON that was decoded from valid JSON).
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("graphsim: encode %T: %v", v, err))
	}
	return b
}
