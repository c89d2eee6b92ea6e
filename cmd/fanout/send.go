package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/kafkaconf"
)

const helpSend = `usage: fanout send [--brokers HOST:PORT] [--topic T] [--config FILE] [FILE]

Produces source events to the events topic: from FILE, or stdin when FILE
is absent or "-". The input is JSON objects, one per line or as a JSON
array. The record key is the event's aggregate id (source.id_field). An
invalid event stops the command before anything is sent, naming its line.
`

func runSend(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("send", e, helpSend)
	var cf commonFlags
	cf.register(fs, e)
	brokers := fs.String("brokers", "", "comma-separated brokers (default: the configuration's)")
	topic := fs.String("topic", "", "topic (default: the configuration's topics.events)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	getenv := e.getenv
	if *brokers != "" {
		getenv = func(k string) string {
			if k == "FANOUT_KAFKA_BROKERS" {
				return *brokers
			}
			return e.getenv(k)
		}
	}
	cfg, err := config.Load(cf.config, getenv)
	if err != nil {
		return configError{err}
	}
	if *topic == "" {
		*topic = cfg.Topics.Events
	}
	var in io.Reader = e.stdin
	if fs.NArg() > 0 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return usageError{err.Error()}
		}
		defer f.Close()
		in = f
	}
	recs, err := readEvents(in, cfg.Source.IDField)
	if err != nil {
		return usageError{err.Error()}
	}
	if len(recs) == 0 {
		return usageError{"no events in the input"}
	}
	kopts, err := kafkaconf.Options(cfg, "send", getenv, nil)
	if err != nil {
		return configError{err}
	}
	// An unreachable broker shows in the produce error below.
	if err := kafkaconf.Check(ctx, cfg, kopts); err != nil && !errors.Is(err, kafkaconf.ErrUnreachable) {
		return configError{err}
	}
	cl, err := kgo.NewClient(append(kopts, kgo.DefaultProduceTopic(*topic), kgo.AllowAutoTopicCreation())...)
	if err != nil {
		return fmt.Errorf("create kafka client: %w", err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(pctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce to %s: %w", *topic, err)
	}
	fmt.Fprintf(e.stdout, "sent %d event(s) to %s\n", len(recs), *topic)
	return nil
}

// readEvents reads JSON objects, one per line or as one JSON array.
func readEvents(r io.Reader, idField string) ([]*kgo.Record, error) {
	data, err := io.ReadAll(io.LimitReader(r, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("read input: %w", err)
	}
	var objs []json.RawMessage
	lines := []int{}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(t, &objs); err != nil {
			return nil, fmt.Errorf("input is not a valid JSON array: %v", err)
		}
		for i := range objs {
			lines = append(lines, i+1)
		}
	} else {
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if !json.Valid([]byte(line)) {
				return nil, fmt.Errorf("line %d: invalid JSON: %.80s", n, line)
			}
			objs = append(objs, json.RawMessage(line))
			lines = append(lines, n)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read input: %w", err)
		}
	}
	recs := make([]*kgo.Record, 0, len(objs))
	for i, o := range objs {
		var m map[string]any
		if err := json.Unmarshal(o, &m); err != nil {
			return nil, fmt.Errorf("event %d: not a JSON object", lines[i])
		}
		key := ""
		switch v := m[idField].(type) {
		case string:
			key = v
		case float64:
			key = fmt.Sprint(v)
		}
		if key == "" {
			return nil, fmt.Errorf("event %d: field %q (the aggregate id) is missing", lines[i], idField)
		}
		recs = append(recs, &kgo.Record{Key: []byte(key), Value: o})
	}
	return recs, nil
}
