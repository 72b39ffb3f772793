package worker

import (
	"net/url"
	"strings"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/ledger"
)

// identityOf is the ledger identity of a command. A resume is keyed by its
// callout instance: two commands for one instance are the same decision
// (duplicate) or competing ones (conflict), whatever their ids; a redelivery
// of the same source+id lands on the same key. A role request update is keyed
// by source+id: several different updates of one role request are all
// applied.
func identityOf(c *command.Command) ledger.Identity {
	id := ledger.Identity{Source: c.Source, ID: c.ID, BodyHash: c.BodyHash,
		Request: ledger.RequestOf(string(c.Type), c.RequestID())}
	switch c.Type {
	case command.TypeResume:
		id.Key = ledger.KeyOf("callout", strings.ToLower(c.Resume.AssignmentRequestID), strings.ToLower(c.Resume.StageInstanceID))
	default:
		id.Key = ledger.KeyOf("cmd", c.Source, c.ID)
	}
	return id
}

// callOf describes the Graph call of a command, for dry runs and logs.
func callOf(c *command.Command) (method, path string) {
	switch c.Type {
	case command.TypeResume:
		return "POST", "/v1.0/identityGovernance/entitlementManagement/assignmentRequests/" +
			url.PathEscape(c.Resume.AssignmentRequestID) + "/resume"
	case command.TypeRoleRequestUpdate:
		return "PATCH", "/beta/privilegedAccess/" + url.PathEscape(c.RoleUpdate.PrivilegedAccessID) +
			"/roleAssignmentRequests/" + url.PathEscape(c.RoleUpdate.RequestID)
	}
	return "", ""
}
