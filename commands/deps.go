package commands

// Temporary: pins dependencies in go.mod while packages are being written.
import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/charmbracelet/lipgloss"
	_ "github.com/ncruces/go-sqlite3"
	_ "github.com/shirou/gopsutil/v4/process"
	_ "github.com/urfave/cli/v2"
	_ "golang.org/x/sys/unix"
	_ "golang.org/x/time/rate"
)
