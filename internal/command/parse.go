package command

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode"

	"github.com/graphops/worker/internal/graphpath"
)

// MaxSize is the largest message Parse reads, in bytes; larger bodies are
// refused unread (docs/SPEC.md §2).
const MaxSize = 256 << 10

// Options change what Parse accepts. The zero value accepts every command
// of docs/SPEC.md §1.
type Options struct {
	// RoleRequestUpdateDisabled refuses role request updates as
	// validation_failed on "type" (GRAPH_ROLE_REQUEST_UPDATE=off).
	RoleRequestUpdateDisabled bool
}

// Command is a parsed, validated command.
type Command struct {
	ID, Source string
	Type       Type
	Time       time.Time // zero when absent
	Deadline   time.Time // zero when absent (extension attribute "deadline")
	// Headers are the extra Graph request headers of data.headers, named in
	// the canonical spelling of the allow-list ("x-ms-throttle-priority",
	// "Prefer", "ConsistencyLevel"); nil when there are none.
	Headers map[string]string
	// Body is data.body byte for byte as it appeared in the message, to be
	// sent to Graph unchanged. It is a copy: it does not alias the input.
	Body json.RawMessage
	// BodyHash is the hex SHA-256 of Canonical(Body): equal iff the bodies
	// are JSON-equal (numbers compare by their text, see Canonical).
	BodyHash   string
	Resume     *Resume     // set iff Type == TypeResume
	RoleUpdate *RoleUpdate // set iff Type == TypeRoleRequestUpdate
}

// Resume holds the values of a resume command that the worker keys on.
type Resume struct {
	AssignmentRequestID string // data.accessPackageAssignmentRequestId
	StageInstanceID     string // data.body.data.customExtensionStageInstanceId
	Stage               string // data.body.data.stage as sent
	State               string // data.body.data.state as sent ("" when absent or null)
}

// RoleUpdate holds the ids of a role request update.
type RoleUpdate struct {
	PrivilegedAccessID string // data.privilegedAccessId
	RequestID          string // data.governanceRoleAssignmentRequestId
}

// RequestID is the serialization key of docs/SPEC.md §3: the
// accessPackageAssignmentRequestId of a resume,
// "<privilegedAccessId>/<governanceRoleAssignmentRequestId>" of a role
// request update ('/' cannot occur in an id). "" for a Command not made by
// Parse that lacks them.
func (c *Command) RequestID() string {
	switch {
	case c.Type == TypeResume && c.Resume != nil:
		return c.Resume.AssignmentRequestID
	case c.Type == TypeRoleRequestUpdate && c.RoleUpdate != nil:
		return c.RoleUpdate.PrivilegedAccessID + "/" + c.RoleUpdate.RequestID
	}
	return ""
}

// CalloutID identifies the callout instance a resume answers:
// "<accessPackageAssignmentRequestId>/<customExtensionStageInstanceId>";
// "" for other types.
func (c *Command) CalloutID() string {
	if c.Type != TypeResume || c.Resume == nil {
		return ""
	}
	return c.Resume.AssignmentRequestID + "/" + c.Resume.StageInstanceID
}

// Parse reads raw as a command. The error is always an *Error.
//
// Checks run in a fixed order and the first failure is returned: size,
// JSON syntax, CloudEvents attributes (duplicates, specversion, id, source,
// type, datacontenttype, data_base64, data) — all invalid_message —, then
// time, deadline, a disabled type, duplicate keys inside data, the ids of
// data, data.body, data.headers and unknown members of data — all
// validation_failed.
func Parse(raw []byte, opts Options) (*Command, error) {
	if len(raw) > MaxSize {
		return nil, &Error{Reason: ReasonInvalidMessage, Type: TypeUnknown,
			Detail: fmt.Sprintf("the message is %d bytes, over the %d-byte limit; refused unread", len(raw), MaxSize)}
	}
	d, we := walk(raw, true)
	if we != nil {
		return nil, &Error{Reason: ReasonInvalidMessage, Field: shortField(we.field), Detail: printable(we.detail), Type: TypeUnknown}
	}
	if d.root.kind != kindObject {
		return nil, &Error{Reason: ReasonInvalidMessage, Type: TypeUnknown,
			Detail: fmt.Sprintf("the message is %s, not a JSON object; a command is a CloudEvent", d.root.kind)}
	}
	p := &parser{d: d, root: d.root, opts: opts}
	p.readInfo()
	cmd, e := p.parse()
	if e != nil {
		return nil, e
	}
	return cmd, nil
}

// parser validates the document of one message.
type parser struct {
	d    *document
	root *value // d.root, an object
	opts Options
	// What could be read, for errors: set by readInfo.
	typ        Type
	id, source string
}

