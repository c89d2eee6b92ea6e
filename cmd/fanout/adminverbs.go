package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fanout-dev/fanout/internal/admin"
	"github.com/fanout-dev/fanout/internal/store"
)

// adminFlagsHelp is the part of the admin verbs' help about reaching the
// admin API.
const adminFlagsHelp = `
It calls the admin API at --admin (default FANOUT_ADMIN_URL, else
http://127.0.0.1:9464) with the token in --token-file (default the
FANOUT_ADMIN_TOKEN environment variable; none for a tokenless admin on
loopback). -o json prints the API's JSON answer as it is.
`

const helpStatus = `usage: fanout status [--admin URL] [--token-file FILE] [-o table|json] [CONNECTOR]

Prints every connector's status (GET /v1/connectors), or one connector's
(GET /v1/connectors/{name}): paused, live worker instances, breaker state,
in flight, held, deliveries per second, consumer lag, dead letters, and
why it is halted or waiting, or its last error. Needs the read scope.
` + adminFlagsHelp + `
Exit status: 0 printed, 3 unknown connector, 1 the admin API could not
answer (or refused the token), 2 bad command line.
`

const helpDLQ = `usage: fanout dlq list CONNECTOR [--key K] [--class C] [--reason TEXT] [--since T] [--until T] [--limit N]
       fanout dlq show CONNECTOR PARTITION/OFFSET
       fanout dlq replay CONNECTOR (PARTITION/OFFSET... | --all | --key K | --class C) [--force] [--rate R] [--limit N] [--yes]

The dead letters of one connector.

list   the dead letters (GET /v1/connectors/{name}/dead-letters), oldest
       first per partition, filtered by record key, error class
       (permanent, retryable, reauthenticate, parked, invalid), text in
       the error or its code (--reason, case-insensitive) and the time of
       the last failure (--since, --until: RFC 3339, or a duration back
       from now such as 90m).
show   one dead letter with its error, headers and payload.
replay sends dead letters back to the connector's retry topic (POST
       /v1/connectors/{name}/replay). Without --yes it is a dry run: it
       prints what would be replayed and why the rest would not be
       (already replayed, stale, duplicate, truncated, no id), and sends
       nothing. With --yes it replays, at --rate records per second
       (default admin.replay_rate). --force replays records already
       replayed and records older than what the connector already has.

list and show need the read scope, replay the replay (or operate) scope.
` + adminFlagsHelp + `
Exit status: 0 done; 3 unknown connector, no such dead letter, or nothing
listed or selected; 1 the admin API could not answer (or refused the
token), or a record of a replay failed; 2 bad command line.
`

const helpPause = `usage: fanout pause [--reason TEXT] [--admin URL] [--token-file FILE] [-o table|json] CONNECTOR
` + pauseHelpBody

const helpResume = `usage: fanout resume [--reason TEXT] [--admin URL] [--token-file FILE] [-o table|json] CONNECTOR
` + pauseHelpBody

// pauseHelpBody is the help text pause and resume share.
const pauseHelpBody = `
Pauses or resumes the delivery of one connector (POST
/v1/connectors/{name}/pause or /resume). Workers follow within about 2 s;
calls in flight finish. The action is written to the audit trail with the
token's name and --reason. Needs the pause (or operate) scope.
` + adminFlagsHelp + `
Exit status: 0 done, 3 unknown connector, 1 the admin API could not
answer (or refused the token), 2 bad command line.
`

