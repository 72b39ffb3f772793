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
// refused unread (SPEC §2).
const MaxSize = 256 << 10

// Options change what Parse accepts. The zero value accepts every command
// of SPEC §1.
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

// RequestID is the serialization key of SPEC §3: the
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
	t, we := walk(raw, true)
	if we != nil {
		return nil, &Error{Reason: ReasonInvalidMessage, Field: strings.Clone(shortField(we.field)), Detail: printable(we.detail), Type: TypeUnknown}
	}
	if t.nodes[0].kind != kindObject {
		return nil, &Error{Reason: ReasonInvalidMessage, Type: TypeUnknown,
			Detail: fmt.Sprintf("the message is %s, not a JSON object; a command is a CloudEvent", t.nodes[0].kind)}
	}
	p := &parser{t: t, opts: opts}
	p.readInfo()
	cmd, e := p.parse()
	if e != nil {
		return nil, e
	}
	return cmd, nil
}

// parser validates the tree of one message.
type parser struct {
	t    *tree
	opts Options
	// What could be read, for errors: set by readInfo.
	typ        Type
	id, source string
}

const root int32 = 0

// readInfo reads what an error reports about the message, leniently: each
// value only when it is unambiguous and safe in a header.
func (p *parser) readInfo() {
	p.typ = TypeUnknown
	if s, ok := p.t.str(p.t.member(root, "type")); ok {
		p.typ = TypeOf(s)
	}
	if s, ok := p.t.str(p.t.member(root, "id")); ok && safeText(s) {
		p.id = s
	}
	if s, ok := p.t.str(p.t.member(root, "source")); ok && safeText(s) {
		p.source = s
	}
}

// requestID is the request id as far as it can be read, for errors.
func (p *parser) requestID() string {
	data := p.t.member(root, "data")
	get := func(name string) string {
		s, ok := p.t.str(p.t.member(data, name))
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

// fail makes the error. Its strings may be substrings of the message's
// text (see walk): they are copied, so that an error kept does not keep the
// whole message.
func (p *parser) fail(r Reason, field, detail string) *Error {
	return &Error{Reason: r, Field: strings.Clone(shortField(field)), Detail: printable(detail),
		Type: p.typ, ID: strings.Clone(p.id), Source: strings.Clone(p.source), RequestID: strings.Clone(p.requestID())}
}

func (p *parser) invalid(field, format string, args ...any) *Error {
	return p.fail(ReasonInvalidMessage, field, fmt.Sprintf(format, args...))
}

func (p *parser) wrong(field, format string, args ...any) *Error {
	return p.fail(ReasonValidationFailed, field, fmt.Sprintf(format, args...))
}

func (p *parser) parse() (*Command, *Error) {
	t := p.t
	if t.dupOther != "" {
		if t.dupOtherAttr {
			return nil, p.invalid(t.dupOther, "duplicate key: a CloudEvents attribute may appear only once")
		}
		return nil, p.invalid(t.dupOther, "duplicate key: each key may appear only once in an object")
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
	if t.member(root, "data_base64") != none {
		return nil, p.invalid("data_base64", "binary data (data_base64) is not accepted: a command carries data as a JSON object")
	}
	data := t.member(root, "data")
	switch {
	case data == none:
		return nil, p.invalid("data", "required attribute is missing")
	case t.nodes[data].kind != kindObject:
		return nil, p.invalid("data", "must be a JSON object, not %s", t.nodes[data].kind)
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
	if t.dupData != "" {
		return nil, p.wrong(t.dupData, "duplicate key: each key may appear only once in an object, "+
			"ignoring case (Graph could read the other value)")
	}

	var body int32
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
	cmd.Body = bytes.Clone(t.raw(body))
	cmd.BodyHash = t.bodyHash(body)
	if r := cmd.Resume; r != nil {
		detach(&cmd.ID, &cmd.Source, &r.AssignmentRequestID, &r.StageInstanceID, &r.Stage, &r.State)
	} else {
		detach(&cmd.ID, &cmd.Source, &cmd.RoleUpdate.PrivilegedAccessID, &cmd.RoleUpdate.RequestID)
	}
	return cmd, nil
}

// detach copies the strings that point into the message's text (see walk)
// into one allocation of their own: a Command kept, or one of its ids kept
// in a map, does not keep the whole message alive.
func detach(ss ...*string) {
	n := 0
	for _, s := range ss {
		n += len(*s)
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range ss {
		b.WriteString(*s)
	}
	all := b.String()
	for _, s := range ss {
		*s, all = all[:len(*s)], all[len(*s):]
	}
}

func (p *parser) specversion() *Error {
	i := p.t.member(root, "specversion")
	if i == none {
		return p.invalid("specversion", `required attribute is missing; a command is a CloudEvent with specversion "1.0"`)
	}
	s, ok := p.t.str(i)
	if !ok {
		return p.invalid("specversion", `must be the string "1.0", not %s`, p.t.nodes[i].kind)
	}
	if s != "1.0" {
		return p.invalid("specversion", `unsupported CloudEvents version %s; only "1.0" is accepted`, quote(s))
	}
	return nil
}

// requiredAttr reads a required, non-empty string attribute.
func (p *parser) requiredAttr(name string) (string, *Error) {
	i := p.t.member(root, name)
	if i == none {
		return "", p.invalid(name, "required attribute is missing")
	}
	s, ok := p.t.str(i)
	switch {
	case !ok:
		return "", p.invalid(name, "must be a string, not %s", p.t.nodes[i].kind)
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
	i := p.t.member(root, "datacontenttype")
	if i == none {
		return nil
	}
	s, ok := p.t.str(i)
	if !ok {
		return p.invalid("datacontenttype", "must be a string, not %s", p.t.nodes[i].kind)
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
	i := p.t.member(root, name)
	if i == none {
		return time.Time{}, nil
	}
	s, ok := p.t.str(i)
	if !ok {
		return time.Time{}, p.wrong(name, "must be an RFC 3339 timestamp string, not %s", p.t.nodes[i].kind)
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
// objPath (the error's field is built only on failure: this is the hot path).
func (p *parser) idMember(obj int32, objPath, name string) (string, *Error) {
	i := p.t.member(obj, name)
	if i == none {
		return "", p.wrong(joinPath(objPath, name), "is missing; an id is required")
	}
	s, ok := p.t.str(i)
	if !ok {
		return "", p.wrong(joinPath(objPath, name), "must be a string, not %s", p.t.nodes[i].kind)
	}
	if d := graphpath.Problem(s); d != "" {
		return "", p.wrong(joinPath(objPath, name), "%s", d)
	}
	return s, nil
}

// body returns data.body, which must be an object.
func (p *parser) body(data int32) (int32, *Error) {
	i := p.t.member(data, "body")
	switch {
	case i == none:
		return none, p.wrong("data.body", "is missing; the request body for Graph is required")
	case p.t.nodes[i].kind != kindObject:
		return none, p.wrong("data.body", "must be a JSON object, not %s", p.t.nodes[i].kind)
	}
	return i, nil
}

// dataMembers refuses members of data that the command type does not have:
// a misspelt "header" would otherwise silently drop the headers.
func (p *parser) dataMembers(data int32, typ Type) *Error {
	for c := p.t.nodes[data].first; c != none; c = p.t.nodes[c].next {
		switch k := p.t.nodes[c].key; k {
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
		return p.wrong(joinPath("data", p.t.nodes[c].key), "unknown property; the data of a %s command has %s", typ, known)
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