// readInfo reads what an error reports about the message, leniently: each
// value only when it is unambiguous and safe in a header.
func (p *parser) readInfo() {
	p.typ = TypeUnknown
	if s, ok := p.root.member("type").str(); ok {
		p.typ = TypeOf(s)
	}
	if s, ok := p.root.member("id").str(); ok && safeText(s) {
		p.id = s
	}
	if s, ok := p.root.member("source").str(); ok && safeText(s) {
		p.source = s
	}
}

// requestID is the request id as far as it can be read, for errors.
func (p *parser) requestID() string {
	data := p.root.member("data")
	get := func(name string) string {
		s, ok := data.member(name).str()
		if !ok || !validID(s) {
			return ""
		}
		return s
	}
	switch p.typ {
	case TypeResume:
		return get("accessPackageAssignmentRequestId")
	case TypeRoleRequestUpdate:
		pid, rid := get("privilegedAccessId"), get("governanceRoleAssignmentRequestId")
		if pid != "" && rid != "" {
			return pid + "/" + rid
		}
	}
	return ""
}

// fail makes the error.
func (p *parser) fail(r Reason, field, detail string) *Error {
	return &Error{Reason: r, Field: shortField(field), Detail: printable(detail),
		Type: p.typ, ID: p.id, Source: p.source, RequestID: p.requestID()}
}

func (p *parser) invalid(field, format string, args ...any) *Error {
	return p.fail(ReasonInvalidMessage, field, fmt.Sprintf(format, args...))
}

func (p *parser) wrong(field, format string, args ...any) *Error {
	return p.fail(ReasonValidationFailed, field, fmt.Sprintf(format, args...))
}

func (p *parser) parse() (*Command, *Error) {
	d := p.d
	if d.dupOther != "" {
		if d.dupOtherAttr {
			return nil, p.invalid(d.dupOther, "duplicate key: a CloudEvents attribute may appear only once")
		}
		return nil, p.invalid(d.dupOther, "duplicate key: each key may appear only once in an object")
	}
	if e := p.specversion(); e != nil {
		return nil, e
	}
	cmd := &Command{}
	var e *Error
	if cmd.ID, e = p.requiredAttr("id"); e != nil {
		return nil, e
	}
	if cmd.Source, e = p.requiredAttr("source"); e != nil {
		return nil, e
	}
	ceType, e := p.requiredAttr("type")
	if e != nil {
		return nil, e
	}
	if cmd.Type = TypeOf(ceType); cmd.Type == TypeUnknown {
		return nil, p.invalid("type", "unknown command type %s; known types: %s, %s",
			quote(ceType), CloudEventsResume, CloudEventsRoleRequestUpdate)
	}
	if e := p.dataContentType(); e != nil {
		return nil, e
	}
	if p.root.member("data_base64") != nil {
		return nil, p.invalid("data_base64", "binary data (data_base64) is not accepted: a command carries data as a JSON object")
	}
	data := p.root.member("data")
	switch {
	case data == nil:
		return nil, p.invalid("data", "required attribute is missing")
	case data.kind != kindObject:
		return nil, p.invalid("data", "must be a JSON object, not %s", data.kind)
	}

	if cmd.Time, e = p.timeAttr("time"); e != nil {
		return nil, e
	}
	if cmd.Deadline, e = p.timeAttr("deadline"); e != nil {
		return nil, e
	}
	if cmd.Type == TypeRoleRequestUpdate && p.opts.RoleRequestUpdateDisabled {
		return nil, p.wrong("type", "the role request update operation is switched off (GRAPH_ROLE_REQUEST_UPDATE=off)")
	}
	if d.dupData != "" {
		return nil, p.wrong(d.dupData, "duplicate key: each key may appear only once in an object, "+
			"ignoring case (Graph could read the other value)")
	}

	var body *value
	switch cmd.Type {
	case TypeResume:
		reqID, e := p.idMember(data, "data", "accessPackageAssignmentRequestId")
		if e != nil {
			return nil, e
		}
		if body, e = p.body(data); e != nil {
			return nil, e
		}
		if cmd.Resume, e = p.resumeBody(body); e != nil {
			return nil, e
		}
		cmd.Resume.AssignmentRequestID = reqID
	case TypeRoleRequestUpdate:
		pid, e := p.idMember(data, "data", "privilegedAccessId")
		if e != nil {
			return nil, e
		}
		rid, e := p.idMember(data, "data", "governanceRoleAssignmentRequestId")
		if e != nil {
			return nil, e
		}
		if body, e = p.body(data); e != nil {
			return nil, e
		}
		if e = p.roleBody(body); e != nil {
			return nil, e
		}
		cmd.RoleUpdate = &RoleUpdate{PrivilegedAccessID: pid, RequestID: rid}
	}
	if cmd.Headers, e = p.headers(data); e != nil {
		return nil, e
	}
	if e := p.dataMembers(data, cmd.Type); e != nil {
		return nil, e
	}
	cmd.Body = bytes.Clone(body.raw)
	cmd.BodyHash = bodyHash(body)
	return cmd, nil
}

