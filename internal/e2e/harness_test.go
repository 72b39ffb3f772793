package e2e_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/graphops/worker/internal/graphsim"
	"github.com/graphops/worker/internal/ledger"
)

// The broker names and Graph token every test uses (docs/SPEC.md §4 defaults).
const (
	testToken    = "e2e-token-7d41"
	streamName   = "GRAPHOPS"
	consumerName = "graphops-worker"
	ledgerBucket = "GRAPHOPS_LEDGER"
	roleSource   = "urn:e2e:pim-review"
	resumeSource = "urn:e2e:sod-check"
	privAccessID = "azureResources"
)

// cluster is one test's world: a broker (an embedded JetStream, or the
// Service Bus stand-in with a Redis ledger) and the Graph simulator, on
// loopback, and the worker processes started against them.
type cluster struct {
	t    *testing.T
	b    broker
	sim  *graphsim.Sim
	base map[string]string // environment of every worker
}

// newCluster starts the broker of kind (jetStream or serviceBus) and the
// simulator (with simCfg and the test token). env adds to or overrides the
// workers' environment.
func newCluster(t *testing.T, kind string, simCfg graphsim.Config, env map[string]string) *cluster {
	t.Helper()
	skipWithoutWorker(t)
	return newClusterOn(t, newBroker(t, kind, env), simCfg, env)
}

// skipWithoutWorker skips a process-level test under -short.
func skipWithoutWorker(t *testing.T) {
	t.Helper()
	if workerBin == "" {
		t.Skip("process-level integration test: skipped under -short")
	}
}

// newClusterOn is newCluster on a broker the test made.
func newClusterOn(t *testing.T, b broker, simCfg graphsim.Config, env map[string]string) *cluster {
	t.Helper()
	skipWithoutWorker(t)
	simCfg.Token = testToken
	sim := graphsim.New(simCfg)
	simURL, err := sim.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	base := map[string]string{
		"GRAPH_BASE_URL": simURL, "GRAPH_TOKEN": testToken,
		"LOG_LEVEL": "debug", "GRAPH_TIMEOUT": "5s", "GRAPH_UNANSWERED_SETTLE": "5s", "SHUTDOWN_GRACE": "3s",
		"RETRY_INITIAL_INTERVAL": "50ms", "RETRY_MAX_INTERVAL": "200ms",
	}
	maps.Copy(base, b.env())
	maps.Copy(base, env)
	delete(base, sbLockEnv)
	return &cluster{t: t, b: b, sim: sim, base: base}
}

// proc is one worker process.
type proc struct {
	t      *testing.T
	name   string
	admin  string // host:port of /metrics, /readyz
	cmd    *exec.Cmd
	out    *logBuffer // stdout and stderr: the JSON logs
	exited chan struct{}
	state  *os.ProcessState // set before exited is closed
}

// start starts a worker and waits until it is ready.
func (c *cluster) start(name string, env map[string]string) *proc {
	c.t.Helper()
	p := c.spawn(name, env)
	p.waitReady(30 * time.Second)
	return p
}

// spawn starts `worker run` with the cluster's environment plus env, on a
// free admin port. The process is killed when the test ends, and its output
// is logged if the test failed.
func (c *cluster) spawn(name string, env map[string]string) *proc {
	t := c.t
	t.Helper()
	all := maps.Clone(c.base)
	maps.Copy(all, env)
	if all["ADMIN_ADDR"] == "" {
		all["ADMIN_ADDR"] = "127.0.0.1:" + strconv.Itoa(freePort(t))
	}
	dir := t.TempDir()
	p := &proc{t: t, name: name, admin: all["ADMIN_ADDR"], out: &logBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(workerBin, "run")
	p.cmd.Dir = dir
	// A clean environment: nothing of the test's own (a stray
	// GRAPHOPS_CRASH_AT, NATS_URL…) leaks into the worker.
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir(), "WORKER_DATA_DIR=" + dir}
	for k, v := range all {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: start worker: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
		}
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: still running 10s after SIGKILL", name)
		}
		if t.Failed() {
			t.Logf("--- %s (pid %d, %s) output ---\n%s", name, p.cmd.Process.Pid, p.describeExit(), p.out.tail(512<<10))
		}
	})
	return p
}

