// Package sbemu starts sbemu.py, our model of Azure Service Bus over AMQP 1.0,
// for tests that drive the real azservicebus SDK (a connection string with
// UseDevelopmentEmulator=true speaks plain AMQP to any host:port). It is a
// model written from Microsoft's documented behaviour, not Azure: see the
// doc string of sbemu.py for what it models and what it simplifies.
//
// The stand-in runs under Debian's python3 with python3-qpid-proton:
//
//	apt-get update && apt-get install -y python3-qpid-proton
package sbemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// Python is the interpreter that has Debian's proton module; the pyenv
// python3 first on PATH on the developer machines cannot import it.
const Python = "/usr/bin/python3"

// InstallHint says how to get what the stand-in needs.
const InstallHint = "apt-get update && apt-get install -y python3-qpid-proton"

const startWait = 15 * time.Second

// Entity configures a queue or subscription. Zero values take Service Bus's
// defaults (LockDuration 60 s, MaxDeliveryCount 10), no sessions and no
// duplicate detection.
type Entity struct {
	LockDuration             time.Duration
	MaxDeliveryCount         int
	RequiresSession          bool
	DuplicateDetectionWindow time.Duration // queues and topics only; 0 disables
}

// Emulator is one running stand-in.
type Emulator struct {
	t        testing.TB
	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	stderr   *lockedBuffer
	amqpPort int
	admin    string
	// created replays the entities after Restart.
	created []map[string]any
}

// Start runs the stand-in on free loopback ports and stops it when the test
// ends. It skips the test under -short (it starts a process), and fails it
// with an install hint if python3-qpid-proton is missing.
func Start(t testing.TB) *Emulator {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: the Service Bus stand-in (not under -short)")
	}
	e := &Emulator{t: t}
	if err := e.start(0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Kill()
		if t.Failed() {
			t.Logf("sbemu stderr:\n%s", e.stderr.String())
		}
	})
	return e
}

func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "sbemu.py")
}

func (e *Emulator) start(port, adminPort int) error {
	if _, err := os.Stat(Python); err != nil {
		return fmt.Errorf("sbemu: %s not found; install: %s", Python, InstallHint)
	}
	args := []string{script(), "--port", fmt.Sprint(port), "--admin-port", fmt.Sprint(adminPort)}
	if os.Getenv("SBEMU_VERBOSE") != "" {
		args = append(args, "--verbose")
	}
	cmd := exec.Command(Python, args...)
	// The stand-in must not outlive a test binary that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("sbemu: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sbemu: start %s: %w", Python, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()

	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "READY ") {
				ready <- line
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case line := <-ready:
		var a, h int
		if _, err := fmt.Sscanf(line, "READY amqp=%d admin=%d", &a, &h); err != nil {
			_ = cmd.Process.Kill()
			return fmt.Errorf("sbemu: bad ready line %q", line)
		}
		e.mu.Lock()
		e.cmd, e.done, e.stderr, e.amqpPort = cmd, done, stderr, a
		e.admin = fmt.Sprintf("http://127.0.0.1:%d", h)
		e.mu.Unlock()
		return nil
	case <-done:
		if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 3 {
			return fmt.Errorf("sbemu: python3-qpid-proton is missing; install: %s", InstallHint)
		}
		return fmt.Errorf("sbemu: exited before it was ready: %s", strings.TrimSpace(stderr.String()))
	case <-time.After(startWait):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("sbemu: not ready within %s: %s", startWait, strings.TrimSpace(stderr.String()))
	}
}

// ConnectionString reaches the stand-in with the SDK's emulator mode.
func (e *Emulator) ConnectionString() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return fmt.Sprintf("Endpoint=sb://127.0.0.1:%d;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;", e.amqpPort)
}

// Addr is the AMQP listener's host:port.
func (e *Emulator) Addr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return fmt.Sprintf("127.0.0.1:%d", e.amqpPort)
}