// runStatus is fanout status.
func runStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("status", e, helpStatus)
	af := addAdminFlags(fs, "read")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usageError{"give at most one connector; see fanout status --help"}
	}
	c, err := af.client(e)
	if err != nil {
		return err
	}
	var views []admin.ConnectorView
	var body []byte
	if len(pos) == 1 {
		if body, err = c.get(ctx, "/v1/connectors/"+url.PathEscape(pos[0])); err != nil {
			return err
		}
		var v admin.ConnectorView
		if !af.json() {
			if err := json.Unmarshal(body, &v); err != nil {
				return fmt.Errorf("read the admin API's answer: %w", err)
			}
		}
		views = append(views, v)
	} else {
		if body, err = c.get(ctx, "/v1/connectors"); err != nil {
			return err
		}
		var l struct {
			Connectors []admin.ConnectorView `json:"connectors"`
		}
		if !af.json() {
			if err := json.Unmarshal(body, &l); err != nil {
				return fmt.Errorf("read the admin API's answer: %w", err)
			}
		}
		views = l.Connectors
	}
	if af.json() {
		_, err := e.stdout.Write(body)
		return err
	}
	printStatus(e.stdout, views)
	return nil
}

// printStatus writes the connectors' status as a table, then the notes
// (halted, waiting, last error, what could not be read) under it.
func printStatus(w io.Writer, views []admin.ConnectorView) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONNECTOR\tTYPE\tPAUSED\tINSTANCES\tBREAKER\tIN FLIGHT\tHELD\tRATE/S\tLAG\tDEAD LETTERS")
	for _, v := range views {
		paused := "no"
		if v.Paused {
			paused = "yes"
			if v.Pause != nil && v.Pause.By != "" {
				paused += " (" + v.Pause.By + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%.1f\t%d\t%d\n", v.Name, v.Type, paused, v.Instances, v.Breaker,
			v.InFlight, v.Held, v.Rate, v.LagTotal, v.DeadLetters)
	}
	_ = tw.Flush()
	for _, v := range views {
		if v.Halted != "" {
			fmt.Fprintf(w, "  %s: halted: %s\n", v.Name, v.Halted)
		}
		if v.WaitReason != "" {
			fmt.Fprintf(w, "  %s: waiting until %s: %s\n", v.Name, v.WaitUntil.UTC().Format(time.RFC3339), v.WaitReason)
		}
		if v.LastError != "" {
			fmt.Fprintf(w, "  %s: last error at %s: %s\n", v.Name, v.LastErrorAt.UTC().Format(time.RFC3339), v.LastError)
		}
		for _, m := range v.Errors {
			fmt.Fprintf(w, "  %s: could not read: %s\n", v.Name, m)
		}
	}
}

// runPause is fanout pause.
func runPause(ctx context.Context, e *env, args []string) error {
	return setPause(ctx, e, args, "pause", helpPause)
}

// runResume is fanout resume.
func runResume(ctx context.Context, e *env, args []string) error {
	return setPause(ctx, e, args, "resume", helpResume)
}

