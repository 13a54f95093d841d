package commands

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goldenSpec is a unit spec with fixed paths, so the golden files do not
// depend on where the test runs.
func goldenSpec() unitSpec {
	return unitSpec{
		Exe:          "/usr/local/bin/stq",
		Home:         "/home/ada/.local/state/stq",
		ExplicitHome: true,
		Socket:       "/home/ada/.local/state/stq/stq.sock",
		Grace:        15 * time.Second,
	}
}

// TestRenderUnitsGolden pins the units byte for byte: a changed directive
// shows in review as a changed golden file. STQ_UPDATE_GOLDEN=1 rewrites
// them.
func TestRenderUnitsGolden(t *testing.T) {
	t.Parallel()
	system := goldenSpec()
	system.System, system.RunAs, system.Home, system.Socket = true, "ada", "/srv/stq", "/srv/stq/stq.sock"
	socket := goldenSpec()
	socket.SocketActivation = true
	implicit := goldenSpec()
	implicit.ExplicitHome = false
	implicit.Socket = "/run/user/1000/stq/stq.sock"
	implicit.Env = [][2]string{{"XDG_STATE_HOME", "/home/ada/state"}}
	tests := []struct {
		name    string
		manager string
		spec    unitSpec
	}{
		{"user", managerSystemd, goldenSpec()},
		{"user-socket", managerSystemd, socket},
		{"user-default-home", managerSystemd, implicit},
		{"system", managerSystemd, system},
		{"launchd", managerLaunchd, goldenSpec()},
		{"launchd-socket", managerLaunchd, socket},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got bytes.Buffer
			for _, f := range renderUnits(tt.manager, tt.spec, "/units") {
				got.WriteString("### " + f.Path + "\n" + f.Content)
			}
			path := filepath.Join("testdata", "service", tt.name+".golden")
			if os.Getenv("STQ_UPDATE_GOLDEN") != "" {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (STQ_UPDATE_GOLDEN=1 writes it)", err)
			}
			if got.String() != string(want) {
				t.Fatalf("%s differs from the rendered unit:\n%s", path, got.String())
			}
		})
	}
}

func TestUnitRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		spec      func(u *unitSpec)
		has, hasn []string
	}{
		{"stop timeout exceeds grace plus kill grace", func(u *unitSpec) { u.Grace = 70 * time.Second }, []string{"TimeoutStopSec=85\n"}, nil},
		{"the daemon's grace from config is rounded to whole seconds", func(u *unitSpec) { u.Grace = 2500 * time.Millisecond }, []string{"TimeoutStopSec=18\n"}, nil},
		{"crash leftovers die with the cgroup", nil, []string{"KillMode=control-group\n", "Restart=on-failure\n"}, []string{"KillMode=mixed"}},
		{"the daemon says when it is ready and pings the watchdog", nil, []string{"Type=notify\n", "NotifyAccess=main\n", "WatchdogSec=30\n"}, nil},
		{"nothing that breaks jobs in $HOME, /tmp or the network", nil, []string{"NoNewPrivileges=yes\n"}, []string{"PrivateTmp", "ProtectHome", "PrivateNetwork", "ProtectSystem", "MemoryDenyWriteExecute", "UMask"}},
		{"a user unit has no User=", nil, []string{"WantedBy=default.target\n"}, []string{"User="}},
		{"a system unit runs as its user", func(u *unitSpec) { u.System, u.RunAs = true, "ada" }, []string{"User=ada\n", "WantedBy=multi-user.target\n", "ProtectKernelModules=yes\n"}, nil},
		{"a default home passes no --home", func(u *unitSpec) { u.ExplicitHome = false }, []string{"ExecStart=/usr/local/bin/stq daemon\n"}, []string{"--home"}},
		{"paths with spaces and specifiers are quoted", func(u *unitSpec) { u.Exe, u.Home = "/opt/my stq/stq", "/data/100%/$HOME" },
			[]string{`ExecStart="/opt/my stq/stq" --home /data/100%%/$$HOME daemon` + "\n", "(home /data/100%%/$HOME)"}, nil},
		{"socket activation needs the socket", func(u *unitSpec) { u.SocketActivation = true }, []string{"Requires=stq.socket\n", "After=stq.socket\n", "Also=stq.socket\n"}, []string{"WantedBy="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := goldenSpec()
			if tt.spec != nil {
				tt.spec(&u)
			}
			got := systemdService(u)
			for _, s := range tt.has {
				if !strings.Contains(got, s) {
					t.Errorf("unit lacks %q:\n%s", s, got)
				}
			}
			for _, s := range tt.hasn {
				if strings.Contains(got, s) {
					t.Errorf("unit has %q:\n%s", s, got)
				}
			}
		})
	}
}

