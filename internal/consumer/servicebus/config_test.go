package servicebus_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/graphops/worker/internal/consumer/servicebus"
)

func TestValidateFillsDefaultsAndCompletesTheNamespace(t *testing.T) {
	tests := []struct {
		name, namespace, want string
	}{
		{"a bare name gets the public cloud suffix", "contoso", "contoso.servicebus.windows.net"},
		{"a fully qualified name is kept", "contoso.servicebus.usgovcloudapi.net", "contoso.servicebus.usgovcloudapi.net"},
		{"an sb:// URL is reduced to its host", "sb://contoso.servicebus.windows.net/", "contoso.servicebus.windows.net"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := servicebus.Config{Namespace: tt.namespace, Queue: "q"}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			if c.Namespace != tt.want {
				t.Errorf("Namespace = %q, want %q", c.Namespace, tt.want)
			}
			if c.Concurrency != 16 || c.MaxDeliveryCount != 10 {
				t.Errorf("Concurrency %d MaxDeliveryCount %d, want 16 and 10", c.Concurrency, c.MaxDeliveryCount)
			}
		})
	}
}

func TestValidateNamesTheBadSetting(t *testing.T) {
	const cs = "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v"
	tests := []struct {
		name    string
		cfg     servicebus.Config
		setting string
	}{
		{"no namespace and no connection string", servicebus.Config{Queue: "q"}, "SERVICEBUS_NAMESPACE"},
		{"both a namespace and a connection string", servicebus.Config{Namespace: "ns", ConnectionString: cs, Queue: "q"}, "SERVICEBUS_CONNECTION_STRING"},
		{"a namespace with a space", servicebus.Config{Namespace: "my ns.example", Queue: "q"}, "SERVICEBUS_NAMESPACE"},
		{"no entity", servicebus.Config{Namespace: "ns"}, "SERVICEBUS_QUEUE"},
		{"a queue and a topic", servicebus.Config{Namespace: "ns", Queue: "q", Topic: "t", Subscription: "s"}, "SERVICEBUS_QUEUE"},
		{"a subscription without its topic", servicebus.Config{Namespace: "ns", Subscription: "s"}, "SERVICEBUS_TOPIC"},
		{"a topic without a subscription", servicebus.Config{Namespace: "ns", Topic: "t"}, "SERVICEBUS_SUBSCRIPTION"},
		{"a queue name with a newline", servicebus.Config{Namespace: "ns", Queue: "q\n"}, "SERVICEBUS_QUEUE"},
		{"a subscription name with a slash", servicebus.Config{Namespace: "ns", Topic: "t", Subscription: "a/b"}, "SERVICEBUS_SUBSCRIPTION"},
		{"a negative concurrency", servicebus.Config{Namespace: "ns", Queue: "q", Concurrency: -1}, "WORKER_CONCURRENCY"},
		{"a concurrency over the SDK's credit limit", servicebus.Config{Namespace: "ns", Queue: "q", Concurrency: 5001}, "WORKER_CONCURRENCY"},
		{"a negative max delivery count", servicebus.Config{Namespace: "ns", Queue: "q", MaxDeliveryCount: -1}, "MaxDeliveryCount"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var ce *servicebus.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Validate() = %v, want a *ConfigError", err)
			}
			if ce.Setting != tt.setting {
				t.Errorf("Setting = %q, want %q (error %q)", ce.Setting, tt.setting, err)
			}
		})
	}
}

func TestNewDeadLettersRefusesAConnectionStringItCannotParse(t *testing.T) {
	_, err := servicebus.NewDeadLetters(servicebus.Config{ConnectionString: "Endpoint=sb://x/;SharedAccessKey=secret-value", Queue: "q"})
	var ce *servicebus.ConfigError
	if !errors.As(err, &ce) || ce.Setting != "SERVICEBUS_CONNECTION_STRING" {
		t.Fatalf("err = %v, want a ConfigError naming SERVICEBUS_CONNECTION_STRING", err)
	}
	if strings.Contains(err.Error(), "secret-value") {
		t.Errorf("the error quotes the secret: %q", err)
	}
}