// waitReady polls /readyz until it answers 200.
func (p *proc) waitReady(within time.Duration) {
	p.t.Helper()
	client := &http.Client{Timeout: time.Second}
	eventually(p.t, within, p.name+": /readyz answers 200", func() (bool, string) {
		select {
		case <-p.exited:
			p.t.Fatalf("%s exited before it was ready (%s):\n%s", p.name, p.describeExit(), p.out.tail(16<<10))
		default:
		}
		resp, err := client.Get("http://" + p.admin + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// waitExit waits for the process to end and returns how it ended.
func (p *proc) waitExit(within time.Duration) *os.ProcessState {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.state
	case <-time.After(within):
		p.t.Fatalf("%s did not exit within %s", p.name, within)
		return nil
	}
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
}

func (p *proc) describeExit() string {
	select {
	case <-p.exited:
		return p.state.String()
	default:
		return "running"
	}
}

// killedBySIGKILL reports that the process died of SIGKILL, as the crash
// points do.
func killedBySIGKILL(st *os.ProcessState) bool {
	ws, ok := st.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// logEntries returns the JSON log records whose msg is msg.
func (p *proc) logEntries(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.out.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// metrics scrapes the process's /metrics.
func (p *proc) metrics() (samples, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseMetrics(string(b)), nil
}

// mustMetrics is metrics, failing the test on error.
func (p *proc) mustMetrics() samples {
	p.t.Helper()
	m, err := p.metrics()
	if err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
	return m
}

// publish publishes a command to the broker.
func (c *cluster) publish(data []byte) {
	c.t.Helper()
	c.b.publish(c.t, data)
}

// waitAcked waits until every message published has been delivered and
// settled.
func (c *cluster) waitAcked(within time.Duration) {
	c.t.Helper()
	eventually(c.t, within, "nothing waiting and nothing delivered unsettled", func() (bool, string) {
		waiting, inFlight, err := c.b.backlog()
		if err != nil {
			return false, err.Error()
		}
		return waiting == 0 && inFlight == 0, fmt.Sprintf("%d waiting, %d delivered unsettled", waiting, inFlight)
	})
}

// backlog is the broker's backlog, failing the test on error.
func (c *cluster) backlog() (waiting, inFlight int) {
	c.t.Helper()
	waiting, inFlight, err := c.b.backlog()
	if err != nil {
		c.t.Fatal(err)
	}
	return waiting, inFlight
}

// ledgerRecord reads the ledger record of key (see ledger.KeyOf), wherever
// the request record that holds it is.
func (c *cluster) ledgerRecord(key string) (ledger.Record, bool) {
	c.t.Helper()
	r, ok := c.ledgerRecords()[key]
	return r, ok
}

// ledgerRecords reads every command record of the ledger, by key.
func (c *cluster) ledgerRecords() map[string]ledger.Record {
	c.t.Helper()
	return c.b.ledgerRecords(c.t)
}

func (c *cluster) deadLetters() []deadLetter {
	c.t.Helper()
	return c.b.deadLetters(c.t)
}

// Ledger keys, as the worker derives them (internal/worker/identity.go): a
// resume by its callout instance, a role request update by source + id.
func calloutKey(arid, iid string) string {
	return ledger.KeyOf("callout", strings.ToLower(arid), strings.ToLower(iid))
}
func commandKey(source, id string) string { return ledger.KeyOf("cmd", source, id) }

// eventually polls check until it reports true, and fails the test with
// what and the last status when within has passed.
func eventually(t *testing.T, within time.Duration, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, status := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s; last seen: %s", what, within, status)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// logBuffer collects a process's output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail is the last n bytes, from a line start.
func (b *logBuffer) tail(n int) string {
	s := b.String()
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "[…]\n" + s
}

// Commands (docs/SPEC.md §2).

func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// resumeCmd is a resume at stage assignmentRequestCreated; deny adds
// "state":"Denied".
func resumeCmd(id, arid, iid, detail string, deny bool) []byte {
	state := ""
	if deny {
		state = `,"state":"Denied"`
	}
	return fmt.Appendf(nil, `{"specversion":"1.0","id":%s,"source":%s,"type":"graphops.accessPackageAssignmentRequest.resume",`+
		`"data":{"accessPackageAssignmentRequestId":%s,"body":{"source":"Contoso.SodCheckProcess",`+
		`"type":"microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated",`+
		`"data":{"@odata.type":"microsoft.graph.accessPackageAssignmentRequestCallbackData","stage":"assignmentRequestCreated",`+
		`"customExtensionStageInstanceId":%s,"customExtensionStageInstanceDetail":%s%s}}}}`,
		q(id), q(resumeSource), q(arid), q(iid), q(detail), state)
}

// resumeCmdReordered is resumeCmd(…, false) under another id, written with
// its members in another order and other white space: a JSON-equal body
// that is not byte-equal.
func resumeCmdReordered(id, arid, iid, detail string) []byte {
	return fmt.Appendf(nil, `{ "data": { "body": { "data": { "customExtensionStageInstanceDetail": %s, `+
		`"customExtensionStageInstanceId": %s, "stage": "assignmentRequestCreated", `+
		`"@odata.type": "microsoft.graph.accessPackageAssignmentRequestCallbackData" }, `+
		`"type": "microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated", "source": "Contoso.SodCheckProcess" }, `+
		`"accessPackageAssignmentRequestId": %s }, "type": "graphops.accessPackageAssignmentRequest.resume", `+
		`"source": %s, "id": %s, "specversion": "1.0" }`,
		q(detail), q(iid), q(arid), q(resumeSource), q(id))
}

// roleCmd is a role request update whose body's reason is the command id,
// so that the simulator's calls can be counted per command.
func roleCmd(id, rid string) []byte {
	return fmt.Appendf(nil, `{"specversion":"1.0","id":%s,"source":%s,"type":"graphops.governanceRoleAssignmentRequest.update",`+
		`"data":{"privilegedAccessId":%s,"governanceRoleAssignmentRequestId":%s,`+
		`"body":{"reason":%s,"schedule":{"type":"Once","endDateTime":"2027-12-31T00:00:00Z"}}}}`,
		q(id), q(roleSource), q(privAccessID), q(rid), q(id))
}

// The simulator's call log, read per command.

// resumePosts counts the resume POSTs per callout instance
// ("arid/iid", lower-cased) that named it in a complete body; a POST
// refused with 429 is not counted: Graph did not take it, and it must be
// sent again.
func resumePosts(calls []graphsim.Call) map[string]int {
	out := map[string]int{}
	for _, c := range calls {
		if c.Operation != graphsim.OpResume || c.Status == http.StatusTooManyRequests {
			continue
		}
		var b struct {
			Data struct {
				InstanceID string `json:"customExtensionStageInstanceId"`
			} `json:"data"`
		}
		if json.Unmarshal(c.Body, &b) == nil && b.Data.InstanceID != "" {
			out[strings.ToLower(c.RequestID+"/"+b.Data.InstanceID)]++
		}
	}
	return out
}

// patchesByReason returns the PATCH bodies per body reason (the command
// id), leaving out PATCHes refused with 429.
func patchesByReason(calls []graphsim.Call) map[string][][]byte {
	out := map[string][][]byte{}
	for _, c := range calls {
		if c.Operation != graphsim.OpRoleRequestUpdate || c.Status == http.StatusTooManyRequests {
			continue
		}
		var b struct {
			Reason string `json:"reason"`
		}
		if json.Unmarshal(c.Body, &b) == nil {
			out[b.Reason] = append(out[b.Reason], c.Body)
		}
	}
	return out
}

func callsOf(calls []graphsim.Call, op string) []graphsim.Call {
	var out []graphsim.Call
	for _, c := range calls {
		if c.Operation == op {
			out = append(out, c)
		}
	}
	return out
}

// Prometheus text format, the little the tests need.

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type samples []sample

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

func parseMetrics(text string) samples {
	var out samples
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		s := sample{name: line[:sp], labels: map[string]string{}, value: v}
		if i := strings.IndexByte(s.name, '{'); i >= 0 {
			for _, m := range labelRE.FindAllStringSubmatch(s.name[i:], -1) {
				s.labels[m[1]] = m[2]
			}
			s.name = s.name[:i]
		}
		out = append(out, s)
	}
	return out
}

// sum adds the samples of name whose labels include want.
func (ss samples) sum(name string, want map[string]string) float64 {
	total := 0.0
	for _, s := range ss {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			total += s.value
		}
	}
	return total
}

// outcomes is graphops_commands_total by "type/outcome".
func (ss samples) outcomes() map[string]int {
	out := map[string]int{}
	for _, s := range ss {
		if s.name == "graphops_commands_total" && s.value != 0 {
			out[s.labels["type"]+"/"+s.labels["outcome"]] += int(s.value)
		}
	}
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