func setPause(ctx context.Context, e *env, args []string, verb, help string) error {
	fs := newFlagSet(verb, e, help)
	af := addAdminFlags(fs, "pause")
	reason := fs.String("reason", "", "why, for the audit trail")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{fmt.Sprintf("give exactly one connector; see fanout %s --help", verb)}
	}
	c, err := af.client(e)
	if err != nil {
		return err
	}
	body, err := c.post(ctx, "/v1/connectors/"+url.PathEscape(pos[0])+"/"+verb, map[string]string{"reason": *reason})
	if err != nil {
		return err
	}
	if af.json() {
		_, err := e.stdout.Write(body)
		return err
	}
	var r struct {
		Connector  string `json:"connector"`
		Paused     bool   `json:"paused"`
		By         string `json:"by"`
		Note       string `json:"note"`
		AuditError string `json:"audit_error"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("read the admin API's answer: %w", err)
	}
	state := "resumed"
	if r.Paused {
		state = "paused"
	}
	line := fmt.Sprintf("%s %s", r.Connector, state)
	if r.By != "" {
		line += " by " + r.By
	}
	fmt.Fprintf(e.stdout, "%s (%s)\n", line, r.Note)
	if r.AuditError != "" {
		fmt.Fprintf(e.stderr, "fanout %s: the audit record could not be written: %s\n", verb, r.AuditError)
	}
	return nil
}

// deadLetter is what the CLI reads of the admin API's dead letter.
type deadLetter struct {
	Partition   int32               `json:"partition"`
	Offset      int64               `json:"offset"`
	Timestamp   time.Time           `json:"timestamp"`
	Key         string              `json:"key"`
	ID          string              `json:"id"`
	Type        string              `json:"type"`
	Version     int64               `json:"version"`
	ErrorClass  string              `json:"error_class"`
	Error       string              `json:"error"`
	HTTPStatus  int                 `json:"http_status"`
	ErrorCode   string              `json:"error_code"`
	Attempts    int                 `json:"attempts"`
	LastFailure time.Time           `json:"last_failure"`
	Replay      *store.ReplayMarker `json:"replay"`
	Headers     map[string]string   `json:"headers"`
	Payload     json.RawMessage     `json:"payload"`
	PayloadText string              `json:"payload_text"`
}

// runDLQ is fanout dlq list|show|replay.
func runDLQ(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"give list, show or replay; see fanout dlq --help"}
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		fmt.Fprint(e.stdout, helpDLQ)
		return nil
	case "list":
		return dlqList(ctx, e, args[1:])
	case "show":
		return dlqShow(ctx, e, args[1:])
	case "replay":
		return dlqReplay(ctx, e, args[1:])
	}
	return usageError{fmt.Sprintf("dlq %q: give list, show or replay; see fanout dlq --help", args[0])}
}

func dlqList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("dlq list", e, helpDLQ)
	af := addAdminFlags(fs, "read")
	key := fs.String("key", "", "only the dead letters of this record key (aggregate id)")
	class := fs.String("class", "", "only this error class: permanent, retryable, reauthenticate, parked, invalid")
	reason := fs.String("reason", "", "only dead letters whose error or error code contains this text (case-insensitive)")
	since := fs.String("since", "", "only dead letters that last failed at or after this time (RFC 3339, or a duration back from now: 90m)")
	until := fs.String("until", "", "only dead letters that last failed before this time (RFC 3339, or a duration back from now)")
	limit := fs.Int("limit", 50, "at most this many (the API allows 500)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"give exactly one connector; see fanout dlq --help"}
	}
	times := map[string]string{}
	for name, v := range map[string]string{"since": *since, "until": *until} {
		if v == "" {
			continue
		}
		t, err := cliTime(v, time.Now())
		if err != nil {
			return usageError{fmt.Sprintf("--%s %q: %v", name, v, err)}
		}
		times[name] = t.UTC().Format(time.RFC3339)
	}
	c, err := af.client(e)
	if err != nil {
		return err
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	if *key != "" {
		q.Set("key", *key)
	}
	if *class != "" {
		q.Set("error_class", *class)
	}
	if *reason != "" {
		q.Set("reason", *reason)
	}
	for name, t := range times {
		q.Set(name, t)
	}
	body, err := c.get(ctx, "/v1/connectors/"+url.PathEscape(pos[0])+"/dead-letters?"+q.Encode())
	if err != nil {
		return err
	}
	var page struct {
		Topic string       `json:"topic"`
		Items []deadLetter `json:"items"`
		More  bool         `json:"more"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("read the admin API's answer: %w", err)
	}
	if af.json() {
		if _, err := e.stdout.Write(body); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RECORD\tID\tKEY\tVERSION\tCLASS\tHTTP\tATTEMPTS\tLAST FAILURE\tREPLAYED\tERROR")
		for _, d := range page.Items {
			replayed := "no"
			if d.Replay != nil {
				replayed = "yes (" + d.Replay.By + ")"
			}
			fmt.Fprintf(tw, "%d/%d\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", d.Partition, d.Offset, d.ID, d.Key, d.Version, d.ErrorClass,
				httpStatus(d.HTTPStatus), d.Attempts, fmtTime(d.LastFailure), replayed, oneLine(d.Error, 80))
		}
		_ = tw.Flush()
		if page.More {
			fmt.Fprintln(e.stdout, "(more dead letters: raise --limit, or use -o json and its next_cursor)")
		}
	}
	if len(page.Items) == 0 {
		return exitCodeError{code: exitNotFound, msg: "no dead letters in " + page.Topic + " match"}
	}
	return nil
}

