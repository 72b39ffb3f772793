package command

import "strings"

// The resume body (docs/SPEC.md §2, graph-openapi/v1.0-resume.yaml): `type` names
// the custom extension stage, `data` is an
// accessPackageAssignmentRequestCallbackData.

const (
	stageTypePrefix = "microsoft.graph.accessPackageCustomExtensionStage."
	// connectionTest is the stage of Entra's connection test callout; it
	// has no waiting request to resume.
	connectionTest = "CustomExtensionConnectionTest"
)

// documentedStage returns the documented accessPackageCustomExtensionStage
// equal to s ignoring case ("" when none): Microsoft's own examples mix
// case. unknownFutureValue is Graph's evolvable-enum sentinel, not a stage.
func documentedStage(s string) string {
	for _, st := range [...]string{
		"assignmentRequestCreated",
		"assignmentRequestApproved",
		"assignmentRequestGranted",
		"assignmentRequestRemoved",
		"assignmentFourteenDaysBeforeExpiration",
		"assignmentOneDayBeforeExpiration",
	} {
		if strings.EqualFold(s, st) {
			return st
		}
	}
	return ""
}

const stageList = "assignmentRequestCreated, assignmentRequestApproved, assignmentRequestGranted, " +
	"assignmentRequestRemoved, assignmentFourteenDaysBeforeExpiration, assignmentOneDayBeforeExpiration"

func (p *parser) resumeBody(body *value) (*Resume, *Error) {
	// type
	ti := body.member("type")
	if ti == nil {
		return nil, p.wrong("data.body.type", "is missing; required: %s<stage>", stageTypePrefix)
	}
	typ, ok := ti.str()
	if !ok {
		return nil, p.wrong("data.body.type", "must be a string, not %s", ti.kind)
	}
	if containsFold(typ, connectionTest) {
		return nil, p.wrong("data.body.type", "%s is the connection test stage %s: Entra's connection test callout is never resumed", quote(typ), connectionTest)
	}
	if len(typ) <= len(stageTypePrefix) || !strings.EqualFold(typ[:len(stageTypePrefix)], stageTypePrefix) {
		return nil, p.wrong("data.body.type", "%s is not of the form %s<stage>", quote(typ), stageTypePrefix)
	}
	typeStage := typ[len(stageTypePrefix):]
	if documentedStage(typeStage) == "" {
		return nil, p.wrong("data.body.type", "%s names the stage %s, which Graph does not document (stages: %s)", quote(typ), quote(typeStage), stageList)
	}

	// data
	di := body.member("data")
	switch {
	case di == nil:
		return nil, p.wrong("data.body.data", "is missing; the callback data is required")
	case di.kind != kindObject:
		return nil, p.wrong("data.body.data", "must be a JSON object, not %s", di.kind)
	}
	if oi := di.member("@odata.type"); oi == nil {
		return nil, p.wrong("data.body.data.@odata.type", "is missing; Graph's customExtensionData is abstract and needs it (microsoft.graph.accessPackageAssignmentRequestCallbackData)")
	} else if s, ok := oi.str(); !ok {
		return nil, p.wrong("data.body.data.@odata.type", "must be a string, not %s", oi.kind)
	} else if s == "" {
		return nil, p.wrong("data.body.data.@odata.type", "must not be empty")
	}

	// stage
	si := di.member("stage")
	if si == nil {
		return nil, p.wrong("data.body.data.stage", "is missing; required: the stage of type (%s)", typeStage)
	}
	stage, ok := si.str()
	switch {
	case !ok:
		return nil, p.wrong("data.body.data.stage", "must be a string, not %s", si.kind)
	case containsFold(stage, connectionTest):
		return nil, p.wrong("data.body.data.stage", "%s is the connection test stage: Entra's connection test callout is never resumed", quote(stage))
	case documentedStage(stage) == "":
		return nil, p.wrong("data.body.data.stage", "%s is not a stage Graph documents (%s)", quote(stage), stageList)
	case !strings.EqualFold(stage, typeStage):
		return nil, p.wrong("data.body.data.stage", "%s differs from the stage of type %s", quote(stage), quote(typ))
	}

	instance, e := p.idMember(di, "data.body.data", "customExtensionStageInstanceId")
	if e != nil {
		return nil, e
	}

	// Whether a deny is allowed at assignmentRequestCreated is Graph's to
	// decide (docs/SPEC.md §2): Microsoft's documents disagree.
	state, set, e := p.optionalString(di, "data.body.data", "state")
	if e != nil {
		return nil, e
	}
	if set && !strings.EqualFold(state, "Denied") && !strings.EqualFold(state, "Canceled") {
		return nil, p.wrong("data.body.data.state", "%s is not a state Graph documents (Denied, Canceled)", quote(state))
	}
	if _, _, e := p.optionalString(di, "data.body.data", "customExtensionStageInstanceDetail"); e != nil {
		return nil, e
	}
	if _, _, e := p.optionalString(body, "data.body", "source"); e != nil {
		return nil, e
	}
	return &Resume{StageInstanceID: instance, Stage: stage, State: state}, nil
}

// optionalString reads the optional, nullable string member name of object
// obj, which is at objPath; set is false when it is absent or null.
func (p *parser) optionalString(obj *value, objPath, name string) (s string, set bool, e *Error) {
	i := obj.member(name)
	if i == nil || i.kind == kindNull {
		return "", false, nil
	}
	s, ok := i.str()
	if !ok {
		return "", false, p.wrong(joinPath(objPath, name), "must be a string or null, not %s", i.kind)
	}
	return s, true, nil
}

// containsFold reports whether s contains the ASCII string sub, ignoring
// case, without allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
