package servicebus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// Prefixes of CloudEvents attributes in the application properties of a
// binary-mode message (CloudEvents AMQP binding 1.0: "cloudEvents:", or
// "cloudEvents_" for brokers that refuse a colon).
var cePrefixes = []string{"cloudEvents:", "cloudEvents_"}

// eventOf returns the command as a structured CloudEvent (SPEC §2). A
// message whose content type is application/cloudevents…, or that carries
// no specversion property, is structured already: its body is the event.
// Otherwise it is in binary mode and the event is built from the
// attribute properties, the content type as datacontenttype, and the body
// as data when it is a JSON object. A body that is not leaves data out, so
// that the command is dead-lettered as invalid; the dead letter is the
// original message itself, body and properties unchanged.
func eventOf(rm *azservicebus.ReceivedMessage, body []byte) []byte {
	ct := ""
	if rm.ContentType != nil {
		ct = strings.ToLower(strings.TrimSpace(*rm.ContentType))
	}
	if strings.HasPrefix(ct, "application/cloudevents") {
		return body
	}
	attrs := ceAttributes(rm.ApplicationProperties)
	if _, ok := attrs["specversion"]; !ok {
		return body
	}
	if _, ok := attrs["datacontenttype"]; !ok && rm.ContentType != nil && *rm.ContentType != "" {
		attrs["datacontenttype"] = *rm.ContentType
	}
	if isJSONObject(body) {
		attrs["data"] = json.RawMessage(body)
	}
	var event bytes.Buffer
	enc := json.NewEncoder(&event)
	enc.SetEscapeHTML(false) // keep "<", ">" and "&" as the producer wrote them
	if err := enc.Encode(attrs); err != nil {
		// Only a NaN or infinite number property gets here.
		return body
	}
	return bytes.TrimSuffix(event.Bytes(), []byte("\n"))
}

// ceAttributes collects the attributes of the CloudEvents prefixes, named
// in lower case (attribute names are lower case by the CloudEvents rules).
// Where both prefixes give an attribute, "cloudEvents:" wins; data and
// data_base64 are not attributes and are ignored.
func ceAttributes(props map[string]any) map[string]any {
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	// Sorted, so that the winner among names differing in case only is
	// always the same.
	sort.Strings(keys)
	attrs := map[string]any{}
	for i := len(cePrefixes) - 1; i >= 0; i-- {
		prefix := cePrefixes[i]
		for _, k := range keys {
			if len(k) <= len(prefix) || !strings.EqualFold(k[:len(prefix)], prefix) {
				continue
			}
			name := strings.ToLower(k[len(prefix):])
			if name == "data" || name == "data_base64" {
				continue
			}
			attrs[name] = ceValue(props[k])
		}
	}
	return attrs
}

// ceValue maps an AMQP property value to its JSON event form (CloudEvents
// JSON format): a timestamp as an RFC 3339 string, bytes as base64 (what
// encoding/json does with []byte), numbers and booleans as they are.
func ceValue(v any) any {
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

func isJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}