func (p *parser) specversion() *Error {
	i := p.root.member("specversion")
	if i == nil {
		return p.invalid("specversion", `required attribute is missing; a command is a CloudEvent with specversion "1.0"`)
	}
	s, ok := i.str()
	if !ok {
		return p.invalid("specversion", `must be the string "1.0", not %s`, i.kind)
	}
	if s != "1.0" {
		return p.invalid("specversion", `unsupported CloudEvents version %s; only "1.0" is accepted`, quote(s))
	}
	return nil
}

// requiredAttr reads a required, non-empty string attribute.
func (p *parser) requiredAttr(name string) (string, *Error) {
	i := p.root.member(name)
	if i == nil {
		return "", p.invalid(name, "required attribute is missing")
	}
	s, ok := i.str()
	switch {
	case !ok:
		return "", p.invalid(name, "must be a string, not %s", i.kind)
	case s == "":
		return "", p.invalid(name, "must not be empty")
	case !safeText(s):
		return "", p.invalid(name, "contains a control character")
	}
	return s, nil
}

// dataContentType accepts an absent datacontenttype or a JSON media type:
// application/json or any */*+json, parameters allowed, charset UTF-8 if
// given.
func (p *parser) dataContentType() *Error {
	i := p.root.member("datacontenttype")
	if i == nil {
		return nil
	}
	s, ok := i.str()
	if !ok {
		return p.invalid("datacontenttype", "must be a string, not %s", i.kind)
	}
	mt, params, err := mime.ParseMediaType(s)
	if err != nil {
		return p.invalid("datacontenttype", "%s is not a media type: %v", quote(s), err)
	}
	typ, sub, _ := strings.Cut(mt, "/")
	if !(mt == "application/json" || (typ != "" && len(sub) > len("+json") && strings.HasSuffix(sub, "+json"))) {
		return p.invalid("datacontenttype", "%s is not a JSON media type (application/json or */*+json)", quote(s))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return p.invalid("datacontenttype", "charset %s is not supported; JSON is UTF-8", quote(cs))
	}
	return nil
}

// timeAttr reads an optional RFC 3339 attribute; the zero time when absent.
func (p *parser) timeAttr(name string) (time.Time, *Error) {
	i := p.root.member(name)
	if i == nil {
		return time.Time{}, nil
	}
	s, ok := i.str()
	if !ok {
		return time.Time{}, p.wrong(name, "must be an RFC 3339 timestamp string, not %s", i.kind)
	}
	// RFC 3339 allows a lower-case 't' and 'z'; Go's layout does not, and
	// they are the only letters a timestamp has.
	v, err := time.Parse(time.RFC3339, strings.ToUpper(s))
	if err != nil {
		return time.Time{}, p.wrong(name, "%s is not an RFC 3339 timestamp (such as 2026-11-23T10:00:00Z)", quote(s))
	}
	return v, nil
}

// idMember reads the required id member name of object obj, which is at
// objPath.
func (p *parser) idMember(obj *value, objPath, name string) (string, *Error) {
	i := obj.member(name)
	if i == nil {
		return "", p.wrong(joinPath(objPath, name), "is missing; an id is required")
	}
	s, ok := i.str()
	if !ok {
		return "", p.wrong(joinPath(objPath, name), "must be a string, not %s", i.kind)
	}
	if d := graphpath.Problem(s); d != "" {
		return "", p.wrong(joinPath(objPath, name), "%s", d)
	}
	return s, nil
}

// body returns data.body, which must be an object.
func (p *parser) body(data *value) (*value, *Error) {
	i := data.member("body")
	switch {
	case i == nil:
		return nil, p.wrong("data.body", "is missing; the request body for Graph is required")
	case i.kind != kindObject:
		return nil, p.wrong("data.body", "must be a JSON object, not %s", i.kind)
	}
	return i, nil
}

// dataMembers refuses members of data that the command type does not have:
// a misspelt "header" would otherwise silently drop the headers.
func (p *parser) dataMembers(data *value, typ Type) *Error {
	for _, m := range data.members {
		switch m.key {
		case "body", "headers":
			continue
		case "accessPackageAssignmentRequestId":
			if typ == TypeResume {
				continue
			}
		case "privilegedAccessId", "governanceRoleAssignmentRequestId":
			if typ == TypeRoleRequestUpdate {
				continue
			}
		}
		known := "accessPackageAssignmentRequestId, body, headers"
		if typ == TypeRoleRequestUpdate {
			known = "privilegedAccessId, governanceRoleAssignmentRequestId, body, headers"
		}
		return p.wrong(joinPath("data", m.key), "unknown property; the data of a %s command has %s", typ, known)
	}
	return nil
}

// safeText reports whether s holds no control characters (and so can go
// into a header or a log line as it is).
func safeText(s string) bool {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f {
		i++ // printable ASCII, the common case, needs no decoding
	}
	for _, r := range s[i:] {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
