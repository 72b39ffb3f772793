package command

import "strings"

// The role request update body (docs/SPEC.md §2,
// graph-openapi/beta-roleAssignmentRequest.yaml) is a PATCH of a
// governanceRoleAssignmentRequest: every property is optional and unknown
// ones pass (the cmdlet's AdditionalProperties), but the documented ones
// must have their documented type and, for enumerations, a documented value.

func (p *parser) roleBody(body *value) *Error {
	if e := p.enumMember(body, "data.body.type", "type",
		"AdminAdd", "UserAdd", "AdminUpdate", "AdminRemove", "UserRemove",
		"UserExtend", "AdminExtend", "UserRenew", "AdminRenew"); e != nil {
		return e
	}
	if e := p.enumMember(body, "data.body.assignmentState", "assignmentState", "Eligible", "Active"); e != nil {
		return e
	}
	if si := body.member("schedule"); si != nil {
		if si.kind != kindObject {
			return p.wrong("data.body.schedule", "must be a JSON object, not %s", si.kind)
		}
		if ti := si.member("type"); ti != nil && ti.kind != kindNull {
			s, ok := ti.str()
			if !ok {
				return p.wrong("data.body.schedule.type", "must be a string or null, not %s", ti.kind)
			}
			if !strings.EqualFold(s, "Once") {
				return p.wrong("data.body.schedule.type", "%s is not a schedule type Graph documents (Once)", quote(s))
			}
		}
		for _, name := range [...]string{"startDateTime", "endDateTime", "duration"} {
			if _, _, e := p.optionalString(si, "data.body.schedule", name); e != nil {
				return e
			}
		}
	}
	for _, name := range [...]string{"linkedEligibleRoleAssignmentId", "reason", "requestedDateTime",
		"resourceId", "roleDefinitionId", "subjectId"} {
		if _, _, e := p.optionalString(body, "data.body", name); e != nil {
			return e
		}
	}
	if ii := body.member("id"); ii != nil && ii.kind != kindString {
		return p.wrong("data.body.id", "must be a string, not %s", ii.kind)
	}
	return nil
}

// enumMember checks an optional, non-nullable string member against the
// values Graph documents, ignoring case.
func (p *parser) enumMember(obj *value, field, name string, values ...string) *Error {
	i := obj.member(name)
	if i == nil {
		return nil
	}
	s, ok := i.str()
	if !ok {
		return p.wrong(field, "must be a string, not %s", i.kind)
	}
	for _, v := range values {
		if strings.EqualFold(s, v) {
			return nil
		}
	}
	return p.wrong(field, "%s is not a value Graph documents (%s)", quote(s), strings.Join(values, ", "))
}
