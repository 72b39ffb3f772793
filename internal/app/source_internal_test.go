package app

import "testing"

func TestCommandSubjectFollowsNATSSubjects(t *testing.T) {
	for _, tc := range []struct {
		subjects []string
		want     string
		err      bool
	}{
		{[]string{"graphops.commands.>"}, "graphops.commands.resume", false},
		{[]string{"acme.approvals.*", "other.>"}, "acme.approvals.resume", false},
		{[]string{"acme.resume-commands"}, "acme.resume-commands", false},
		{[]string{"acme.*.commands"}, "", true},
		{[]string{">"}, "", true},
		{nil, "", true},
	} {
		got, err := commandSubject(tc.subjects, "resume")
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("commandSubject(%q) = %q, %v; want %q, error %v", tc.subjects, got, err, tc.want, tc.err)
		}
	}
}