func TestSystemdQuote(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"/usr/bin/stq", "/usr/bin/stq"},
		{"", `""`},
		{"a b", `"a b"`},
		{`say "hi"`, `"say \"hi\""`},
		{`back\slash`, `"back\\slash"`},
		{"100%", "100%%"},
		{"$HOME", "$$HOME"},
		{"it's", `"it's"`},
	}
	for _, tt := range tests {
		if got := systemdQuote(tt.in); got != tt.want {
			t.Errorf("systemdQuote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestSystemdAnalyzeVerify runs systemd's own checker on the units, in
// both scopes, with ExecStart pointing at a binary that exists (this test
// binary). verify exits 0 even on an unknown directive and only prints a
// warning, so any output fails the test; a deliberately broken unit shows
// the check can fail.
func TestSystemdAnalyzeVerify(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	u := goldenSpec()
	u.Exe = exe
	u.SocketActivation = true
	verify := func(t *testing.T, system bool, files []unitFile) string {
		dir := t.TempDir()
		args := []string{"verify", "--man=no"}
		if !system {
			args = append([]string{"--user"}, args...)
		}
		for _, f := range files {
			path := filepath.Join(dir, filepath.Base(f.Path))
			if err := os.WriteFile(path, []byte(f.Content), 0o644); err != nil {
				t.Fatal(err)
			}
			args = append(args, path)
		}
		cmd := exec.Command("systemd-analyze", args...)
		// --user needs a runtime directory even when no user manager runs.
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out) + err.Error()
		}
		return string(out)
	}
	for _, system := range []bool{false, true} {
		u := u
		u.System, u.RunAs = system, ""
		if system {
			u.RunAs = "root"
		}
		for _, socket := range []bool{false, true} {
			u.SocketActivation = socket
			if out := verify(t, system, renderUnits(managerSystemd, u, "/")); out != "" {
				t.Errorf("system=%v socket=%v: systemd-analyze verify:\n%s", system, socket, out)
			}
		}
	}
	broken := renderUnits(managerSystemd, u, "/")
	broken[0].Content = strings.Replace(broken[0].Content, "KillMode=control-group", "KillMode=control-grup", 1)
	if out := verify(t, false, broken); !strings.Contains(out, "control-grup") {
		t.Errorf("a broken unit passed verify: %q", out)
	}
}

// TestLaunchdPlistParses decodes the plist with Python's plistlib, a strict
// reader of Apple's XML format (plutil exists only on macOS), and checks
// the values launchd reads.
func TestLaunchdPlistParses(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	decode := func(text string) (map[string]any, error) {
		cmd := exec.Command("python3", "-c", "import json,plistlib,sys; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))")
		cmd.Stdin = strings.NewReader(text)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, &exec.ExitError{Stderr: out}
		}
		var m map[string]any
		return m, json.Unmarshal(out, &m)
	}
	u := goldenSpec()
	u.Home, u.Socket = "/Users/ada/Library/Application Support/stq & <co>", "/tmp/s.sock"
	plain, err := decode(launchdPlist(u, "/tmp/log"))
	if err != nil {
		t.Fatalf("plist does not parse: %s", err.(*exec.ExitError).Stderr)
	}
	args, _ := json.Marshal(plain["ProgramArguments"])
	if string(args) != `["/usr/local/bin/stq","--home","/Users/ada/Library/Application Support/stq \u0026 \u003cco\u003e","daemon"]` {
		t.Errorf("ProgramArguments = %s", args)
	}
	if plain["Label"] != launchdLabel || plain["RunAtLoad"] != true || plain["StandardErrorPath"] != "/tmp/log" || plain["ExitTimeOut"] != float64(30) {
		t.Errorf("plist: %v", plain)
	}
	if ka, _ := plain["KeepAlive"].(map[string]any); ka["SuccessfulExit"] != false {
		t.Errorf("KeepAlive = %v, want restart on failure only", plain["KeepAlive"])
	}
	u.SocketActivation, u.System, u.RunAs = true, true, "ada"
	activated, err := decode(launchdPlist(u, "/tmp/log"))
	if err != nil {
		t.Fatalf("plist does not parse: %s", err.(*exec.ExitError).Stderr)
	}
	sockets, _ := json.Marshal(activated["Sockets"])
	if string(sockets) != `{"Listeners":{"SockPathMode":384,"SockPathName":"/tmp/s.sock"}}` || activated["RunAtLoad"] != false || activated["UserName"] != "ada" {
		t.Errorf("socket-activated plist: %v", activated)
	}
	if _, err := decode(strings.Replace(launchdPlist(u, "/tmp/log"), "</dict>", "", 1)); err == nil {
		t.Error("a broken plist parsed")
	}
}

func TestNeedRoot(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		system bool
		euid   int
		fails  bool
	}{
		{"a user unit needs no root", false, 1000, false},
		{"a system unit as root", true, 0, false},
		{"a system unit as a user is refused", true, 1000, true},
	}
	for _, tt := range tests {
		err := needRoot(serviceTarget{Manager: managerSystemd, System: tt.system, Dir: systemdSysDir}, tt.euid, "service install --system")
		if (err != nil) != tt.fails {
			t.Errorf("%s: err = %v", tt.name, err)
		}
		if err != nil && (exitCode(err) != ExitFailure || !strings.Contains(err.Error(), "needs root")) {
			t.Errorf("%s: err = %v (exit %d)", tt.name, err, exitCode(err))
		}
	}
}
