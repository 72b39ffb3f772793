package graphops_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/graphops/worker/internal/graphops"
)

func TestGraphErrorsAreParsed(t *testing.T) {
	future := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	big := `{"error":{"code":"BadRequest","message":"` + strings.Repeat("x", 20000) + `"}}`
	tests := []struct {
		name    string
		status  int
		body    string
		headers []string
		check   func(t *testing.T, e *graphops.Error, sentCRID string)
	}{
		{
			name:   "innerError gives request-id, client-request-id and an offset-less date read as UTC",
			status: 404,
			body: `{"error":{"code":"ResourceNotFound","message":"Request not found.","innerError":{` +
				`"date":"2023-07-07T11:13:19","request-id":"inner-rid","client-request-id":"inner-crid"}}}`,
			headers: []string{"request-id", "header-rid"},
			check: func(t *testing.T, e *graphops.Error, _ string) {
				want := time.Date(2023, 7, 7, 11, 13, 19, 0, time.UTC)
				if e.Code != "ResourceNotFound" || e.Message != "Request not found." || e.GraphRequestID != "inner-rid" ||
					e.ClientRequestID != "inner-crid" || !e.Date.Equal(want) || e.Date.Location() != time.UTC {
					t.Errorf("got %+v", e)
				}
			},
		},
		{
			name:   "the OData spelling innererror is read too, with an RFC 3339 date",
			status: 400,
			body:   `{"error":{"code":"BadRequest","message":"m","innererror":{"date":"2023-07-07T13:13:19+02:00","request-id":"lc-rid"}}}`,
			check: func(t *testing.T, e *graphops.Error, sentCRID string) {
				if e.Code != "BadRequest" || e.GraphRequestID != "lc-rid" || e.ClientRequestID != sentCRID ||
					!e.Date.Equal(time.Date(2023, 7, 7, 11, 13, 19, 0, time.UTC)) {
					t.Errorf("got %+v", e)
				}
			},
		},
		{
			name:   "nested inner error codes are collected outermost first",
			status: 400,
			body: `{"error":{"code":"BadRequest","message":"m","innerError":{"code":"invalidRequest",` +
				`"innererror":{"code":"stageMismatch","innerError":{"code":"deepest"}}}}}`,
			check: func(t *testing.T, e *graphops.Error, _ string) {
				if want := []string{"invalidRequest", "stageMismatch", "deepest"}; !reflect.DeepEqual(e.InnerCodes, want) {
					t.Errorf("InnerCodes = %q, want %q", e.InnerCodes, want)
				}
			},
		},
		{
			name:    "without innerError the request-id header and the sent client-request-id are used",
			status:  403,
			body:    `{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges."}}`,
			headers: []string{"request-id", "header-rid"},
			check: func(t *testing.T, e *graphops.Error, sentCRID string) {
				if e.GraphRequestID != "header-rid" || e.ClientRequestID != sentCRID || !e.Date.IsZero() || e.InnerCodes != nil {
					t.Errorf("got %+v", e)
				}
			},
		},
		{
			name:    "an HTML page from a proxy keeps the status and leaves the code empty",
			status:  502,
			body:    "<html><body>Bad gateway</body></html>",
			headers: []string{"Content-Type", "text/html"},
			check: func(t *testing.T, e *graphops.Error, _ string) {
				if e.Status != 502 || e.Code != "" || e.Message != "" || string(e.Body) != "<html><body>Bad gateway</body></html>" {
					t.Errorf("got %+v", e)
				}
			},
		},
		{
			name:   "an old OData message object is read",
			status: 400,
			body:   `{"error":{"code":"x","message":{"lang":"en-US","value":"old style"}}}`,
			check: func(t *testing.T, e *graphops.Error, _ string) {
				if e.Message != "old style" {
					t.Errorf("Message = %q", e.Message)
				}
			},
		},
		{
			name:   "a large body is kept only up to 8 KiB",
			status: 400,
			body:   big,
			check: func(t *testing.T, e *graphops.Error, _ string) {
				if len(e.Body) != 8<<10 || !bytes.Equal(e.Body, []byte(big[:8<<10])) || e.Code != "BadRequest" {
					t.Errorf("kept %d bytes, code %q", len(e.Body), e.Code)
				}
			},
		},
		{
			name: "Retry-After in seconds", status: 429, headers: []string{"Retry-After", "7"},
			body: `{"error":{"code":"TooManyRequests","message":"slow down"}}`,
			check: func(t *testing.T, e *graphops.Error, _ string) {
				if !e.HasRetryAfter || e.RetryAfter != 7*time.Second {
					t.Errorf("RetryAfter = %s, %v", e.RetryAfter, e.HasRetryAfter)
				}
			},
		},
		{
			name: "Retry-After as an HTTP date is counted from the response", status: 503,
			headers: []string{"Retry-After", future.Format(http.TimeFormat)},
			check: func(t *testing.T, e *graphops.Error, _ string) {
				if !e.HasRetryAfter || e.RetryAfter <= 58*time.Minute || e.RetryAfter > time.Hour {
					t.Errorf("RetryAfter = %s, %v; want just under an hour", e.RetryAfter, e.HasRetryAfter)
				}
			},
		},
		{
			name: "a garbage Retry-After is ignored", status: 503, headers: []string{"Retry-After", "soon"},
			check: func(t *testing.T, e *graphops.Error, _ string) {
				if e.HasRetryAfter || e.RetryAfter != 0 {
					t.Errorf("RetryAfter = %s, %v", e.RetryAfter, e.HasRetryAfter)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, answer(tt.status, tt.body, tt.headers...))
			_, err := e.client.Resume(context.Background(), resumeID, []byte(`{}`), nil)
			var ge *graphops.Error
			if !errors.As(err, &ge) {
				t.Fatalf("err = %#v, want *graphops.Error", err)
			}
			if ge.Status != tt.status || ge.Operation != graphops.OpResume || ge.Method != http.MethodPost {
				t.Errorf("status/op/method = %d %s %s", ge.Status, ge.Operation, ge.Method)
			}
			tt.check(t, ge, e.rec.all()[0].Header.Get("client-request-id"))
		})
	}
}

