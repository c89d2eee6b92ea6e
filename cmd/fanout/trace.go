package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/fanout-dev/fanout/internal/admin"
	"github.com/fanout-dev/fanout/internal/store"
)

const helpTrace = `usage: fanout trace [--admin URL] [--token-file FILE] [--aggregate] [-o table|json] ID

Prints the per-notification trace of event ID: the source record and the
projector's READ model write (or stale, duplicate), the relay's publish
(partition, offset, lease token), every delivery attempt of every
connector (time, duration, HTTP status, error class and message, breaker
state) and each connector's outcome (delivered, dead-lettered, parked,
replayed and by whom). With --aggregate, ID is an aggregate id and every
traced event of the aggregate is printed.

It reads GET /v1/events/{id} (or /v1/aggregates/{id}/events) of the admin
API with a token of the read scope: --token-file, else the
FANOUT_ADMIN_TOKEN environment variable; none for a tokenless admin on
loopback. --admin defaults to FANOUT_ADMIN_URL, else
http://127.0.0.1:9464.

Entries are written in batches (trace.flush_interval, default 1s) and kept
trace.retention (default 7 days); with trace.sample below 1 only some
events are traced.

Exit status: 0 trace printed, 3 nothing recorded for ID, 1 the admin API
could not answer, 2 bad command line.
`

// exitNotFound is the exit status of a lookup that found nothing.
const exitNotFound = 3

// exitCodeError ends the command with its own exit status.
type exitCodeError struct {
	code int
	msg  string
}

func (e exitCodeError) Error() string { return e.msg }

func runTrace(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("trace", e, helpTrace)
	af := addAdminFlags(fs, "read")
	aggregate := fs.Bool("aggregate", false, "ID is an aggregate id: print all its traced events")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"give exactly one event id (or aggregate id with --aggregate); see fanout trace --help"}
	}
	c, err := af.client(e)
	if err != nil {
		return err
	}
	id := pos[0]
	path := "/v1/events/" + url.PathEscape(id)
	if *aggregate {
		path = "/v1/aggregates/" + url.PathEscape(id) + "/events"
	}
	body, err := c.get(ctx, path)
	if err != nil {
		return err
	}
	if af.json() {
		_, err := e.stdout.Write(body)
		return err
	}
	if *aggregate {
		var a admin.AggregateTrace
		if err := json.Unmarshal(body, &a); err != nil {
			return fmt.Errorf("read the admin API's answer: %w", err)
		}
		for i, ev := range a.Events {
			if i > 0 {
				fmt.Fprintln(e.stdout)
			}
			printTrace(e.stdout, ev)
		}
		if a.Truncated {
			fmt.Fprintln(e.stdout, "\n(older entries left out: raise ?limit= with -o json, or look up single events)")
		}
		return nil
	}
	var t admin.EventTrace
	if err := json.Unmarshal(body, &t); err != nil {
		return fmt.Errorf("read the admin API's answer: %w", err)
	}
	printTrace(e.stdout, t)
	return nil
}

// printTrace writes one event's trace as a table.
func printTrace(w io.Writer, t admin.EventTrace) {
	fmt.Fprintf(w, "event %s  aggregate %s  version %d\n", t.Event, t.Aggregate, t.Version)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSTAGE\tWHAT\tCONNECTOR\tDETAIL")
	for _, en := range t.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", en.At.UTC().Format("2006-01-02T15:04:05.000Z"), en.Stage, en.What, en.Connector, traceDetail(en))
	}
	_ = tw.Flush()
	for _, c := range t.Connectors {
		line := fmt.Sprintf("  %s: %s after %d attempt(s)", c.Connector, c.Outcome, c.Attempts)
		if c.LastError != "" && c.Outcome != "delivered" {
			line += "; last error: " + c.LastError
		}
		fmt.Fprintln(w, line)
	}
}

// traceDetail is the DETAIL column of one entry.
func traceDetail(e store.TraceEntry) string {
	var parts []string
	if e.Projection != "" {
		parts = append(parts, "projection "+e.Projection)
	}
	if e.Topic != "" {
		parts = append(parts, e.Topic+"/"+strconv.Itoa(int(e.Partition))+"@"+strconv.FormatInt(e.Offset, 10))
	}
	if e.Token != 0 {
		parts = append(parts, "lease token "+strconv.FormatInt(e.Token, 10))
	}
	if e.Attempt > 0 && (e.What == "attempt" || e.What == "replayed") {
		parts = append(parts, "attempt "+strconv.Itoa(e.Attempt))
	}
	if e.What == "attempt" {
		parts = append(parts, strconv.FormatFloat(e.DurationMS, 'f', 1, 64)+"ms")
	}
	if e.Status != 0 {
		parts = append(parts, "HTTP "+strconv.Itoa(e.Status))
	}
	if e.Class != "" {
		parts = append(parts, e.Class)
	}
	if e.Code != "" {
		parts = append(parts, e.Code)
	}
	if e.Breaker != "" && e.Breaker != "closed" {
		parts = append(parts, "breaker "+e.Breaker)
	}
	if e.By != "" {
		parts = append(parts, "by "+e.By)
	}
	if e.Reason != "" {
		parts = append(parts, e.Reason)
	}
	if e.Error != "" {
		parts = append(parts, "error: "+e.Error)
	}
	return strings.Join(parts, ", ")
}
