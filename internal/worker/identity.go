package worker

import (
	"strings"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/graphpath"
	"github.com/graphops/worker/internal/ledger"
)

// identityOf is the ledger identity of a command. A resume is keyed by its
// callout instance: two commands for one instance are the same decision
// (duplicate) or competing ones (conflict), whatever their ids; a redelivery
// of the same source+id lands on the same key (and the same source+id at
// another key is found by the ledger's index: ledger.Begin). A role request update is keyed
// by source+id: several different updates of one role request are all
// applied.
func identityOf(c *command.Command) ledger.Identity {
	id := ledger.Identity{Source: c.Source, ID: c.ID, BodyHash: c.BodyHash,
		Request: requestOf(c), RequestID: c.RequestID()}
	switch c.Type {
	case command.TypeResume:
		id.Key = ledger.KeyOf("callout", strings.ToLower(c.Resume.AssignmentRequestID), strings.ToLower(c.Resume.StageInstanceID))
	default:
		id.Key = ledger.KeyOf("cmd", c.Source, c.ID)
	}
	return id
}

// requestOf is the request a command acts on: the key of the in-process
// gate and of the ledger's serialization.
func requestOf(c *command.Command) string {
	return ledger.RequestOf(string(c.Type), c.RequestID())
}

// callOf describes the Graph call of a command, for dry runs and logs: the
// path graphpath builds, relative to Graph's root. A parsed command's ids
// always pass graphpath's check (Parse applies the same one); a command that
// fails it gets an empty path rather than a made-up one.
func callOf(c *command.Command) (method, path string) {
	switch c.Type {
	case command.TypeResume:
		path, _ = graphpath.Resume(c.Resume.AssignmentRequestID)
		return graphpath.KindResume.Method(), path
	case command.TypeRoleRequestUpdate:
		path, _ = graphpath.RoleRequest(c.RoleUpdate.PrivilegedAccessID, c.RoleUpdate.RequestID)
		return graphpath.KindRoleRequest.Method(), path
	}
	return "", ""
}