func TestErrorMessagesReadWell(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{
			name: "a Graph error names operation, status, code, message and both ids",
			err: &graphops.Error{Operation: graphops.OpResume, Method: "POST", Status: 404, Code: "ResourceNotFound",
				Message: "Not found.", GraphRequestID: "rid", ClientRequestID: "crid"},
			want: "graph: resume: 404 ResourceNotFound: Not found. (request-id rid, client-request-id crid)",
		},
		{
			name: "a bodiless error falls back to the status text",
			err:  &graphops.Error{Operation: graphops.OpRoleRequestUpdate, Method: "PATCH", Status: 502, ClientRequestID: "crid"},
			want: "graph: role_request_update: 502 Bad Gateway (client-request-id crid)",
		},
		{
			name: "the reconciliation read says so",
			err:  &graphops.Error{Operation: graphops.OpResume, Method: "GET", Status: 404, Code: "NotFound"},
			want: "graph: resume read: 404 NotFound",
		},
		{
			name: "a transport error says whether the request went out",
			err:  &graphops.TransportError{Operation: graphops.OpResume, Method: "POST", ClientRequestID: "crid", Sent: true, Err: errors.New("EOF")},
			want: "graph: resume: no response (request sent, client-request-id crid): EOF",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q\n want %q", got, tt.want)
			}
		})
	}
}

// A long message is cut to whole runes: the text goes into logs and dead
// letters' headers, which must stay valid UTF-8.
func TestALongMessageIsCutBetweenRunes(t *testing.T) {
	e := &graphops.Error{Operation: graphops.OpResume, Status: 400, Code: "BadRequest",
		Message: strings.Repeat("x", 1023) + "é" + strings.Repeat("y", 10)}
	got := e.Error()
	if !utf8.ValidString(got) {
		t.Errorf("Error() is not valid UTF-8: ...%q", got[len(got)-20:])
	}
	if !strings.Contains(got, strings.Repeat("x", 1023)+"…") {
		t.Errorf("Error() = ...%q, want the message cut before the two-byte rune, marked", got[len(got)-20:])
	}
}
