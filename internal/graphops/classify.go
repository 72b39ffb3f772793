package graphops

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Class is what a retry loop should do with a failed call (docs/SPEC.md §3).
type Class int

const (
	// ClassPermanent: do not retry (dead-letter). 3xx, 400, 403, 404, 405,
	// 409, 410, 422 and every other 4xx not listed below; an id or header
	// refused before sending; an authentication failure the token service
	// itself refused; unknown errors.
	ClassPermanent Class = iota
	// ClassThrottled: 429, and 503 or 504 with Retry-After. Wait at least
	// Verdict.RetryAfter before the operation's next call.
	ClassThrottled
	// ClassRetryable: other 5xx, 408, transport errors (the per-call timeout
	// included), a token service that could not be reached or failed with
	// 408/429/5xx, an unreadable 2xx read. Retry with backoff.
	ClassRetryable
	// ClassUnauthorized: 401. Call InvalidateToken and retry once.
	ClassUnauthorized
)

func (c Class) String() string {
	switch c {
	case ClassPermanent:
		return "permanent"
	case ClassThrottled:
		return "throttled"
	case ClassRetryable:
		return "retryable"
	case ClassUnauthorized:
		return "unauthorized"
	}
	return "Class(" + strconv.Itoa(int(c)) + ")"
}

// Verdict is Classify's answer.
type Verdict struct {
	Class Class
	// RetryAfter is the wait Graph asked for (0 when none was given).
	RetryAfter time.Duration
	// MaybeApplied reports that Graph may have applied the request, so a
	// resume must be reconciled before it is sent again: any 5xx (docs/SPEC.md §3: "A
	// 503 without Retry-After counts as unknown"), or a transport failure
	// after the request was completely written. A 429, a 408, a 401 or a
	// failure to connect are not applied.
	MaybeApplied bool
}

// Classify maps an error returned by a Client method to a Verdict. A nil
// error has no meaningful verdict; it yields the zero Verdict.
func Classify(err error) Verdict {
	if err == nil {
		return Verdict{}
	}
	var (
		ge *Error
		te *TransportError
		ae *AuthError
	)
	switch {
	case errors.Is(err, ErrInvalidID), errors.Is(err, ErrInvalidHeader):
		return Verdict{Class: ClassPermanent}
	case errors.As(err, &ge):
		return classifyStatus(ge)
	case errors.As(err, &te):
		return Verdict{Class: ClassRetryable, MaybeApplied: te.Sent}
	case errors.As(err, &ae):
		if transientAuth(ae) {
			return Verdict{Class: ClassRetryable}
		}
		return Verdict{Class: ClassPermanent}
	case errors.Is(err, ErrBadResponse):
		return Verdict{Class: ClassRetryable}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// Not produced by this client (it wraps them in *TransportError);
		// without knowing whether a request went out, assume it may have.
		return Verdict{Class: ClassRetryable, MaybeApplied: true}
	}
	return Verdict{Class: ClassPermanent}
}

func classifyStatus(e *Error) Verdict {
	s := e.Status
	switch {
	case s == http.StatusUnauthorized:
		return Verdict{Class: ClassUnauthorized}
	case s == http.StatusTooManyRequests:
		return Verdict{Class: ClassThrottled, RetryAfter: e.RetryAfter}
	case s == http.StatusRequestTimeout:
		return Verdict{Class: ClassRetryable}
	case (s == http.StatusServiceUnavailable || s == http.StatusGatewayTimeout) && e.HasRetryAfter:
		return Verdict{Class: ClassThrottled, RetryAfter: e.RetryAfter, MaybeApplied: true}
	case s >= 500 && s <= 599:
		return Verdict{Class: ClassRetryable, MaybeApplied: true}
	}
	return Verdict{Class: ClassPermanent}
}

// transientAuth reports whether a token failure is worth retrying: the token
// service could not be reached (azidentity then gives no response), timed
// out, or answered 408, 429 or 5xx. A refusal (400 invalid_client, a bad
// secret, a missing federated token file) is permanent.
func transientAuth(e *AuthError) bool {
	if errors.Is(e.Err, context.DeadlineExceeded) || errors.Is(e.Err, context.Canceled) {
		return true
	}
	var af *azidentity.AuthenticationFailedError
	if !errors.As(e.Err, &af) {
		return false
	}
	if af.RawResponse == nil {
		return true
	}
	s := af.RawResponse.StatusCode
	return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500
}

// RoleRequestRetired begins the description of a dead-lettered role request
// update that Graph refused because the API is gone (SaysRetired).
const RoleRequestRetired = "the PIM iteration 2 API (/beta/privilegedAccess) is retired: Microsoft deprecated it and " +
	"stopped returning data on 2026-10-28; send approval decisions for Microsoft Entra roles to PIM through " +
	"Graph's roleManagement/directory, and for Azure resources to the Azure Resource Manager PIM API, not through " +
	"this worker (README: \"Role requests after 2026-10-28\"); replaying this dead letter will fail the same way"

// SaysRetired reports whether err is Graph refusing a call because the API
// no longer exists: 410 Gone, or a 400 or 404 whose code or message says the
// API is deprecated, retired or removed, or that Graph's router no longer
// knows the privilegedAccess segment. A 404 for an unknown request id does
// not say so. Microsoft has not documented the exact answer; these are the
// forms Graph uses for removed APIs.
func SaysRetired(err error) bool {
	var ge *Error
	if !errors.As(err, &ge) {
		return false
	}
	switch ge.Status {
	case http.StatusGone:
		return true
	case http.StatusBadRequest, http.StatusNotFound:
	default:
		return false
	}
	text := strings.ToLower(ge.Code + " " + ge.Message)
	for _, word := range []string{"deprecat", "retire", "no longer", "removed", "segment 'privilegedaccess'"} {
		if strings.Contains(text, word) {
			return true
		}
	}
	return false
}

// Throttling is what Graph's identity and access throttling says on an
// answer (https://learn.microsoft.com/graph/throttling-limits, "Additional
// headers"). Other services send none of it: the zero Throttling.
type Throttling struct {
	// LimitUsage is x-ms-throttle-limit-percentage: the share of its limit
	// the application has spent. Graph sends it only past 0.8 ("returned
	// only when the application consumed more than 0.8 of its limit"), from
	// 0.8 to 1.8; 0 when absent or unreadable. A value written as a
	// percentage (over 10, e.g. "85") is read as one.
	LimitUsage float64
	// Scope is x-ms-throttle-scope of a throttled answer, for logs:
	// <Scope>/<Limit>/<ApplicationId>/<TenantId|UserId|ResourceId>, e.g.
	// Tenant_Application/Write/….
	Scope string
	// Information is x-ms-throttle-information of a throttled answer, for
	// logs: the reason, e.g. WriteLimitExceeded.
	Information string
}

// throttlingOf reads the throttling headers of an answer.
func throttlingOf(h http.Header) Throttling {
	t := Throttling{Scope: h.Get("x-ms-throttle-scope"), Information: h.Get("x-ms-throttle-information")}
	if v := h.Get("x-ms-throttle-limit-percentage"); v != "" {
		u, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "%")), 64)
		if err == nil && u > 0 && !math.IsInf(u, 0) {
			if u > 10 {
				u /= 100
			}
			t.LimitUsage = u
		}
	}
	return t
}
