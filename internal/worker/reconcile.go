package worker

import (
	"errors"
	"strings"
	"time"

	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/graphops"
)

// reconcile reads the assignment request to learn whether an earlier send
// of this resume took effect (docs/SPEC.md §3). A non-nil outcome settles the job;
// otherwise failed asks for another read, not before retryAfter (Graph's
// Retry-After, when it sent one), and false means sending is safe.
func (j *job) reconcile() (o *Outcome, retryAfter time.Duration, failed bool) {
	cmd := j.cmd
	ar, _, err := j.p.Graph.GetAssignmentRequest(j.p.stop, cmd.Resume.AssignmentRequestID)
	if err != nil {
		v := graphops.Classify(err)
		var ge *graphops.Error
		if errors.As(err, &ge) && v.Class == graphops.ClassPermanent {
			j.noteFailure(err)
			r := j.graphRejected("reading the request to reconcile an unknown outcome failed")
			return &r, 0, false
		}
		j.warn("reconcile read failed; will retry", "err", err)
		return nil, v.RetryAfter, true
	}
	inst, ok := ar.Instance(cmd.Resume.StageInstanceID)
	switch {
	case !ok || strings.EqualFold(inst.Status, graphops.StatusWaitingForCallback):
		// Not applied: Graph still waits for this callback (or does not
		// know the instance and will judge the send).
		j.info("reconciled", "verdict", "callout still waiting: sending", "callout_status", inst.Status)
		return nil, 0, false
	case strings.EqualFold(inst.Status, graphops.StatusCallbackTimedOut):
		j.info("reconciled", "verdict", "callout timed out", "callout_status", inst.Status)
		r := deadLetter(dlq.ReasonExpired, "callout instance "+inst.ID+" timed out (callbackTimedOut) before the resume took effect")
		return &r, 0, false
	default:
		j.info("reconciled", "verdict", "callout no longer waiting: recorded as applied", "callout_status", inst.Status)
		r := applied(0, "", true)
		return &r, 0, false
	}
}
