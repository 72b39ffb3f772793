package graphsim

import (
	"bytes"
	"compress/gzip"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"

	"github.com/graphops/worker/internal/graphpath"
)

// route is what the path and method of a call name.
type route struct {
	op        string
	requestID string // as in the path: the assignment request id, or "pid/id"
	key       string // lower-cased requestID: Graph ids are case-insensitive
	allow     string // for a known path called with the wrong method: its method
	path      string
}

// parseRoute maps a call to its operation through graphpath.Parse: fixed
// segments match ignoring case, as Graph does; ids are path-unescaped and
// must be ids by the worker's own rule. Only the v1.0 resume and read and
// the beta PATCH exist: the worker must make no other call (not even the
// beta resume), so anything else is OpOther.
func parseRoute(method, escapedPath string) route {
	rt := route{op: OpOther, path: escapedPath}
	p := graphpath.Parse(escapedPath)
	switch p.Kind {
	case graphpath.KindResume:
		rt.op, rt.requestID = OpResume, p.AssignmentRequestID
	case graphpath.KindAssignmentRequest:
		rt.op, rt.requestID = OpRead, p.AssignmentRequestID
	case graphpath.KindRoleRequest:
		rt.op, rt.requestID = OpRoleRequestUpdate, p.PrivilegedAccessID+"/"+p.RoleRequestID
	default:
		return rt
	}
	if want := p.Kind.Method(); method != want {
		rt.op, rt.allow = OpOther, want
		return rt
	}
	rt.key = strings.ToLower(rt.requestID)
	return rt
}

// refusal is the answer to an OpOther call.
func (rt route) refusal() reply {
	if rt.allow != "" {
		rp := errReply(http.StatusMethodNotAllowed, "",
			fmt.Sprintf("The HTTP method is not allowed on '%s'; allowed: %s.", rt.path, rt.allow))
		rp.allow = rt.allow
		return rp
	}
	return errReply(http.StatusNotFound, "", fmt.Sprintf("Resource not found for the segment '%s'.", rt.path))
}

// incoming is a call as received, decoded before it enters the in-flight set.
type incoming struct {
	rt        route
	call      Call
	write     bool   // resume or PATCH: rate limited, counted in Stats.Status
	requestID string // Graph's request-id of the answer
	authFail  *reply
	bad       *reply // refusal found in the body or the query, answered after the rate limit
	resume    resumeInput
	patch     map[string]json.RawMessage
	sel       []string
}

// receive reads and decodes a call. It takes no lock.
func (s *Sim) receive(r *http.Request) *incoming {
	rt := parseRoute(r.Method, r.URL.EscapedPath())
	in := &incoming{
		rt:        rt,
		write:     rt.op == OpResume || rt.op == OpRoleRequestUpdate,
		requestID: uuid.NewString(),
		call: Call{
			Time:            s.now(),
			Method:          r.Method,
			Path:            r.URL.Path,
			RawQuery:        r.URL.RawQuery,
			ClientRequestID: r.Header.Get("client-request-id"),
			Authorization:   r.Header.Get("Authorization"),
			Operation:       rt.op,
			RequestID:       rt.requestID,
		},
	}
	raw, bad := readAll(r.Body, maxBody)
	in.call.Body = raw
	if rp := s.authenticate(in.call.Authorization); rp != nil {
		in.authFail = rp
		return in
	}
	if bad != nil {
		in.bad = bad
		return in
	}
	switch rt.op {
	case OpRead:
		in.sel, in.bad = parseSelect(r.URL.Query())
	case OpResume, OpRoleRequestUpdate:
		body, bad := decodeBody(r.Header, raw)
		if bad != nil {
			in.bad = bad
			return in
		}
		in.call.Body = body
		if rt.op == OpResume {
			in.resume, in.bad = decodeResume(body)
		} else {
			in.patch, in.bad = decodePatch(body)
		}
	}
	return in
}

// authenticate returns the 401 for a missing or refused bearer token, nil
// when the call may proceed.
func (s *Sim) authenticate(header string) *reply {
	scheme, token, _ := strings.Cut(header, " ")
	token = strings.TrimSpace(token)
	msg := ""
	switch {
	case !strings.EqualFold(scheme, "Bearer") || token == "":
		msg = "Access token is empty."
	case s.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.Token)) != 1:
		msg = "Access token validation failure. Invalid audience."
	default:
		return nil
	}
	rp := errReply(http.StatusUnauthorized, "InvalidAuthenticationToken", msg)
	rp.wwwAuth = true
	return &rp
}

// readAll reads at most limit bytes of body.
func readAll(body io.Reader, limit int64) ([]byte, *reply) {
	if body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		rp := errReply(http.StatusBadRequest, "", "The request body could not be read: "+err.Error())
		return b, &rp
	}
	if int64(len(b)) > limit {
		rp := errReply(http.StatusRequestEntityTooLarge, "", fmt.Sprintf("The request body exceeds %d bytes.", limit))
		return b, &rp
	}
	return b, nil
}

