package main

import (
	"context"
	"fmt"

	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	sfsim "github.com/fanout-dev/fanout/internal/simulator/salesforce"
)

const helpSimulate = `usage: fanout simulate logicapps|salesforce [flags]

Runs a local simulator of a downstream system until interrupted, so that a
worker (or the dev mode) can be tried end to end without Azure or
Salesforce. The simulators answer like the real services, including their
errors, throttling and outages, and record every call.

  logicapps    an Azure Logic Apps Request trigger: SAS-signed callback
               URLs, 202/Response answers, schema validation, throttling,
               scripted faults; prints its callback URL.
  salesforce   a Salesforce org: OAuth token endpoint, sObject upsert and
               Collections, platform events, API limits, session expiry,
               faults; prints its base URL (use it as login_url).

Run 'fanout simulate logicapps -h' or 'fanout simulate salesforce -h' for a
simulator's flags. Faults can be changed while it runs through its /_sim/
endpoints (see the simulator's documentation).
`

// runSimulate runs one of the downstream simulators.
func runSimulate(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"usage: fanout simulate logicapps|salesforce [flags] (see fanout simulate --help)"}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(e.stdout, helpSimulate)
		return nil
	case "logicapps":
		return lasim.Command(ctx, args[1:], e.stdout)
	case "salesforce":
		return sfsim.Command(ctx, args[1:], e.stdout)
	}
	return usageError{fmt.Sprintf("unknown simulator %q: use logicapps or salesforce", args[0])}
}
