package command

// Type is the short type of a command (docs/SPEC.md §1). It doubles as the `type`
// label of metrics and as the Graph `operation` label.
type Type string

// The known command types, and Unknown for a message whose type could not be
// read or is not one of them.
const (
	TypeResume            Type = "resume"
	TypeRoleRequestUpdate Type = "role_request_update"
	TypeUnknown           Type = "unknown"
)

// CloudEvents types of the known commands.
const (
	CloudEventsResume            = "graphops.accessPackageAssignmentRequest.resume"
	CloudEventsRoleRequestUpdate = "graphops.governanceRoleAssignmentRequest.update"
)

// Types lists the known command types, in a stable order.
func Types() []Type { return []Type{TypeResume, TypeRoleRequestUpdate} }

// TypeOf maps a CloudEvents type to its short type; TypeUnknown when it is
// not one of docs/SPEC.md §1.
func TypeOf(ceType string) Type {
	switch ceType {
	case CloudEventsResume:
		return TypeResume
	case CloudEventsRoleRequestUpdate:
		return TypeRoleRequestUpdate
	}
	return TypeUnknown
}
