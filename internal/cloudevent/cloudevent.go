// Package cloudevent reads a binary-mode CloudEvent (docs/SPEC.md §2) as the
// structured event the worker parses, for every broker binding at once:
// NATS (ce- headers, percent-decoded) and AMQP / Service Bus (cloudEvents:
// application properties). An adapter collects the attributes its binding
// carries beside the data (FromNATS, FromAMQP) and calls Structured: one
// reading of both bindings. It does not parse or validate commands.
package cloudevent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Structured returns the event as structured JSON. A message whose content
// type is application/cloudevents…, or whose attributes carry no
// specversion, is structured already: its body is the event. Otherwise it
// is in binary mode and the event is built from the attributes, the content
// type as datacontenttype (unless an attribute gives it), and the body as
// data when it is a JSON object. A body that is not leaves data out, so
// that the command is dead-lettered as invalid (with the original message
// kept byte for byte).
func Structured(body []byte, contentType string, attrs map[string]any) []byte {
	ct := strings.ToLower(strings.TrimSpace(contentType))
	if strings.HasPrefix(ct, "application/cloudevents") {
		return body
	}
	if _, ok := attrs["specversion"]; !ok {
		return body
	}
	event := make(map[string]any, len(attrs)+2)
	for k, v := range attrs {
		event[k] = v
	}
	if _, ok := event["datacontenttype"]; !ok && strings.TrimSpace(contentType) != "" {
		event["datacontenttype"] = contentType
	}
	if isJSONObject(body) {
		event["data"] = json.RawMessage(body)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // keep "<", ">" and "&" as the producer wrote them
	if err := enc.Encode(event); err != nil {
		// Only a NaN or infinite number attribute gets here.
		return body
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
}

// Prefixes of CloudEvents attributes in the application properties of a
// binary-mode AMQP message (CloudEvents AMQP binding 1.0: "cloudEvents:", or
// "cloudEvents_" for brokers that refuse a colon).
var amqpPrefixes = []string{"cloudEvents:", "cloudEvents_"}

// natsPrefix is the attribute header prefix of the NATS protocol binding.
const natsPrefix = "ce-"

// FromAMQP collects the attributes of a binary-mode AMQP message, named in
// lower case (attribute names are lower case by the CloudEvents rules).
// Where both prefixes give an attribute, "cloudEvents:" wins; data and
// data_base64 are not attributes and are ignored.
func FromAMQP(props map[string]any) map[string]any {
	attrs := map[string]any{}
	keys := sortedKeys(props)
	for i := len(amqpPrefixes) - 1; i >= 0; i-- {
		prefix := amqpPrefixes[i]
		for _, k := range keys {
			if name, ok := attribute(k, prefix); ok {
				attrs[name] = amqpValue(props[k])
			}
		}
	}
	return attrs
}

// FromNATS collects the attributes of a binary-mode NATS message from its
// ce- headers (values percent-decoded, NATS protocol binding) and its
// content type (the Content-Type header, which the binding maps to
// datacontenttype). Header names are matched ignoring case, as producers
// write headers the HTTP way too.
func FromNATS(h map[string][]string) (attrs map[string]any, contentType string) {
	attrs = map[string]any{}
	for _, k := range sortedKeys(h) {
		if len(h[k]) == 0 {
			continue
		}
		if strings.EqualFold(k, "Content-Type") {
			contentType = h[k][0]
			continue
		}
		if name, ok := attribute(k, natsPrefix); ok {
			attrs[name] = percentDecoded(h[k][0])
		}
	}
	return attrs, contentType
}

// attribute returns the attribute a property or header name carries under
// prefix (compared ignoring case).
func attribute(key, prefix string) (string, bool) {
	if len(key) <= len(prefix) || !strings.EqualFold(key[:len(prefix)], prefix) {
		return "", false
	}
	name := strings.ToLower(key[len(prefix):])
	if name == "data" || name == "data_base64" {
		return "", false
	}
	return name, true
}

// percentDecoded undoes the binding's percent-encoding; a value that is
// not valid percent-encoding (a bare "%") is taken as written.
func percentDecoded(v string) string {
	if !strings.Contains(v, "%") {
		return v
	}
	d, err := url.PathUnescape(v)
	if err != nil {
		return v
	}
	return d
}

// amqpValue maps an AMQP property value to its JSON event form (CloudEvents
// JSON format): a timestamp as an RFC 3339 string, bytes as base64 (what
// encoding/json does with []byte), numbers and booleans as they are.
func amqpValue(v any) any {
	switch v := v.(type) {
	case string, bool, []byte,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		return v
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case nil:
		return nil
	}
	return fmt.Sprint(v)
}

// sortedKeys: among names differing in case only, the winner is then
// always the same.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}
