// Command stq is a local job queue: a daemon that runs jobs from an embedded
// SQLite file, and the client commands that talk to it.
package main

import (
	"context"
	"os"

	"stq/commands"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(commands.Main(context.Background(), os.Args, version, os.Stdin, os.Stdout, os.Stderr))
}
