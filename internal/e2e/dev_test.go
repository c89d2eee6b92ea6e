package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// devStack is a `fanout dev` child process and the addresses it printed.
type devStack struct {
	cmd                   *exec.Cmd
	broker, mongo, la, sf string
	admin                 string
	done                  chan error
	stdout                *strings.Builder
}

var devLine = regexp.MustCompile(`^\s+(Kafka broker|MongoDB store|Logic Apps sim|Salesforce sim|Admin and console)\s+(\S+)`)

// startDev runs `fanout dev` on a fresh data directory and waits until it
// printed its addresses.
func startDev(t *testing.T, extraArgs ...string) *devStack {
	t.Helper()
	bin := fanoutBinary(t)
	args := append([]string{"dev", "--data", t.TempDir(), "--kafka-listen", "127.0.0.1:0", "--mongo-listen", "127.0.0.1:0"}, extraArgs...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "FANOUT_ADMIN_LISTEN=127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(t.TempDir() + "/dev.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &devStack{cmd: cmd, done: make(chan error, 1), stdout: &strings.Builder{}}
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		seen := 0
		for sc.Scan() {
			line := sc.Text()
			d.stdout.WriteString(line + "\n")
			if m := devLine.FindStringSubmatch(line); m != nil {
				switch m[1] {
				case "Kafka broker":
					d.broker = m[2]
				case "MongoDB store":
					d.mongo = m[2]
				case "Logic Apps sim":
					d.la = m[2]
				case "Salesforce sim":
					d.sf = m[2]
				case "Admin and console":
					d.admin = strings.TrimSuffix(m[2], "/")
				}
				seen++
				if seen == 5 {
					close(found)
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-d.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("fanout dev stdout:\n%s\nlog tail:\n%s", d.stdout.String(), b)
		}
	})
	select {
	case <-found:
	case err := <-d.done:
		t.Fatalf("fanout dev exited early: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("fanout dev did not print its addresses within 60 s")
	}
	return d
}

func postJSON(t *testing.T, url, body string, v any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %s %s", url, resp.Status, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("POST %s: %v: %s", url, err, b)
		}
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// TestDev starts `fanout dev` as a child process on a fresh data
// directory, produces events with a Kafka client, and sees the READ model
// in the store, the deliveries at both simulators and a dead letter for
// the event the Salesforce simulator rejects; Ctrl-C then exits 0 within
// 10 s.
func TestDev(t *testing.T) {
	d := startDev(t)
	events := []string{
		`{"id":"dev-1","event_type":"quote_created","quote_id":"DQ1","version":1,"amount":5000,"currency":"INR","user_id":"U1"}`,
		`{"id":"dev-2","event_type":"quote_updated","quote_id":"DQ1","version":2,"amount":5500,"currency":"INR","user_id":"U1"}`,
		`{"id":"dev-3","event_type":"quote_created","quote_id":"DQ2","version":1,"amount":10,"currency":"XXX","user_id":"U2"}`,
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(d.broker), kgo.DefaultProduceTopic("quote-events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, ev := range events {
		var m map[string]any
		_ = json.Unmarshal([]byte(ev), &m)
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(m["quote_id"].(string)), Value: []byte(ev)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"dev-1", "dev-2", "dev-3"}
	if _, err := exec.LookPath("kcat"); err == nil {
		kc := exec.Command("kcat", "-b", d.broker, "-P", "-t", "quote-events", "-K", "|")
		kc.Stdin = strings.NewReader(`DQ3|{"id":"dev-4","event_type":"quote_created","quote_id":"DQ3","version":1,"amount":1,"currency":"EUR"}` + "\n")
		if out, err := kc.CombinedOutput(); err != nil {
			t.Fatalf("kcat: %v\n%s", err, out)
		}
		want = append(want, "dev-4")
	} else {
		t.Log("kcat is not installed: producing with franz-go only")
	}

	deadline := time.Now().Add(90 * time.Second)
	var laCalls []map[string]any
	var sfRecords any
	var dlq []*kgo.Record
	for {
		getJSON(t, d.la+"/_sim/calls", &laCalls)
		getJSON(t, d.sf+"/_sim/records/Quote__c", &sfRecords)
		ids := map[string]bool{}
		for _, c := range laCalls {
			if id, _ := c["tracking_id"].(string); id != "" && c["status"] == float64(202) {
				ids[id] = true
			}
		}
		sfJSON, _ := json.Marshal(sfRecords)
		all := true
		for _, id := range want {
			all = all && ids[id]
		}
		if all && strings.Contains(string(sfJSON), "DQ1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries missing: logic apps tracking ids %v, salesforce records %s", ids, sfJSON)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// The READ model holds DQ1 at version 2.
	mc, err := mongo.Connect(options.Client().ApplyURI(d.mongo))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(context.Background())
	var doc bson.M
	if err := mc.Database("fanout").Collection("quotes").FindOne(context.Background(), bson.D{{Key: "_id", Value: "DQ1"}}).Decode(&doc); err != nil {
		t.Fatalf("READ model: %v", err)
	}
	if fmt.Sprint(doc["version"]) != "2" || fmt.Sprint(doc["amount"]) != "5500" {
		t.Fatalf("READ model DQ1 = %v", doc)
	}
	// The rejected event is a dead letter of the salesforce connector.
	dl, err := kgo.NewClient(kgo.SeedBrokers(d.broker), kgo.ConsumeTopics("quote-notifications.dlq.salesforce"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(dlq) == 0 && ctx.Err() == nil {
		dlq = append(dlq, dl.PollFetches(ctx).Records()...)
	}
	if len(dlq) != 1 || string(dlq[0].Key) != "DQ2" {
		t.Fatalf("salesforce dead letters: %d, want the one for DQ2", len(dlq))
	}

	// Fix the cause (the simulator's validation rule), then replay the
	// dead letter through the admin API: a dry run first, then for real.
	postJSON(t, d.sf+"/_sim/faults", `{"reject_field":"","reject_value":""}`, nil)
	sel := `{"filter":{"key":"DQ2"},"dry_run":true}`
	var dry struct {
		Counts struct{ Replay, Replayed int } `json:"counts"`
	}
	postJSON(t, d.admin+"/v1/connectors/salesforce/replay", sel, &dry)
	if dry.Counts.Replay != 1 || dry.Counts.Replayed != 0 {
		t.Fatalf("dry run: %+v, want 1 to replay and none sent", dry.Counts)
	}
	var real struct {
		Counts struct{ Replayed int } `json:"counts"`
	}
	postJSON(t, d.admin+"/v1/connectors/salesforce/replay", `{"filter":{"key":"DQ2"}}`, &real)
	if real.Counts.Replayed != 1 {
		t.Fatalf("replay: %+v, want 1 replayed", real.Counts)
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		var recs any
		getJSON(t, d.sf+"/_sim/records/Quote__c", &recs)
		if b, _ := json.Marshal(recs); strings.Contains(string(b), "DQ2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replayed DQ2 never reached the Salesforce simulator")
		}
		time.Sleep(300 * time.Millisecond)
	}

	start := time.Now()
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			t.Fatalf("fanout dev exited with %v after Ctrl-C", err)
		}
		t.Logf("fanout dev stopped %v after Ctrl-C", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("fanout dev still running 10 s after Ctrl-C")
	}
}