func dlqShow(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("dlq show", e, helpDLQ)
	af := addAdminFlags(fs, "read")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"give a connector and one PARTITION/OFFSET (as dlq list prints it); see fanout dlq --help"}
	}
	ref, err := parseRecordRef(pos[1])
	if err != nil {
		return err
	}
	c, err := af.client(e)
	if err != nil {
		return err
	}
	body, err := c.get(ctx, fmt.Sprintf("/v1/connectors/%s/dead-letters/%d/%d", url.PathEscape(pos[0]), ref.Partition, ref.Offset))
	if err != nil {
		return err
	}
	if af.json() {
		_, err := e.stdout.Write(body)
		return err
	}
	var d deadLetter
	if err := json.Unmarshal(body, &d); err != nil {
		return fmt.Errorf("read the admin API's answer: %w", err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"record", fmt.Sprintf("%d/%d", d.Partition, d.Offset)},
		{"id", d.ID}, {"key", d.Key}, {"type", d.Type}, {"version", strconv.FormatInt(d.Version, 10)},
		{"error class", d.ErrorClass}, {"http status", httpStatus(d.HTTPStatus)}, {"error code", d.ErrorCode},
		{"attempts", strconv.Itoa(d.Attempts)}, {"last failure", fmtTime(d.LastFailure)}, {"error", d.Error},
	} {
		if kv[1] != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
		}
	}
	if d.Replay != nil {
		fmt.Fprintf(tw, "replayed:\t%s by %s (replay %s)\n", fmtTime(d.Replay.At), d.Replay.By, d.Replay.ReplayID)
	}
	_ = tw.Flush()
	if len(d.Headers) > 0 {
		fmt.Fprintln(e.stdout, "headers:")
		keys := make([]string, 0, len(d.Headers))
		for k := range d.Headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(e.stdout, "  %s: %s\n", k, d.Headers[k])
		}
	}
	switch {
	case len(d.Payload) > 0:
		fmt.Fprintf(e.stdout, "payload:\n%s\n", d.Payload)
	case d.PayloadText != "":
		fmt.Fprintf(e.stdout, "payload:\n%s\n", d.PayloadText)
	}
	return nil
}

func dlqReplay(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("dlq replay", e, helpDLQ)
	af := addAdminFlags(fs, "replay")
	all := fs.Bool("all", false, "select every dead letter (up to --limit)")
	key := fs.String("key", "", "select the dead letters of this record key (aggregate id)")
	class := fs.String("class", "", "select the dead letters of this error class")
	force := fs.Bool("force", false, "replay records already replayed or older than what the connector has")
	rate := fs.Float64("rate", 0, "records per second (default admin.replay_rate)")
	limit := fs.Int("limit", 0, "at most this many records of a filter (default admin.replay_max_records)")
	yes := fs.Bool("yes", false, "really replay; without it, a dry run that sends nothing")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 {
		return usageError{"give a connector, then PARTITION/OFFSET records or --all, --key, --class; see fanout dlq --help"}
	}
	req := admin.ReplayRequest{DryRun: !*yes, Force: *force, Rate: *rate, Limit: *limit}
	for _, p := range pos[1:] {
		ref, err := parseRecordRef(p)
		if err != nil {
			return err
		}
		req.Records = append(req.Records, ref)
	}
	filtered := *all || *key != "" || *class != ""
	switch {
	case len(req.Records) > 0 && filtered:
		return usageError{"give either PARTITION/OFFSET records or --all, --key, --class, not both"}
	case len(req.Records) == 0 && !filtered:
		return usageError{"select the dead letters: PARTITION/OFFSET records, --all, --key or --class"}
	case filtered:
		req.Filter = &admin.Filter{Key: *key, ErrorClass: *class}
	}
	c, err := af.client(e)
	if err != nil {
		return err
	}
	body, err := c.post(ctx, "/v1/connectors/"+url.PathEscape(pos[0])+"/replay", req)
	if err != nil {
		return err
	}
	var r admin.ReplayResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("read the admin API's answer: %w", err)
	}
	if af.json() {
		if _, err := e.stdout.Write(body); err != nil {
			return err
		}
	} else {
		printReplay(e.stdout, &r)
	}
	if r.AuditError != "" {
		fmt.Fprintf(e.stderr, "fanout dlq replay: the audit record could not be written: %s\n", r.AuditError)
	}
	switch {
	case r.Counts.Failed > 0 || r.Counts.NotStarted > 0:
		return fmt.Errorf("replay %s: %d record(s) failed, %d not started; they can be replayed again", r.ReplayID, r.Counts.Failed, r.Counts.NotStarted)
	case r.Counts.Selected == 0:
		return exitCodeError{code: exitNotFound, msg: "no dead letter of " + r.Connector + " was selected"}
	}
	return nil
}

