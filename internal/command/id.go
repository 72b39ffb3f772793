package command

import "github.com/graphops/worker/internal/graphpath"

// ValidateID returns an *Error (validation_failed, naming field) unless v is
// a single safe URL path segment: graphpath.Problem's allow-list, the one
// the Graph client and the simulator apply too.
func ValidateID(field, v string) error {
	if d := graphpath.Problem(v); d != "" {
		return &Error{Reason: ReasonValidationFailed, Field: field, Detail: d, Type: TypeUnknown}
	}
	return nil
}

// validID reports whether ValidateID accepts v.
func validID(v string) bool { return graphpath.Problem(v) == "" }
