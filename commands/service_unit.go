package commands

import (
	"encoding/xml"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Names and timings of the units `stq service` writes. They are documented
// in docs/SERVICE.md; the watchdog interval is what the daemon pings at half
// of (systemd passes it as WATCHDOG_USEC).
const (
	serviceName     = "stq"
	launchdLabel    = "local.stq"
	watchdogSec     = 30 * time.Second
	restartSec      = 2 * time.Second
	stopMargin      = 15 * time.Second
	socketFileMode  = 0o600
	socketDirMode   = 0o700
	systemdUserDir  = "systemd/user"
	systemdSysDir   = "/etc/systemd/system"
	launchdUserDir  = "Library/LaunchAgents"
	launchdSysDir   = "/Library/LaunchDaemons"
	managerSystemd  = "systemd"
	managerLaunchd  = "launchd"
	socketListeners = "Listeners" // the launchd Sockets key the daemon asks for
)

// unitSpec is everything a unit says about one stq daemon. Rendering it is
// pure, so the units are tested on any OS.
type unitSpec struct {
	System           bool   // a system unit (root's manager) rather than the user's
	RunAs            string // User= / UserName of a system unit
	Exe              string // absolute, symlinks resolved
	Home             string // the home as resolved now (for the description and the log)
	ExplicitHome     bool   // --home/STQ_HOME was given: pass it; else the daemon finds the default as the CLI does
	Socket           string
	Env              [][2]string // environment the daemon needs to find the same home as the CLI
	SocketActivation bool
	Grace            time.Duration // the daemon's grace plus its kill grace
}

// stopTimeout is how long the manager waits between SIGTERM and SIGKILL: the
// daemon's grace for running jobs, its kill grace for the ones still there,
// and a margin for the last commit and exit.
func (u unitSpec) stopTimeout() time.Duration {
	return (u.Grace + stopMargin).Round(time.Second)
}

// daemonArgs is the command line the unit starts.
func (u unitSpec) daemonArgs() []string {
	args := []string{u.Exe}
	if u.ExplicitHome {
		args = append(args, "--home", u.Home)
	}
	return append(args, "daemon")
}

// systemdService renders stq.service. Each directive in the [Service]
// section is explained in docs/SERVICE.md, with the ones left out on purpose.
func systemdService(u unitSpec) string {
	var b strings.Builder
	b.WriteString("# Written by `stq service install`; `stq service uninstall` removes it.\n")
	b.WriteString("# Directives: see docs/SERVICE.md in the stq sources.\n")
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=stq job queue daemon (home %s)\n", systemdEscapeValue(u.Home))
	b.WriteString("Documentation=man:stq(1)\n")
	if u.SocketActivation {
		b.WriteString("Requires=stq.socket\nAfter=stq.socket\n")
	}
	b.WriteString("\n[Service]\n")
	b.WriteString("Type=notify\nNotifyAccess=main\n")
	fmt.Fprintf(&b, "ExecStart=%s\n", systemdCommandLine(u.daemonArgs()))
	b.WriteString("ExecReload=/bin/kill -HUP $MAINPID\n")
	for _, kv := range u.Env {
		// Environment= expands specifiers but not variables.
		fmt.Fprintf(&b, "Environment=\"%s\"\n", strings.NewReplacer("%", "%%", `\`, `\\`, `"`, `\"`).Replace(kv[0]+"="+kv[1]))
	}
	if u.System {
		fmt.Fprintf(&b, "User=%s\n", u.RunAs)
	}
	fmt.Fprintf(&b, "Restart=on-failure\nRestartSec=%d\n", int(restartSec/time.Second))
	b.WriteString("KillMode=control-group\n")
	fmt.Fprintf(&b, "TimeoutStopSec=%d\n", int(u.stopTimeout()/time.Second))
	fmt.Fprintf(&b, "WatchdogSec=%d\n", int(watchdogSec/time.Second))
	b.WriteString("NoNewPrivileges=yes\nRestrictSUIDSGID=yes\nLockPersonality=yes\nRestrictRealtime=yes\n")
	if u.System {
		// Only a system manager can set these up without user namespaces,
		// which would hide other users' files from jobs.
		b.WriteString("ProtectKernelModules=yes\nProtectKernelLogs=yes\n")
	}
	b.WriteString("\n[Install]\n")
	switch {
	case u.SocketActivation:
		// Started by its socket: enabling the socket is enough.
		b.WriteString("Also=stq.socket\n")
	case u.System:
		b.WriteString("WantedBy=multi-user.target\n")
	default:
		b.WriteString("WantedBy=default.target\n")
	}
	return b.String()
}

// systemdSocket renders stq.socket: systemd binds the daemon's socket and
// starts stq.service on the first connection.
func systemdSocket(u unitSpec) string {
	var b strings.Builder
	b.WriteString("# Written by `stq service install --socket-activation`; `stq service uninstall` removes it.\n")
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=stq job queue socket (home %s)\n", systemdEscapeValue(u.Home))
	b.WriteString("Documentation=man:stq(1)\n")
	b.WriteString("\n[Socket]\n")
	fmt.Fprintf(&b, "ListenStream=%s\n", systemdEscapeValue(u.Socket))
	fmt.Fprintf(&b, "SocketMode=%04o\nDirectoryMode=%04o\n", socketFileMode, socketDirMode)
	if u.System {
		fmt.Fprintf(&b, "SocketUser=%s\n", u.RunAs)
	}
	b.WriteString("RemoveOnStop=yes\n")
	b.WriteString("\n[Install]\n")
	if u.System {
		b.WriteString("WantedBy=sockets.target\n")
	} else {
		b.WriteString("WantedBy=sockets.target\n")
	}
	return b.String()
}

// systemdCommandLine quotes each word of ExecStart as systemd.service(5)
// parses it: a word with a space or quote is double-quoted, and "%" and
// "$" are doubled so they are never read as specifiers or variables.
func systemdCommandLine(args []string) string {
	words := make([]string, len(args))
	for i, a := range args {
		words[i] = systemdQuote(a)
	}
	return strings.Join(words, " ")
}

func systemdQuote(s string) string {
	s = strings.NewReplacer("%", "%%", "$", "$$").Replace(s)
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// systemdEscapeValue makes a path safe in a plain setting, where only
// specifiers are expanded.
func systemdEscapeValue(s string) string {
	return strings.ReplaceAll(s, "%", "%%")
}

// launchdPlist renders the launchd property list: a LaunchAgent for the
// user, or a LaunchDaemon with UserName for --system.
func launchdPlist(u unitSpec, logPath string) string {
	var b strings.Builder
	b.WriteString(xml.Header)
	b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	b.WriteString("<!-- Written by `stq service install`; `stq service uninstall` removes it. -->\n")
	b.WriteString("<plist version=\"1.0\">\n<dict>\n")
	plistString(&b, 1, "Label", launchdLabel)
	plistKey(&b, 1, "ProgramArguments")
	b.WriteString("\t<array>\n")
	for _, a := range u.daemonArgs() {
		fmt.Fprintf(&b, "\t\t<string>%s</string>\n", xmlText(a))
	}
	b.WriteString("\t</array>\n")
	if len(u.Env) > 0 {
		plistKey(&b, 1, "EnvironmentVariables")
		b.WriteString("\t<dict>\n")
		for _, kv := range u.Env {
			plistString(&b, 2, kv[0], kv[1])
		}
		b.WriteString("\t</dict>\n")
	}
	if u.System {
		plistString(&b, 1, "UserName", u.RunAs)
	}
	if u.SocketActivation {
		// On demand: launchd holds the socket and starts the daemon on the
		// first connection, and again after it exits.
		plistKey(&b, 1, "RunAtLoad")
		b.WriteString("\t<false/>\n")
		plistKey(&b, 1, "Sockets")
		b.WriteString("\t<dict>\n")
		plistKey(&b, 2, socketListeners)
		b.WriteString("\t\t<dict>\n")
		plistString(&b, 3, "SockPathName", u.Socket)
		plistKey(&b, 3, "SockPathMode")
		fmt.Fprintf(&b, "\t\t\t<integer>%d</integer>\n", socketFileMode)
		b.WriteString("\t\t</dict>\n\t</dict>\n")
	} else {
		plistKey(&b, 1, "RunAtLoad")
		b.WriteString("\t<true/>\n")
		// Restart after a crash, not after `stq shutdown` (exit 0): the
		// launchd form of Restart=on-failure.
		plistKey(&b, 1, "KeepAlive")
		b.WriteString("\t<dict>\n")
		plistKey(&b, 2, "SuccessfulExit")
		b.WriteString("\t\t<false/>\n\t</dict>\n")
	}
	plistKey(&b, 1, "ThrottleInterval")
	fmt.Fprintf(&b, "\t<integer>%d</integer>\n", int(restartSec/time.Second))
	plistKey(&b, 1, "ExitTimeOut")
	fmt.Fprintf(&b, "\t<integer>%d</integer>\n", int(u.stopTimeout()/time.Second))
	plistString(&b, 1, "StandardOutPath", logPath)
	plistString(&b, 1, "StandardErrorPath", logPath)
	b.WriteString("</dict>\n</plist>\n")
	return b.String()
}

func plistKey(b *strings.Builder, depth int, key string) {
	fmt.Fprintf(b, "%s<key>%s</key>\n", strings.Repeat("\t", depth), xmlText(key))
}

func plistString(b *strings.Builder, depth int, key, value string) {
	plistKey(b, depth, key)
	fmt.Fprintf(b, "%s<string>%s</string>\n", strings.Repeat("\t", depth), xmlText(value))
}

func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // writes to a strings.Builder never fail
	return b.String()
}

// unitFile is one file a manager reads, with its content.
type unitFile struct {
	Path, Content string
}

// renderUnits returns the files for a manager, in the order they are
// printed and written: the service (or plist) first.
func renderUnits(manager string, u unitSpec, dir string) []unitFile {
	if manager == managerLaunchd {
		return []unitFile{{filepath.Join(dir, launchdLabel+".plist"), launchdPlist(u, filepath.Join(u.Home, "daemon.log"))}}
	}
	files := []unitFile{{filepath.Join(dir, serviceName+".service"), systemdService(u)}}
	if u.SocketActivation {
		files = append(files, unitFile{filepath.Join(dir, serviceName+".socket"), systemdSocket(u)})
	}
	return files
}
