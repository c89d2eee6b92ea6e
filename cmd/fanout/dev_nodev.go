//go:build fanout_nodev

package main

import (
	"context"
	"errors"
)

const helpDev = "usage: fanout dev\n\nThis binary was built with -tags fanout_nodev, without the embedded broker,\nstore and simulators. Use a full build for fanout dev.\n"

func runDev(context.Context, *env, []string) error {
	return errors.New("this binary was built with -tags fanout_nodev: fanout dev is not included")
}