// decodeBody checks the Content-Type of a write and undoes its
// Content-Encoding: Graph SDKs gzip request bodies by default and resend them
// plain after a 415, so gzip is accepted and other encodings get 415.
func decodeBody(h http.Header, raw []byte) ([]byte, *reply) {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || !strings.EqualFold(mt, "application/json") {
		rp := errReply(http.StatusUnsupportedMediaType, "",
			fmt.Sprintf("Content-Type %q is not supported; use application/json.", h.Get("Content-Type")))
		return raw, &rp
	}
	switch enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding"))); enc {
	case "", "identity":
		return raw, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			rp := errReply(http.StatusBadRequest, "", "The gzip request body could not be decoded: "+err.Error())
			return raw, &rp
		}
		body, bad := readAll(zr, maxBody)
		if bad == nil {
			if err := zr.Close(); err != nil { // checksum
				rp := errReply(http.StatusBadRequest, "", "The gzip request body could not be decoded: "+err.Error())
				bad = &rp
			}
		}
		if bad != nil {
			return raw, bad
		}
		return body, nil
	default:
		rp := errReply(http.StatusUnsupportedMediaType, "", fmt.Sprintf("Content-Encoding %q is not supported.", enc))
		return raw, &rp
	}
}

// resumeInput is what the simulator uses of a resume body.
type resumeInput struct {
	instanceID string
	detail     string
	state      string // "", "denied" or "canceled"
}

// resumeBody is the resume action's parameters (graph-openapi/v1.0-resume.yaml).
type resumeBody struct {
	Source string `json:"source"`
	Type   string `json:"type"`
	Data   *struct {
		ODataType  *string `json:"@odata.type"`
		InstanceID *string `json:"customExtensionStageInstanceId"`
		Detail     *string `json:"customExtensionStageInstanceDetail"`
		Stage      *string `json:"stage"`
		State      *string `json:"state"`
	} `json:"data"`
}

// decodeResume parses a resume body. data is an abstract type, so it must
// name its @odata.type; the instance id is how Graph finds the callout.
// state may only be Denied or Canceled (any case, as Microsoft's own examples
// mix case). The stage and type are not checked against each other: Graph's
// rules there are undocumented and the worker validates them itself.
func decodeResume(body []byte) (resumeInput, *reply) {
	var b resumeBody
	if err := json.Unmarshal(body, &b); err != nil {
		rp := errReply(http.StatusBadRequest, "", "Invalid request body: "+err.Error())
		return resumeInput{}, &rp
	}
	bad := func(msg string) (resumeInput, *reply) {
		rp := errReply(http.StatusBadRequest, "", msg)
		return resumeInput{}, &rp
	}
	switch {
	case b.Data == nil:
		return bad("The parameter 'data' is required.")
	case b.Data.ODataType == nil || *b.Data.ODataType == "":
		return bad("The parameter 'data' must specify '@odata.type': customExtensionData is abstract.")
	case b.Data.InstanceID == nil || *b.Data.InstanceID == "":
		return bad("The property 'customExtensionStageInstanceId' is required.")
	}
	in := resumeInput{instanceID: *b.Data.InstanceID}
	if b.Data.Detail != nil {
		in.detail = *b.Data.Detail
	}
	if b.Data.State != nil && *b.Data.State != "" {
		in.state = strings.ToLower(*b.Data.State)
		if in.state != "denied" && in.state != "canceled" {
			return bad(fmt.Sprintf("The value '%s' of 'state' is not supported; supported values are Denied and Canceled.", *b.Data.State))
		}
	}
	return in, nil
}

// decodePatch parses a PATCH body: a JSON object whose top-level properties
// replace the stored ones.
func decodePatch(body []byte) (map[string]json.RawMessage, *reply) {
	var m map[string]json.RawMessage
	err := json.Unmarshal(body, &m)
	if err == nil && m == nil {
		err = fmt.Errorf("the body is not a JSON object")
	}
	if err != nil {
		rp := errReply(http.StatusBadRequest, "", "Invalid request body: "+err.Error())
		return nil, &rp
	}
	return m, nil
}

// selectable returns the canonical name of a v1.0
// accessPackageAssignmentRequest property that a $select may name, "" for
// any other (navigation properties are left out: they need $expand).
func selectable(name string) string {
	for _, p := range [...]string{"id", "requestType", "state", "status", "createdDateTime",
		"completedDateTime", "justification", "schedule", "answers", "customExtensionCalloutInstances"} {
		if strings.EqualFold(p, name) {
			return p
		}
	}
	return ""
}

// parseSelect returns the canonical names of a $select, nil when there is
// none. An unknown property is a 400, as Graph answers, so that a typo in the
// worker's $select fails its tests instead of reading nothing.
func parseSelect(q url.Values) ([]string, *reply) {
	raw := q.Get("$select")
	if raw == "" {
		return nil, nil
	}
	var out []string
	for _, name := range strings.Split(raw, ",") {
		name = strings.TrimSpace(name)
		found := selectable(name)
		if found == "" {
			rp := errReply(http.StatusBadRequest, "",
				fmt.Sprintf("Could not find a property named '%s' on type 'microsoft.graph.accessPackageAssignmentRequest'.", name))
			return nil, &rp
		}
		out = append(out, found)
	}
	return out, nil
}
