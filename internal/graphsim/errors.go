package graphsim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// reply is the answer a call gets, computed before anything is written so
// that the call leaves the in-flight set before its caller can see the answer.
type reply struct {
	status int
	// code and message make the Graph error body when status >= 400 and body
	// is nil; an empty code takes defaultCode(status).
	code, message string
	body          []byte // a JSON success body
	retryAfter    string
	allow         string // Allow header of a 405
	wwwAuth       bool   // WWW-Authenticate header of a 401
	drop          bool   // close the connection without an answer

	// Graph's identity and access throttling headers (Config.LimitWarning).
	limitPercentage, throttleScope, throttleInfo string
}

func errReply(status int, code, message string) reply {
	return reply{status: status, code: code, message: message}
}

// graphDateLayout is innerError.date as Graph sends it: UTC without an offset
// (2023-10-09T05:15:46), which strict RFC 3339 parsers refuse; clients must
// cope with it, so the simulator sends it the same way.
const graphDateLayout = "2006-01-02T15:04:05"

// wwwAuthenticate is the challenge Graph sends with a 401.
const wwwAuthenticate = `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`

type odataError struct {
	Error mainError `json:"error"`
}

type mainError struct {
	Code       string     `json:"code"`
	Message    string     `json:"message"`
	InnerError innerError `json:"innerError"`
}

type innerError struct {
	Date            string `json:"date"`
	RequestID       string `json:"request-id"`
	ClientRequestID string `json:"client-request-id"`
}

// errorBody renders Graph's error body,
// {"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}.
func errorBody(code, message string, at time.Time, requestID, clientRequestID string) []byte {
	b, err := json.Marshal(odataError{Error: mainError{
		Code:    code,
		Message: message,
		InnerError: innerError{
			Date:            at.UTC().Format(graphDateLayout),
			RequestID:       requestID,
			ClientRequestID: clientRequestID,
		},
	}})
	if err != nil { // strings only: cannot happen
		panic(err)
	}
	return b
}

// defaultCode is the Graph error code used for a status when none is given.
// Graph's codes vary by workload (throttling alone is seen as TooManyRequests,
// activityLimitReached and UnknownError); these are the common ones, and a
// client must branch on the HTTP status first.
func defaultCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "BadRequest"
	case http.StatusUnauthorized:
		return "InvalidAuthenticationToken"
	case http.StatusForbidden:
		return "Authorization_RequestDenied"
	case http.StatusNotFound:
		return "ResourceNotFound"
	case http.StatusMethodNotAllowed:
		return "MethodNotAllowed"
	case http.StatusConflict:
		return "Conflict"
	case http.StatusGone:
		return "Gone"
	case http.StatusRequestEntityTooLarge:
		return "RequestEntityTooLarge"
	case http.StatusUnsupportedMediaType:
		return "UnsupportedMediaType"
	case http.StatusUnprocessableEntity:
		return "UnprocessableEntity"
	case http.StatusTooManyRequests:
		return "TooManyRequests"
	case http.StatusInternalServerError:
		return "InternalServerError"
	case http.StatusNotImplemented:
		return "NotImplemented"
	case http.StatusBadGateway:
		return "BadGateway"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case http.StatusGatewayTimeout:
		return "GatewayTimeout"
	}
	return "UnknownError"
}

// write sends rp. Every answer carries a fresh request-id and echoes the
// caller's client-request-id, as Graph does.
func (s *Sim) write(w http.ResponseWriter, in *incoming, rp reply) {
	h := w.Header()
	h.Set("request-id", in.requestID)
	if c := in.call.ClientRequestID; c != "" {
		h.Set("client-request-id", c)
	}
	if rp.retryAfter != "" {
		h.Set("Retry-After", rp.retryAfter)
	}
	for name, v := range map[string]string{headerLimitPercentage: rp.limitPercentage,
		headerThrottleScope: rp.throttleScope, headerThrottleInfo: rp.throttleInfo} {
		if v != "" {
			h.Set(name, v)
		}
	}
	if rp.allow != "" {
		h.Set("Allow", rp.allow)
	}
	if rp.wwwAuth {
		h.Set("WWW-Authenticate", wwwAuthenticate)
	}
	body := rp.body
	if rp.status >= 400 && body == nil {
		code := rp.code
		if code == "" {
			code = defaultCode(rp.status)
		}
		body = errorBody(code, rp.message, s.now(), in.requestID, in.call.ClientRequestID)
	}
	if len(body) > 0 {
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(rp.status)
	if len(body) > 0 {
		_, _ = w.Write(body) // the caller may be gone; nothing to do about it
	}
}
