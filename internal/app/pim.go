package app

import (
	"log/slog"

	"github.com/graphops/worker/internal/config"
)

// warnRoleRequests says once, at start-up, that role request updates are on
// although the API they call is retired (README: "Role requests after
// 2026-10-28"). They stay on by default: producers may still send them, and
// some tenants or clouds may still answer.
func warnRoleRequests(cfg *config.Config, log *slog.Logger) {
	if cfg.RoleRequestUpdate != "on" {
		return
	}
	log.Warn("GRAPH_ROLE_REQUEST_UPDATE is on, but the PIM iteration 2 API it calls (/beta/privilegedAccess) "+
		"is deprecated and stopped returning data on 2026-10-28: Graph's refusals are dead-lettered as graph_rejected. "+
		"Move approval decisions to PIM for Microsoft Entra roles (Graph roleManagement/directory) or for Azure "+
		"resources (Azure Resource Manager PIM API); set GRAPH_ROLE_REQUEST_UPDATE=off to refuse these commands "+
		"as validation_failed instead", "setting", "GRAPH_ROLE_REQUEST_UPDATE", "removal_date", "2026-10-28")
}
