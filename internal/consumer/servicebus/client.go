package servicebus

import "github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

// NewClient opens a client of cfg's namespace (connection string or
// azidentity), for what the worker sends besides commands (outcome events).
// cfg need not name an entity.
func NewClient(cfg Config) (*azservicebus.Client, error) { return newClient(cfg) }