// printReplay writes a replay's (or a dry run's) outcome per record and
// its counts.
func printReplay(w io.Writer, r *admin.ReplayResponse) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RECORD\tID\tKEY\tVERSION\tCLASS\tATTEMPTS\tACTION\tREASON")
	for _, it := range r.Items {
		action := it.Action
		if action == admin.ActionReplay {
			action = "would replay"
		}
		reason := it.Reason
		if it.Error != "" {
			reason = oneLine(it.Error, 80)
		}
		if len(it.Forced) > 0 {
			reason = "forced: " + strings.Join(it.Forced, ", ")
		}
		fmt.Fprintf(tw, "%d/%d\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", it.Partition, it.Offset, it.ID, it.Key, it.Version, it.ErrorClass,
			it.AttemptsSoFar, action, reason)
	}
	_ = tw.Flush()
	cn := r.Counts
	if r.DryRun {
		fmt.Fprintf(w, "dry run %s: %d selected, %d would be replayed to %s, %d skipped; nothing was sent. Add --yes to replay.\n",
			r.ReplayID, cn.Selected, cn.Replay, r.RetryTopic, cn.Skipped)
	} else {
		fmt.Fprintf(w, "replay %s: %d selected, %d replayed to %s, %d skipped, %d failed, %d not started.\n",
			r.ReplayID, cn.Selected, cn.Replayed, r.RetryTopic, cn.Skipped, cn.Failed, cn.NotStarted)
	}
	if r.Truncated {
		fmt.Fprintln(w, "(the filter matched more records than --limit; run again for the rest)")
	}
}

// parseRecordRef reads PARTITION/OFFSET (or PARTITION:OFFSET).
func parseRecordRef(s string) (admin.RecordRef, error) {
	ps, offs, ok := strings.Cut(s, "/")
	if !ok {
		ps, offs, ok = strings.Cut(s, ":")
	}
	p, perr := strconv.ParseInt(ps, 10, 32)
	o, oerr := strconv.ParseInt(offs, 10, 64)
	if !ok || perr != nil || oerr != nil || p < 0 || o < 0 {
		return admin.RecordRef{}, usageError{fmt.Sprintf("%q is not PARTITION/OFFSET (such as 0/42, as dlq list prints it)", s)}
	}
	return admin.RecordRef{Partition: int32(p), Offset: o}, nil
}

// httpStatus is an HTTP status for a table: "-" when no response came.
func httpStatus(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// fmtTime is t in UTC to the second; "" when unset.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// oneLine keeps a message on one table row: newlines become spaces and it
// is cut at n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// cliTime reads a time given on the command line: RFC 3339, or a duration
// back from now ("90m", "2h").
func cliTime(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, errors.New("give an RFC 3339 time (2026-12-01T08:00:00Z) or a duration back from now (90m)")
	}
	return now.Add(-d), nil
}
