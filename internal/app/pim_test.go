package app

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/graphops/worker/internal/config"
)

func TestRoleRequestUpdatesWarnOnceAtStartUpWhenOn(t *testing.T) {
	cases := []struct {
		setting string
		lines   int
	}{{"on", 1}, {"off", 0}}
	for _, c := range cases {
		t.Run("GRAPH_ROLE_REQUEST_UPDATE="+c.setting, func(t *testing.T) {
			var buf bytes.Buffer
			warnRoleRequests(&config.Config{RoleRequestUpdate: c.setting}, slog.New(slog.NewJSONHandler(&buf, nil)))
			out := buf.String()
			if n := strings.Count(out, "\n"); n != c.lines {
				t.Fatalf("%d lines, want %d: %s", n, c.lines, out)
			}
			if c.lines == 1 && (!strings.Contains(out, `"level":"WARN"`) || !strings.Contains(out, "2026-10-28") ||
				!strings.Contains(out, "roleManagement/directory") || !strings.Contains(out, "Azure Resource Manager")) {
				t.Errorf("warning %s: want the removal date and both successors", out)
			}
		})
	}
}
