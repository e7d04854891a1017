// Package deploy holds deployment files (sample configurations, Prometheus rules,
// units); the Go part only embeds the demo configuration, so that `shouwang demo`
// runs exactly the file shown in deploy/config/demo.yaml.
package deploy

import _ "embed"

// DemoConfig is deploy/config/demo.yaml, the embedded default `shouwang demo` runs.
//
//go:embed config/demo.yaml
var DemoConfig []byte

// DemoConfigName is how the demo configuration is named in messages.
const DemoConfigName = "deploy/config/demo.yaml (embedded)"
