package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/service"
)

// checkFlag is `scheduler run --check`: parse and validate the flags and
// the environment as run does, read the files run reads at start (the SASL
// password file, the TLS CA, certificate and key), print the resolved
// configuration and exit 0, without connecting to anything; or exit 2 with
// the usage error run would give. It is for an operator's manifests what
// `promtool check config` is for Prometheus': the Helm chart's tests run
// every rendered pod's arguments and environment through it.
type checkFlag struct {
	on bool
	f  *flagSet // the run flags, to print them all
}

// register adds --check to the run flags.
func (c *checkFlag) register(f *flagSet) {
	c.f = f
	f.Bool(&c.on, "check", "check the flags, the environment and the files they name, print the resolved configuration as JSON and exit, connecting to nothing")
}

// print reads the files cfg names, then writes every run flag with its
// resolved value as one JSON object (flag name -> value as the flag prints
// it). A secret prints as [redacted] when set.
func (c *checkFlag) print(out io.Writer, cfg *service.Config) error {
	if _, err := cfg.Conn.Opts(); err != nil {
		return c.f.invalid(err)
	}
	resolved := map[string]string{}
	for _, name := range c.f.order {
		if name == "check" {
			continue
		}
		v := c.f.fs.Lookup(name).Value.(*named).Value
		if s, ok := v.(*secretValue); ok {
			resolved[name] = fmt.Sprint(kclient.Secret(*s))
			continue
		}
		resolved[name] = v.String()
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(resolved)
}