// Kill stops the stand-in at once (SIGKILL); its state is lost.
func (e *Emulator) Kill() {
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart kills the stand-in and starts a new one on the same ports with
// the same entities, empty: a broker that went away and came back.
func (e *Emulator) Restart() {
	e.t.Helper()
	e.Kill()
	e.mu.Lock()
	port := e.amqpPort
	u, _ := url.Parse(e.admin)
	created := e.created
	e.mu.Unlock()
	var adminPort int
	_, _ = fmt.Sscanf(u.Port(), "%d", &adminPort)
	var err error
	for range 20 { // the old sockets may linger for a moment
		if err = e.start(port, adminPort); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	for _, spec := range created {
		e.post(spec)
	}
}

// CreateQueue creates a queue (and its dead-letter queue).
func (e *Emulator) CreateQueue(name string, o Entity) {
	e.t.Helper()
	e.create("queue", name, "", o)
}

// CreateTopic creates a topic; only its duplicate detection window is used.
func (e *Emulator) CreateTopic(name string, o Entity) {
	e.t.Helper()
	e.create("topic", name, "", o)
}

// CreateSubscription creates a subscription of topic; its path is
// "<topic>/Subscriptions/<name>".
func (e *Emulator) CreateSubscription(topic, name string, o Entity) {
	e.t.Helper()
	e.create("subscription", name, topic, o)
}

func (e *Emulator) create(kind, name, topic string, o Entity) {
	e.t.Helper()
	spec := map[string]any{
		"kind": kind, "name": name, "topic": topic,
		"lockDurationMs":       o.LockDuration.Milliseconds(),
		"maxDeliveryCount":     o.MaxDeliveryCount,
		"requiresSession":      o.RequiresSession,
		"duplicateDetectionMs": o.DuplicateDetectionWindow.Milliseconds(),
	}
	e.post(spec)
	e.mu.Lock()
	e.created = append(e.created, spec)
	e.mu.Unlock()
}

func (e *Emulator) post(spec map[string]any) {
	e.t.Helper()
	b, _ := json.Marshal(spec)
	var out map[string]any
	if err := e.call(http.MethodPost, "/entities", b, &out); err != nil {
		e.t.Fatalf("sbemu: create %v: %v", spec, err)
	}
}

// Message is a message as the stand-in holds it.
type Message struct {
	SequenceNumber int64  `json:"sequenceNumber"`
	MessageID      string `json:"messageId"`
	SessionID      string `json:"sessionId"`
	// State is "active", "scheduled", "deferred" or "locked".
	State string `json:"state"`
	// DeliveryCount is what the SDK reports (and peek shows): 1 + the
	// deliveries that failed (abandoned, lock expired).
	DeliveryCount          int            `json:"deliveryCount"`
	LockedUntilMs          *int64         `json:"lockedUntilMs"`
	EnqueuedTimeMs         int64          `json:"enqueuedTimeMs"`
	ScheduledEnqueueTimeMs *int64         `json:"scheduledEnqueueTimeMs"`
	ContentType            string         `json:"contentType"`
	Subject                string         `json:"subject"`
	CorrelationID          string         `json:"correlationId"`
	ApplicationProperties  map[string]any `json:"applicationProperties"`
	DeadLetterReason       string         `json:"deadLetterReason"`
	DeadLetterDescription  string         `json:"deadLetterErrorDescription"`
	DeadLetterSource       string         `json:"deadLetterSource"`
	// Body is the first data section.
	Body []byte `json:"body"`
}

// LockedUntil is the lock expiry of a locked message, else zero.
func (m Message) LockedUntil() time.Time {
	if m.LockedUntilMs == nil {
		return time.Time{}
	}
	return time.UnixMilli(*m.LockedUntilMs)
}

// Prop is an application property as a string ("" if absent); binary and
// timestamp values come back in their JSON form.
func (m Message) Prop(name string) string {
	v, ok := m.ApplicationProperties[name]
	if !ok || v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	if mm, ok := v.(map[string]any); ok {
		if b, ok := mm["binary"].(string); ok {
			raw, _ := base64.StdEncoding.DecodeString(b)
			return string(raw)
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// SessionState is a session's lock and state as the stand-in holds them.
type SessionState struct {
	LockedUntilMs *int64 `json:"lockedUntilMs"`
	State         any    `json:"state"`
}

// State is an entity's contents: every message in sequence order.
type State struct {
	Entity   string                  `json:"entity"`
	Counts   map[string]int          `json:"counts"`
	Messages []Message               `json:"messages"`
	Sessions map[string]SessionState `json:"sessions"`
	// Operations counts the $management requests served so far, by
	// operation (e.g. "com.microsoft:update-disposition"), namespace-wide.
	Operations map[string]int `json:"operations"`
}

// InState returns the messages in state s.
func (s State) InState(state string) []Message {
	var out []Message
	for _, m := range s.Messages {
		if m.State == state {
			out = append(out, m)
		}
	}
	return out
}

// State returns the contents of an entity: a queue, "<topic>/Subscriptions/<sub>",
// or either followed by "/$DeadLetterQueue".
func (e *Emulator) State(entity string) State {
	e.t.Helper()
	st, err := e.StateErr(entity)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// StateErr is State for use outside the test goroutine.
func (e *Emulator) StateErr(entity string) (State, error) {
	var st State
	err := e.call(http.MethodGet, "/state?entity="+url.QueryEscape(entity), nil, &st)
	return st, err
}

// DeadLetters returns the dead-letter queue of an entity.
func (e *Emulator) DeadLetters(entity string) []Message {
	e.t.Helper()
	return e.State(entity + "/$DeadLetterQueue").Messages
}

func (e *Emulator) call(method, path string, body []byte, out any) error {
	e.mu.Lock()
	base := e.admin
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("sbemu: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("sbemu admin: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("sbemu admin: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sbemu admin %s %s: %s: %s", method, path, resp.Status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("sbemu admin: %w", err)
	}
	return nil
}

// lockedBuffer collects the stand-in's stderr for the test log.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	if b == nil {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Client is a client of the real SDK connected to the stand-in, closed when
// the test ends.
func (e *Emulator) Client(t testing.TB) *azservicebus.Client {
	t.Helper()
	cl, err := azservicebus.NewClientFromConnectionString(e.ConnectionString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = cl.Close(ctx)
	})
	return cl
}
